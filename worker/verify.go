package worker

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/unpacker"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"
)

// checkLayer checks a layer's files against its tar-split metadata, fully
// (verifyLayer) or, quick, by size (quickVerifyLayer), then that the dir
// holds nothing the tar does not name.
func checkLayer(ctx context.Context, l LayerRef, quick bool) error {
	ts, err := os.Open(filepath.Join(l.Dir, unpacker.TarSplitName))
	if err != nil {
		return err
	}
	defer ts.Close()
	check := verifyLayer
	if quick {
		check = quickVerifyLayer
	}
	if err := check(ctx, l, ts); err != nil {
		return err
	}
	if _, err := ts.Seek(0, io.SeekStart); err != nil {
		return err
	}
	extra, err := extraFiles(filepath.Join(l.Dir, "diff"), ts)
	if err != nil {
		return fmt.Errorf("list files: %w", err)
	}
	if len(extra) > 0 {
		return fmt.Errorf("%d files not in the layer, e.g. %s", len(extra), extra[0])
	}
	return nil
}

// verifyLayer reassembles a layer's tar from its files and tar-split
// metadata ts and compares its digest with the diffID (unless the layer is
// ListOnly).
func verifyLayer(ctx context.Context, l LayerRef, ts io.Reader) error {
	if l.ListOnly {
		return nil
	}
	h := l.DiffID.Algorithm().Hash()
	if err := unpacker.Reassemble(ctx, filepath.Join(l.Dir, "diff"), ts, h); err != nil {
		return fmt.Errorf("reassemble: %w", err)
	}
	if got := digest.NewDigest(l.DiffID.Algorithm(), h); got != l.DiffID {
		return fmt.Errorf("content digest %s, want %s: files were modified", got, l.DiffID)
	}
	return nil
}

// extraFiles lists paths in diffDir that the layer's tar does not name
// (allowing the parents the unpacker creates and the device a whiteout
// becomes).
func extraFiles(diffDir string, tarSplitGz io.Reader) ([]string, error) {
	known := map[string]bool{".": true}
	err := forEachFileEntry(tarSplitGz, func(name string, _ *storage.Entry) {
		dir, base := path.Split(name)
		if base == ".wh..wh..opq" {
			name = path.Clean(dir)
		} else if strings.HasPrefix(base, ".wh.") {
			name = path.Join(dir, strings.TrimPrefix(base, ".wh."))
		}
		for p := name; p != "." && p != "/" && !known[p]; p = path.Dir(p) {
			known[p] = true
		}
	})
	if err != nil {
		return nil, err
	}
	var extra []string
	// Through directory fds: a layer's paths may be longer than PATH_MAX.
	err = unpacker.WalkTree(diffDir, func(rel string, d fs.DirEntry) error {
		if !known[rel] {
			extra = append(extra, rel)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	return extra, err
}

// forEachFileEntry calls fn with the cleaned name of every file entry of a
// layer's tar-split metadata, in tar order.
func forEachFileEntry(tarSplitGz io.Reader, fn func(name string, e *storage.Entry)) error {
	zr, err := gzip.NewReader(tarSplitGz)
	if err != nil {
		return err
	}
	up := unpacker.NewEntryReader(zr)
	for {
		e, err := up.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Type != storage.FileType {
			continue
		}
		if name := path.Clean("/" + e.GetName())[1:]; name != "" {
			fn(name, e)
		}
	}
}

// quickVerifyLayer checks that every file with content in a layer's
// tar-split metadata ts has the size its last entry gives (a path may be
// named twice; the last entry wins, as when unpacking). A power cut before the data reached
// the disk leaves such files shorter (XFS: empty), and a stat per file
// finds that without reading any content. Files are reached beneath the
// layer dir without following symlinks (container root writes the dir).
// Sparse files keep their apparent size, which is what is compared.
func quickVerifyLayer(ctx context.Context, l LayerRef, ts io.Reader) error {
	sizes := map[string]int64{}
	last := map[string]int{} // index of the last entry naming each path
	var order []string
	err := forEachFileEntry(ts, func(name string, e *storage.Entry) {
		size := e.Size
		// A whiteout of a path (".wh.x") is that path's last word when it
		// comes after the path's entries: on disk x is a whiteout, with no
		// content (the layer removed what it had written there).
		if dir, base := path.Split(name); strings.HasPrefix(base, ".wh.") && base != ".wh..wh..opq" {
			name, size = path.Join(dir, strings.TrimPrefix(base, ".wh.")), 0
		}
		if _, ok := sizes[name]; !ok {
			order = append(order, name)
		}
		sizes[name] = size
		last[name] = e.Position
	})
	if err != nil {
		return fmt.Errorf("tar-split metadata: %w", err)
	}
	// replaced says whether a later entry named a parent of name (a dir
	// that a file replaced): then name is rightly not on disk.
	replaced := func(name string) bool {
		for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if i, ok := last[dir]; ok && i > last[name] {
				return true
			}
		}
		return false
	}
	diff := filepath.Join(l.Dir, "diff")
	root, err := unix.Open(diff, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: diff, Err: err}
	}
	defer unix.Close(root)
	for i, name := range order {
		want := sizes[name]
		if want == 0 {
			continue // no content: dirs, links, hardlinks, whiteouts
		}
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		// Beneath the layer dir, no symlink followed, any path length.
		st, err := unpacker.LstatBeneath(root, name)
		if err != nil {
			if (err == unix.ENOENT || err == unix.ENOTDIR) && replaced(name) {
				continue
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("%s: not a regular file", name)
		}
		if st.Size != want {
			return fmt.Errorf("%s: %d bytes on disk, %d in the layer (cut short, as by a power cut before the data reached the disk)", name, st.Size, want)
		}
	}
	return nil
}
