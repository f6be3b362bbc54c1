package builder

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/gc"
	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/spec"
	"github.com/taproot-dev/taproot/store"
)

// CreateRequest asks for a rootfs for container ID from image Ref.
//
// Optional fields override the config only when set: a nil pointer, a
// false pair of With/Without, or a nil mapping list means "not given on
// the command line", so the config's value (else the default) applies.
type CreateRequest struct {
	Ref, ID string
	// UIDMappings, GIDMappings ("C:H:N"): nil is the config's, else the
	// store's.
	UIDMappings, GIDMappings []string
	// DiskLimitSizeBytes is the image's disk limit (0 = none); nil: the
	// config's [create] disk_limit_size_bytes.
	DiskLimitSizeBytes *int64
	// DiskLimitInodes is the inode limit (0 = derived from the byte limit).
	DiskLimitInodes int64
	// ExcludeImageFromQuota: nil is the config's
	// [create] exclude_image_from_quota.
	ExcludeImageFromQuota *bool
	// WithClean and WithoutClean (at most one) say whether to clean the
	// store first; neither: the config's [create] with_clean.
	WithClean, WithoutClean bool
	// WithMount (root only) mounts the rootfs and prints no mounts;
	// WithoutMount asks for the default: the runtime mounts. At most one.
	WithMount, WithoutMount bool
	Registry                Registry
	Hooks                   Hooks
}

// CreateResult is a created image.
type CreateResult struct {
	ID             string
	Ref            string
	ManifestDigest digest.Digest
	// Rootfs is the image's mount point, <store>/images/<id>/rootfs.
	Rootfs string
	// Mounts are what the runtime must mount (the overlay at "/"); none
	// when Mounted.
	Mounts []specs.Mount
	// Mounted: taproot mounted the rootfs itself (WithMount).
	Mounted bool
	// Fragment is the runtime-spec fragment (root, mounts, process,
	// mappings, annotations).
	Fragment *specs.Spec
}

// createPlan is a CreateRequest resolved against the config and the
// defaults, checked.
type createPlan struct {
	ref             fetcher.Reference
	uids, gids      []idmap.Mapping
	diskLimit       uint64
	diskLimitInodes uint64
	excludeBase     bool
	// clean: collect the store first, when above cleanThreshold bytes
	// (0 = always).
	clean          bool
	cleanThreshold int64
	mount          bool
}

// resolveCreate applies flag over config over default, once.
func (b *Builder) resolveCreate(req CreateRequest) (createPlan, error) {
	var p createPlan
	if err := store.ValidateID(req.ID); err != nil {
		return p, err
	}
	limit := b.cfg.Create.DiskLimitSizeBytes
	if req.DiskLimitSizeBytes != nil {
		limit = *req.DiskLimitSizeBytes
		if limit < 0 {
			return p, BadInput(fmt.Errorf("--disk-limit-size-bytes %d: must not be negative", limit))
		}
	} else if limit < 0 {
		return p, BadInput(fmt.Errorf("config [create] disk_limit_size_bytes = %d: must not be negative", limit))
	}
	if req.DiskLimitInodes < 0 {
		return p, BadInput(fmt.Errorf("--disk-limit-inodes %d: must not be negative", req.DiskLimitInodes))
	}
	p.diskLimit, p.diskLimitInodes = uint64(limit), uint64(req.DiskLimitInodes)
	p.excludeBase = b.cfg.Create.ExcludeImageFromQuota
	if req.ExcludeImageFromQuota != nil {
		p.excludeBase = *req.ExcludeImageFromQuota
	}
	switch {
	case req.WithClean && req.WithoutClean:
		return p, BadInput(errors.New("--with-clean and --without-clean exclude each other"))
	case req.WithClean:
		p.clean = true
	case req.WithoutClean:
		p.clean = false
	default:
		p.clean = b.cfg.Create.WithClean
	}
	p.cleanThreshold = b.cfg.Clean.ThresholdBytes
	switch {
	case req.WithMount && req.WithoutMount:
		return p, BadInput(errors.New("--with-mount and --without-mount exclude each other"))
	case req.WithMount && os.Geteuid() != 0:
		return p, BadInput(errors.New("--with-mount needs root: a rootless caller lets the runtime mount inside the container's user namespace"))
	}
	p.mount = req.WithMount
	ref, err := fetcher.ParseRef(req.Ref)
	if err != nil {
		return p, err
	}
	p.ref = ref
	if p.uids, p.gids, err = b.parseMappings(req.UIDMappings, req.GIDMappings); err != nil {
		return p, err
	}
	return p, nil
}

