package builder

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/store"
)

// DeleteRequest asks for an image's removal.
type DeleteRequest struct {
	ID string
}

// DeleteResult says what Delete did.
type DeleteResult struct {
	// Found is false when there was no such image (or no store): deleting
	// it again succeeds, so daemons can retry.
	Found bool
}

// Delete removes an image: undoes a --with-mount (root), moves the image
// aside in the store (its record, dirs and disk limit go) and starts a
// background reclaim of its files, so that delete returns at once. If that
// process dies, the next clean finishes its work.
func (b *Builder) Delete(ctx context.Context, req DeleteRequest) (DeleteResult, error) {
	if err := store.ValidateID(req.ID); err != nil {
		return DeleteResult{}, err
	}
	st, ok, err := b.openExistingStore(ctx)
	if err != nil {
		return DeleteResult{}, err
	}
	if !ok {
		b.log.Warn("nothing to delete: image not found", "id", req.ID, "store", b.storePath)
		return DeleteResult{}, nil
	}
	if os.Geteuid() == 0 {
		if err := unmountImage(ctx, st, req.ID); err != nil {
			return DeleteResult{}, err
		}
	}
	err = st.Delete(ctx, req.ID)
	if errors.Is(err, store.ErrImageNotFound) {
		b.log.Warn("nothing to delete: image not found", "id", req.ID)
		return DeleteResult{}, nil
	}
	if err != nil {
		return DeleteResult{}, err
	}
	b.startReclaim(st.Root())
	return DeleteResult{Found: true}, nil
}

// unmountImage undoes --with-mount: it unmounts the image's persisted
// mounts, which Image has checked. A record that does not check out names
// no path to unmount: then only the id's own rootfs dir in this store is
// (the one target a valid record has), so delete still removes it whole.
func unmountImage(ctx context.Context, st *store.Store, id string) error {
	rec, err := st.Image(ctx, id)
	if err != nil {
		return overlayxfs.Mount{Target: filepath.Join(st.Root(), "images", id, "rootfs")}.Unmount()
	}
	for _, m := range rec.Mounts {
		if err := m.Unmount(); err != nil {
			return err
		}
	}
	return nil
}

// startReclaim runs `taproot --store ROOT __reclaim` in its own session,
// not waited for.
func (b *Builder) startReclaim(storeRoot string) {
	cmd := exec.Command(b.exe, "--store", storeRoot, "--log-level", "error", ReclaimCommand)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		b.log.Warn("could not start background reclaim; clean will remove the deleted files", "error", err)
		return
	}
	cmd.Process.Release()
}

// Reclaim removes the files of deleted images (the background half of
// Delete). No store: nothing to do.
func (b *Builder) Reclaim(ctx context.Context) error {
	st, ok, err := b.openExistingStore(ctx)
	if err != nil || !ok {
		return err
	}
	return st.Reclaim(ctx)
}
