package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The metadata cache: image manifests and configs kept by digest in
// <store>/meta/blobs/sha256/<hex>, so that a warm create by digest needs no
// registry at all and one by tag only the manifest's digest. The dirs are
// the owner's, 0700, like meta/; entries are written as records are
// (durably with Sync). A file whose content does not hash to its name
// (tampered with, or damaged by a cut without Sync) is never returned: the
// caller fetches the blob again and the next CacheBlob replaces the file.

// maxCachedBlob bounds what is read back: manifests and configs are
// bounded to 4 MiB by containers/image as well.
const maxCachedBlob = 4 << 20

func (s *Store) blobPath(d digest.Digest) (string, error) {
	if d.Algorithm() != digest.SHA256 || d.Validate() != nil {
		return "", fmt.Errorf("cache blob %q: not a sha256 digest", d)
	}
	return filepath.Join(s.blobDir(), d.Encoded()), nil
}

// CachedBlob returns the cached blob with digest d, if there is one whose
// content matches d.
func (s *Store) CachedBlob(d digest.Digest) ([]byte, bool) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, false
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCachedBlob+1))
	if err != nil || len(data) > maxCachedBlob {
		return nil, false
	}
	if digest.SHA256.FromBytes(data) != d {
		s.log.Warn("cached blob does not match its digest; fetching it again", "path", p)
		return nil, false
	}
	return data, true
}

// CacheBlob keeps data as the blob with digest d. It refuses data that
// does not hash to d.
func (s *Store) CacheBlob(d digest.Digest, data []byte) error {
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if len(data) > maxCachedBlob {
		return fmt.Errorf("cache blob %s: %d bytes, more than %d", d, len(data), maxCachedBlob)
	}
	if digest.SHA256.FromBytes(data) != d {
		return fmt.Errorf("cache blob %s: content does not match the digest", d)
	}
	dir := filepath.Dir(p)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		a, err := s.access()
		if err != nil {
			return fmt.Errorf("cache blob %s: %w", d, err)
		}
		for _, sub := range []string{filepath.Dir(dir), dir} {
			if err := a.mkdir(sub, false); err != nil {
				return fmt.Errorf("cache blob %s: %w", d, err)
			}
		}
		if err := syncDirs(s.opts.Sync, filepath.Dir(filepath.Dir(dir)), filepath.Dir(dir)); err != nil {
			return err
		}
	}
	// A tmp name per process: two creates caching the same blob must not
	// write through one file.
	return writeAtomic(p, blobTmp(p, os.Getpid()), data, 0o600, s.opts.Sync)
}

// removeUnreferencedBlobs removes cached manifests and configs that no
// image record leads to: the manifest digest a record names, and what that
// manifest (or index) names in turn. The cache only saves requests, so
// removing an entry a create is about to use costs that create a fetch,
// nothing else. It returns how many it removed, and removes the cache's
// dirs when they are left empty.
func (s *Store) removeUnreferencedBlobs() int {
	dir := s.blobDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	keep := map[digest.Digest]bool{}
	var todo []digest.Digest
	images, _ := os.ReadDir(s.imagesDir())
	for _, e := range images {
		if rec, err := s.readImage(e.Name()); err == nil && rec.ManifestDigest != "" && !keep[rec.ManifestDigest] {
			keep[rec.ManifestDigest] = true
			todo = append(todo, rec.ManifestDigest)
		}
	}
	for len(todo) > 0 {
		d := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		data, ok := s.CachedBlob(d)
		if !ok {
			continue
		}
		var m struct {
			Config    struct{ Digest digest.Digest }   `json:"config"`
			Manifests []struct{ Digest digest.Digest } `json:"manifests"`
		}
		if json.Unmarshal(data, &m) != nil {
			continue // a config: it names nothing
		}
		for _, n := range append([]digest.Digest{m.Config.Digest}, digestsOf(m.Manifests)...) {
			if n != "" && !keep[n] {
				keep[n] = true
				todo = append(todo, n)
			}
		}
	}
	removed, left := 0, 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tmpSuffix) || keep[blobKey(name)] {
			left++
			continue
		}
		if os.Remove(filepath.Join(dir, name)) == nil {
			removed++
		} else {
			left++
		}
	}
	if left == 0 {
		// CacheBlob makes them again when it needs them.
		os.Remove(dir)
		os.Remove(filepath.Dir(dir))
	}
	return removed
}

func digestsOf(ms []struct{ Digest digest.Digest }) []digest.Digest {
	out := make([]digest.Digest, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Digest)
	}
	return out
}