// Create makes the rootfs of container req.ID from image req.Ref:
//
//  1. resolve the request (flags over config over defaults) and open the
//     store, made on first use with the request's mappings;
//  2. clean the store first if asked (with_clean; a failure only warns);
//  3. open the image with the fetcher (registry settings from the config
//     and the request) and tell req.Hooks.Resolved;
//  4. store.Create: layers fetched (through req.Hooks.Layer) and unpacked
//     once, upper/work dirs and the disk limit, the record written last;
//  5. resolve the image user in the image's /etc/passwd and /etc/group;
//  6. mount the overlay if WithMount, and assemble the fragment.
//
// A failure after step 4 deletes the image again, even when ctx is
// cancelled (a signal): no half-made image stays behind.
func (b *Builder) Create(ctx context.Context, req CreateRequest) (res CreateResult, err error) {
	p, err := b.resolveCreate(req)
	if err != nil {
		return res, err
	}
	st, err := b.openStore(ctx, p.uids, p.gids, req.Hooks.storeProgress())
	if err != nil {
		return res, err
	}
	if p.clean {
		b.cleanBeforeCreate(ctx, st, p.cleanThreshold)
	}
	src, err := b.openSource(ctx, p.ref, req.Registry, st)
	if err != nil {
		return res, err
	}
	defer src.Close()
	img := src.Image()
	req.Hooks.resolved(img)
	rec, err := st.Create(ctx, store.CreateRequest{
		ID:              req.ID,
		Ref:             p.ref.String(),
		ManifestDigest:  img.ManifestDigest,
		Config:          img.Config,
		Layers:          storeLayers(src, req.Hooks.Layer),
		DiskLimit:       p.diskLimit,
		DiskLimitInodes: p.diskLimitInodes,
		ExcludeBase:     p.excludeBase,
	})
	if err != nil {
		return res, err
	}
	// From here a failure must not leave the image behind.
	defer func() {
		if err != nil {
			if delErr := st.Delete(context.WithoutCancel(ctx), req.ID); delErr != nil {
				b.log.Warn("could not remove the image after a failed create", "id", req.ID, "error", delErr)
			}
		}
	}()
	// The image user is looked up in the lower dirs of the mount the store
	// planned (rec.Mounts[0], the overlay at the rootfs): no second call
	// into the store, which would read every layer record again.
	root := rec.Mounts[0].Target
	user, err := resolveUser(rec.Config.Config.User, rec.Mounts[0].Lowers())
	if err != nil {
		return res, err
	}
	// The mounts planned and persisted at create: performed here with
	// --with-mount (and then not printed), else printed for the runtime.
	var mounts []specs.Mount
	for _, m := range rec.Mounts {
		if p.mount {
			if err := m.Mount(); err != nil {
				return res, err
			}
			defer func() {
				if err != nil {
					m.Unmount()
				}
			}()
			continue
		}
		sm, err := m.SpecMount(root)
		if err != nil {
			return res, err
		}
		mounts = append(mounts, sm)
	}
	frag := spec.Fragment(spec.FragmentInput{
		ID:             req.ID,
		Ref:            rec.Ref,
		ManifestDigest: string(rec.ManifestDigest),
		RootPath:       root,
		Mounts:         mounts,
		Config:         rec.Config.Config,
		UID:            user.UID,
		GID:            user.GID,
		AdditionalGids: user.AdditionalGids,
		UIDMappings:    st.Meta().UIDMappings,
		GIDMappings:    st.Meta().GIDMappings,
	})
	return CreateResult{
		ID: req.ID, Ref: rec.Ref, ManifestDigest: rec.ManifestDigest,
		Rootfs: root, Mounts: frag.Mounts, Mounted: p.mount, Fragment: frag,
	}, nil
}

// cleanBeforeCreate is the pre-create clean policy ([create] with_clean):
// collect when the store's layers take more than threshold bytes (0 =
// always). A failed clean does not fail the create.
func (b *Builder) cleanBeforeCreate(ctx context.Context, st *store.Store, threshold int64) {
	res, err := gc.Collect(ctx, st, gc.Options{ThresholdBytes: threshold})
	if err != nil {
		b.log.Warn("clean before create failed; creating anyway", "error", err)
	} else if !res.Skipped {
		b.log.Info("cleaned the store before create", "reclaimed_bytes", res.ReclaimedBytes, "layers_removed", res.LayersRemoved)
	}
}
