package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/internal/flock"
	"github.com/taproot-dev/taproot/unpacker"
	"github.com/taproot-dev/taproot/worker"
)

// Layer describes one layer of an image to create.
type Layer struct {
	BlobDigest digest.Digest // "" when unknown (local rootfs)
	DiffID     digest.Digest // "" when unknown: computed while unpacking
	MediaType  string
	Size       int64
	// Open streams the blob as stored (compressed or not).
	Open func(ctx context.Context) (io.ReadCloser, error)
	// CacheKey, for a layer without DiffID, names its content's version
	// (a local rootfs: path and modification time): a create that finds
	// the key recorded reuses the layer without reading the source.
	CacheKey string
}

// layerKey names a layer's directory: the hex of its diffID. A dir named
// "sha256:…" could not appear in overlay's lowerdir list (':' separates
// entries), and the hex alone is unique for sha256.
func layerKey(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("layer diffID %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return d.Algorithm().String() + "-" + d.Encoded(), nil
	}
	return d.Encoded(), nil
}

func shortName(key string, n int) string {
	sum := sha256.Sum256([]byte(key))
	enc := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
	if n > len(enc) {
		n = len(enc)
	}
	return enc[:n]
}

// heldLayers are shared locks on layers an image is about to reference:
// clean cannot remove a layer while they are held.
type heldLayers map[string]*flock.Lock

func (h heldLayers) release() {
	for _, l := range h {
		l.Release()
	}
}

func (s *Store) layerExists(key string) bool {
	if !validLayerKey(key) {
		return false
	}
	_, err := os.Stat(s.layerRecord(key))
	return err == nil
}

// readLayer returns a layer's record.
func (s *Store) readLayer(key string) (LayerRecord, error) {
	var r LayerRecord
	if err := checkLayerKey(key); err != nil {
		return r, err
	}
	err := readJSON(s.layerRecord(key), &r)
	return r, err
}

// ensureLayers makes every layer present and returns shared locks on all of
// them plus their keys (base first).
//
// Each layer has two lock files. locks/layer-<key>.lock is its reference
// lock: a create holds it shared from before it looks at the layer until
// its image record (which references the layer) is written, and clean
// removes a layer only with it held exclusively (without waiting). So a
// layer a create has seen present cannot vanish under it. A missing layer
// is fetched under locks/fetch-<key>.lock, taken exclusively while the
// reference lock is held shared: the first process fetches, the others
// wait on the fetch lock and find the layer published. Keeping the two
// apart means the fetcher never has to turn an exclusive lock into a
// shared one (flock(2) does not do that atomically: clean could remove the
// fresh layer in between). Locks are taken in key order so two creates
// never wait on each other in a cycle.
func (s *Store) ensureLayers(ctx context.Context, layers []Layer) (keys []string, held heldLayers, err error) {
	known := make([]Layer, 0, len(layers))
	var unknown []Layer // local rootfs: diffID known only after unpacking
	for _, l := range layers {
		if l.DiffID == "" {
			unknown = append(unknown, l)
		} else {
			known = append(known, l)
		}
	}
	// The deferred release must see the locks even though the error
	// returns below set the named result to nil.
	locks := heldLayers{}
	held = locks
	defer func() {
		if err != nil {
			s.releaseHeld(locks)
		}
	}()
	if len(unknown) > 0 {
		if err := s.unpackUnknown(ctx, layers, held); err != nil {
			return nil, nil, err
		}
		// Now every layer has a diffID; unpackUnknown filled them in.
		known = layers
	}
	missing, err := s.lockLayers(ctx, known, held)
	if err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 {
		if err := s.fetchLayers(ctx, missing); err != nil {
			return nil, nil, err
		}
	}
	for key := range held {
		if !s.layerExists(key) {
			return nil, nil, fmt.Errorf("layer %s vanished while locked: was it removed by hand?", key)
		}
	}
	for _, l := range layers {
		key, _ := layerKey(l.DiffID)
		keys = append(keys, key)
	}
	return keys, held, nil
}

// releaseHeld releases reference locks after a failed create, removing the
// lock files of layers that never got published (so failed fetches do not
// leave lock files behind).
func (s *Store) releaseHeld(held heldLayers) {
	for key, l := range held {
		l.Release()
		if !s.layerExists(key) {
			s.dropLayerLock(key)
		}
	}
}

type missingLayer struct {
	Layer
	key  string
	lock *flock.Lock // exclusive fetch lock
}

