package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/taproot-dev/taproot/idmap"
)

// Errors matched by callers with errors.Is.
var (
	ErrImageExists   = errors.New("image id already exists")
	ErrImageNotFound = errors.New("image not found")
	ErrBadID         = errors.New("invalid image id")
	ErrMappingDiffer = errors.New("id mapping differs from the store's")
)

// Limiter applies per-image disk limits (XFS project quotas through the
// setuid helper). A store on a filesystem without project quotas has none.
type Limiter interface {
	SetLimit(ctx context.Context, imageDir string, bytes, inodes uint64) error
	Usage(ctx context.Context, imageDir string) (bytes, inodes uint64, err error)
	Clear(ctx context.Context, imageDir string) error
}

// Options configure Open.
type Options struct {
	// UIDMappings and GIDMappings are the mapping the caller asks for; nil
	// means the store's (or, for a new store, the caller's default).
	UIDMappings, GIDMappings []idmap.Mapping
	// Limiter sets disk limits; nil means none. It is used only when the
	// store's meta says it is on a filesystem with project quotas.
	Limiter Limiter
	// WorkerExe is the binary run as the user-namespace worker; "" =
	// /proc/self/exe, this binary, whose main must call worker.Main first.
	WorkerExe string
	// ParallelLayers bounds concurrent layer downloads (default 3).
	ParallelLayers int
	// MaxLayerBytes bounds a layer's unpacked content, and its uncompressed
	// tar at MaxLayerBytes + max(MaxLayerBytes, 1 MiB) (0 = no bound).
	MaxLayerBytes int64
	// MaxImageBytes bounds the content of the layers one create unpacks
	// (layers already in the store cost nothing new); MaxEntries a layer's
	// entries; MaxRatio its uncompressed/compressed ratio (see
	// unpacker.Options). 0 = no bound.
	MaxImageBytes int64
	MaxEntries    int64
	MaxRatio      int64
	// Sync makes everything the store publishes durable before it becomes
	// visible, and all of an image durable before Create returns (see
	// doc.go). Off, a power cut may lose or damage what was published
	// since the filesystem last flushed its log.
	Sync   bool
	Logger *slog.Logger
	// DeferReclaim makes Delete move the image aside and return, leaving
	// its removal to Reclaim (or clean).
	DeferReclaim bool
	// NewUIDMap/NewGIDMap override the setuid helpers' paths.
	NewUIDMap, NewGIDMap string
	// Progress, if set, is told what happens to each layer of a create or
	// pull (cached, unpacked, squashed), from several goroutines at once.
	Progress func(Progress)
}

// Store is an opened store.
type Store struct {
	layout
	meta Meta
	opts Options
	log  *slog.Logger
}

// ValidateID checks an image id: it names a directory and a lock file, so
// it must be one plain path component.
func ValidateID(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w %q: use 1-200 characters from [A-Za-z0-9_.-], starting with a letter or digit", ErrBadID, id)
	}
	return nil
}

// validID matches ^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$ (by hand: a regexp
// compiled at start-up costs every short-lived taproot process).
func validID(id string) bool {
	if len(id) == 0 || len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '_' && c != '.' && c != '-')) {
			return false
		}
	}
	return true
}

// Open opens the store at root, making it on first use by its owner (the
// caller) as Init does. The mapping the caller asks for must match the
// store's. A store that is not the caller's, that others can write, or
// whose parents others could swap is refused; one made by an earlier
// taproot with looser modes is tightened (see perm.go).
func Open(ctx context.Context, root string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ParallelLayers <= 0 {
		opts.ParallelLayers = 3
	}
	s, err := establish(ctx, root, makeSpec{
		ownerUID: uint32(os.Geteuid()), ownerGID: uint32(os.Getegid()),
		uids: opts.UIDMappings, gids: opts.GIDMappings,
		sync: opts.Sync, log: opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	s.opts = opts
	if !s.meta.Quota {
		s.opts.Limiter = nil
	}
	return s, nil
}

// prepareRoot makes root absolute and real (symlinks resolved, so every
// path taproot prints is the one it checked), creates it if missing, and
// refuses it unless owner may use it safely (see perm.go). With adopt
// (root making a store for owner) the dir may also be root's: a fresh
// mount point that Init hands over.
func prepareRoot(root string, owner uint32, adopt bool) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	if err := checkPath(abs); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return "", fmt.Errorf("create store: %w", err)
	}
	if err := os.Mkdir(abs, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create store: %w", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("store %s: %w", abs, err)
	}
	if err := checkPath(real); err != nil {
		return "", err
	}
	if err := checkAncestors(real, owner); err != nil {
		return "", err
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return "", fmt.Errorf("store %s: %w", real, err)
	}
	if st, ok := statT(fi); adopt && ok && st.Uid == 0 {
		owner = 0
	}
	if err := checkRoot(real, fi, owner); err != nil {
		return "", err
	}
	return real, nil
}

// validateMeta checks what a store's mapping must satisfy: valid, container
// root mapped, and for a store not owned by root, container root is the
// owner (an unprivileged owner cannot hand dirs to another ID, and the
// worker must write them).
func validateMeta(root string, m Meta) error {
	if err := idmap.Validate(m.UIDMappings); err != nil {
		return fmt.Errorf("store %s: uid mapping: %w", root, err)
	}
	if err := idmap.Validate(m.GIDMappings); err != nil {
		return fmt.Errorf("store %s: gid mapping: %w", root, err)
	}
	uid, err := idmap.ToHost(m.UIDMappings, 0)
	if err != nil {
		return fmt.Errorf("store %s: uid mapping must map container root: %w", root, err)
	}
	if _, err := idmap.ToHost(m.GIDMappings, 0); err != nil {
		return fmt.Errorf("store %s: gid mapping must map container root: %w", root, err)
	}
	if m.OwnerUID != 0 && uid != m.OwnerUID {
		return fmt.Errorf("store %s: uid mapping maps container root to %d: a store owned by uid %d must map container root to its owner", root, uid, m.OwnerUID)
	}
	return nil
}

// checkMapping refuses a mapping asked for (nil: any) that is not the
// store's.
func checkMapping(root string, m Meta, uids, gids []idmap.Mapping) error {
	if uids != nil && !slices.Equal(uids, m.UIDMappings) {
		return fmt.Errorf("store %s: %w: store has uid mapping %v, caller asked for %v", root, ErrMappingDiffer, m.UIDMappings, uids)
	}
	if gids != nil && !slices.Equal(gids, m.GIDMappings) {
		return fmt.Errorf("store %s: %w: store has gid mapping %v, caller asked for %v", root, ErrMappingDiffer, m.GIDMappings, gids)
	}
	return nil
}

// Root returns the store's absolute path.
func (s *Store) Root() string { return s.root }

// Meta returns the store's metadata.
func (s *Store) Meta() Meta { return s.meta }