// lockLayers takes a shared reference lock on each layer (into held) and,
// for each missing layer, its exclusive fetch lock (returned), in key order.
func (s *Store) lockLayers(ctx context.Context, layers []Layer, held heldLayers) (missing []missingLayer, err error) {
	defer func() {
		if err != nil {
			for _, m := range missing {
				m.lock.RemoveAndRelease()
			}
			missing = nil
		}
	}()
	byKey := map[string]Layer{}
	for _, l := range layers {
		key, err := layerKey(l.DiffID)
		if err != nil {
			return nil, err
		}
		byKey[key] = l
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		if _, ok := held[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		ex, err := s.acquireLayer(ctx, key, held)
		if err != nil {
			return missing, err
		}
		if ex == nil {
			s.progress(Progress{Kind: LayerCached, DiffID: byKey[key].DiffID})
			continue
		}
		missing = append(missing, missingLayer{Layer: byKey[key], key: key, lock: ex})
	}
	return missing, nil
}

// fetchLayers downloads and unpacks missing layers in one worker and
// publishes them. Their reference locks are held (shared) by the caller
// throughout; their fetch locks are released, and their files removed, at
// the end whatever happens.
func (s *Store) fetchLayers(ctx context.Context, missing []missingLayer) (err error) {
	defer func() {
		for _, m := range missing {
			m.lock.RemoveAndRelease()
		}
	}()
	var (
		jobs []worker.UnpackJob
		tmps []*tmpDir
	)
	defer func() {
		for _, t := range tmps {
			s.removeTmp(ctx, t)
		}
	}()
	for _, m := range missing {
		t, err := s.newLayerTmp(ctx)
		if err != nil {
			return err
		}
		tmps = append(tmps, t)
		jobs = append(jobs, worker.UnpackJob{Open: func() (io.ReadCloser, error) { return m.Open(ctx) }, TarSplit: t.tarSplit,
			Diff: t.diff(), BlobDigest: m.BlobDigest, DiffID: m.DiffID, MediaType: m.MediaType})
	}
	start := time.Now()
	var errs []error
	// Publish each layer the moment the worker is done with it and drop its
	// fetch lock, so creates waiting on that layer alone go on at once.
	publish := func(i int, r *unpacker.LayerResult, err error) {
		m := &missing[i]
		if err != nil {
			errs = append(errs, fmt.Errorf("layer %s: %w", m.DiffID, err))
			return
		}
		for _, w := range r.Warnings {
			s.log.Warn("layer unpacked with omissions", "layer", m.DiffID, "warning", w)
		}
		rec := LayerRecord{
			DiffID:          m.DiffID,
			BlobDigest:      r.BlobDigest,
			MediaType:       m.MediaType,
			CompressedSize:  r.CompressedBytes,
			Size:            r.Bytes,
			Inodes:          int64(r.Entries),
			UncompressedTar: r.UncompressedBytes,
			Created:         time.Now().UTC(),
			UnpackWarnings:  r.Warnings,
			Unverifiable:    r.Unverifiable,
		}
		if err := s.publishLayer(m.key, tmps[i], &rec); err != nil {
			errs = append(errs, err)
			return
		}
		m.lock.RemoveAndRelease()
		m.lock = nil
		s.log.Debug("layer published", "layer", m.DiffID, "bytes", rec.Size)
		s.progress(Progress{Kind: LayerUnpacked, DiffID: m.DiffID, Bytes: rec.Size, Verified: m.BlobDigest != "" || m.DiffID != ""})
	}
	if err := s.worker().Unpack(ctx, jobs, publish); err != nil {
		return errors.Join(append([]error{err}, errs...)...)
	}
	s.log.Debug("layers fetched", "count", len(missing), "elapsed", time.Since(start))
	return errors.Join(errs...)
}

// publishLayer writes the record and short link, then renames the tmp dir
// into place: the rename is the commit point. The tmp dir is the owner's
// (made by newTmp with the mode of a layer dir); only its diff/ is
// container root's.
//
// With Sync, everything the rename makes visible is on disk before it: the
// contents and the tar-split file (the worker's syncfs after unpacking or
// squashing), the link (fsync of l/) and the record (fsync of the file and
// of the tmp dir that names them). The rename itself is made durable
// (fsync of layers/) before the layer is reported published, so an image
// record written after it never names a layer a cut can take back.
func (s *Store) publishLayer(key string, t *tmpDir, rec *LayerRecord) error {
	if err := t.closeTarSplit(); err != nil {
		return fmt.Errorf("layer %s: %w", key, err)
	}
	short, err := s.makeShortLink(key)
	if err != nil {
		return err
	}
	rec.Short = short
	sync := s.opts.Sync
	if err := syncDirs(sync, s.linksDir()); err != nil {
		return fmt.Errorf("layer %s: %w", key, err)
	}
	if err := writeJSONAtomic(filepath.Join(t.path, layerRecordFile), rec, 0o644, sync); err != nil {
		return fmt.Errorf("layer %s: %w", key, err)
	}
	if err := os.Rename(t.path, s.layerDir(key)); err != nil {
		if s.layerExists(key) {
			return nil // published by someone who did not respect the lock
		}
		return fmt.Errorf("publish layer %s: %w", key, err)
	}
	t.published = true
	if err := syncDirs(sync, s.layersDir()); err != nil {
		return fmt.Errorf("publish layer %s: %w", key, err)
	}
	return nil
}

// makeShortLink creates l/<short> -> ../layers/<key>/diff, lengthening the
// name on the (astronomically rare) collision.
func (s *Store) makeShortLink(key string) (string, error) {
	target := linkTarget(key)
	for _, n := range shortLens {
		short := shortName(key, n)
		err := os.Symlink(target, s.linkPath(short))
		if err == nil {
			return short, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("short link for layer %s: %w", key, err)
		}
		if got, _ := os.Readlink(s.linkPath(short)); got == target {
			return short, nil
		}
	}
	return "", fmt.Errorf("short link for layer %s: every name collides", key)
}

// unpackUnknown unpacks layers whose diffID is unknown (a local rootfs dir
// or tarball) into tmp, learns their diffIDs, and publishes them unless an
// identical layer is already there.
func (s *Store) unpackUnknown(ctx context.Context, layers []Layer, held heldLayers) error {
	for i := range layers {
		l := &layers[i]
		if l.DiffID != "" {
			continue
		}
		if d, ok := s.cachedDiffID(l.CacheKey); ok {
			l.DiffID = d // lockLayers reports it cached
			continue
		}
		t, err := s.newLayerTmp(ctx)
		if err != nil {
			return err
		}
		var res *unpacker.LayerResult
		var layerErr error
		err = s.worker().Unpack(ctx, []worker.UnpackJob{{Open: func() (io.ReadCloser, error) { return l.Open(ctx) }, TarSplit: t.tarSplit,
			Diff: t.diff(), MediaType: l.MediaType}}, func(_ int, r *unpacker.LayerResult, err error) { res, layerErr = r, err })
		if err == nil {
			err = layerErr
		}
		if err != nil {
			s.removeTmp(ctx, t)
			return fmt.Errorf("unpack local rootfs: %w", err)
		}
		l.DiffID = res.DiffID
		key, err := layerKey(l.DiffID)
		if err != nil {
			s.removeTmp(ctx, t)
			return err
		}
		// Reference lock kept, so clean cannot take the layer before the
		// image record names it; published unless an identical one is.
		lock, err := s.acquireLayer(ctx, key, held)
		if err != nil {
			s.removeTmp(ctx, t)
			return err
		}
		if lock != nil {
			err = s.publishLayer(key, t, &LayerRecord{DiffID: l.DiffID, Size: res.Bytes, Inodes: int64(res.Entries), UncompressedTar: res.UncompressedBytes, Created: time.Now().UTC(), UnpackWarnings: res.Warnings, Unverifiable: res.Unverifiable})
			lock.RemoveAndRelease()
		}
		s.removeTmp(ctx, t)
		if err != nil {
			return err
		}
		s.recordDiffID(l.CacheKey, l.DiffID)
		s.progress(Progress{Kind: LayerUnpacked, DiffID: l.DiffID, Bytes: res.Bytes})
	}
	return nil
}

type localCacheRecord struct {
	Key    string        `json:"key"`
	DiffID digest.Digest `json:"diff_id"`
}

func (s *Store) cachedDiffID(key string) (digest.Digest, bool) {
	if key == "" {
		return "", false
	}
	var r localCacheRecord
	if err := readJSON(s.localCachePath(key), &r); err != nil || r.Key != key {
		return "", false
	}
	k, err := layerKey(r.DiffID)
	if err != nil || !s.layerExists(k) {
		return "", false
	}
	return r.DiffID, true
}

func (s *Store) recordDiffID(key string, d digest.Digest) {
	if key == "" {
		return
	}
	if err := writeJSONAtomic(s.localCachePath(key), &localCacheRecord{Key: key, DiffID: d}, 0o644, s.opts.Sync); err != nil {
		s.log.Debug("could not record local rootfs version", "error", err)
	}
}

// tmpDir is a scratch dir under tmp/ held with a lock, so that recovery can
// tell a live one from debris.
type tmpDir struct {
	path      string
	lock      *flock.Lock
	published bool
	// tarSplit, for a layer, is the record file the worker writes through
	// its fd (see unpackJob).
	tarSplit *os.File
}

func (t *tmpDir) diff() string { return filepath.Join(t.path, "diff") }

// closeTarSplit closes the tar-split file. With Sync it needs no fsync:
// the worker wrote it and closed it before its syncfs (an fsync here cost
// 15 ms on ext4, whose fsync commits the other layers' writes in flight).
func (t *tmpDir) closeTarSplit() error {
	if t.tarSplit == nil {
		return nil
	}
	err := t.tarSplit.Close()
	t.tarSplit = nil
	return err
}

// newTmp makes a scratch dir, the owner's, with the mode of a layer or
// image dir (so a published one needs no chmod).
func (s *Store) newTmp(ctx context.Context, kind string) (*tmpDir, error) {
	a, err := s.access()
	if err != nil {
		return nil, err
	}
	var b [8]byte
	rand.Read(b[:])
	name := kind + "-" + hex.EncodeToString(b[:])
	lock, err := flock.Exclusive(ctx, s.tmpLock(name))
	if err != nil {
		return nil, err
	}
	path := s.tmpPath(name)
	if err := os.Mkdir(path, 0o700); err != nil {
		lock.RemoveAndRelease()
		return nil, fmt.Errorf("create scratch dir: %w", err)
	}
	if err := a.fix(path, true); err != nil {
		os.Remove(path)
		lock.RemoveAndRelease()
		return nil, fmt.Errorf("create scratch dir: %w", err)
	}
	return &tmpDir{path: path, lock: lock}, nil
}

// newWorkerTmp is a scratch dir whose diff/ the worker fills.
func (s *Store) newWorkerTmp(ctx context.Context, kind string) (*tmpDir, error) {
	t, err := s.newTmp(ctx, kind)
	if err != nil {
		return nil, err
	}
	if err := s.mkdirForContainerRoot(t.diff()); err != nil {
		s.removeTmp(ctx, t)
		return nil, err
	}
	return t, nil
}

// newLayerTmp is a scratch dir for one layer: diff/ for the worker and the
// tar-split record, opened here so that the worker writes it by fd.
func (s *Store) newLayerTmp(ctx context.Context) (*tmpDir, error) {
	t, err := s.newWorkerTmp(ctx, tmpLayer)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(t.path, unpacker.TarSplitName), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		s.removeTmp(ctx, t)
		return nil, fmt.Errorf("create scratch dir: %w", err)
	}
	t.tarSplit = f
	return t, nil
}

func (s *Store) removeTmp(ctx context.Context, t *tmpDir) {
	t.closeTarSplit()
	if t.lock == nil {
		return
	}
	if !t.published {
		// Clean up even when the create was interrupted.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.removeAll(ctx, t.path); err != nil {
			s.log.Warn("scratch dir left behind; clean will remove it", "path", t.path, "error", err)
		}
	}
	t.lock.RemoveAndRelease()
	t.lock = nil
}

// mkdirForContainerRoot makes a dir container root writes into (a layer's
// diff, an upper, work or rootfs dir), 0755 and container root's: its
// contents are the container's, and the dirs above keep others out.
func (s *Store) mkdirForContainerRoot(path string) error {
	uid, gid, err := s.containerRoot()
	if err != nil {
		return err
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		return err
	}
	// For a rootless caller container root is the caller already.
	if os.Geteuid() == 0 {
		if err := os.Lchown(path, int(uid), int(gid)); err != nil {
			return fmt.Errorf("hand %s to container root: %w", path, err)
		}
	}
	return os.Chmod(path, 0o755)
}

// removeAll removes paths; files owned by sub-IDs need the worker.
func (s *Store) removeAll(ctx context.Context, paths ...string) error {
	var rest []string
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			rest = append(rest, p)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	if err := s.worker().Remove(ctx, rest); err != nil {
		return fmt.Errorf("remove %s: %w", strings.Join(rest, " "), err)
	}
	return nil
}

// Pull makes layers present without creating an image, and returns their
// keys (base first).
func (s *Store) Pull(ctx context.Context, layers []Layer) ([]string, error) {
	keys, held, err := s.ensureLayers(ctx, layers)
	if err != nil {
		return nil, err
	}
	held.release()
	return keys, nil
}
