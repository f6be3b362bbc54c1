package store

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
)

// DiskUsage is what stats reports.
type DiskUsage struct {
	TotalBytesUsed      int64 `json:"total_bytes_used"`
	ExclusiveBytesUsed  int64 `json:"exclusive_bytes_used"`
	TotalInodesUsed     int64 `json:"total_inodes_used"`
	ExclusiveInodesUsed int64 `json:"exclusive_inodes_used"`
}

// Stats returns an image's disk usage: its base size from the record and
// its exclusive bytes from the quota (one syscall in the helper). Without a
// quota it has to walk the upper dir.
func (s *Store) Stats(ctx context.Context, id string) (DiskUsage, error) {
	rec, err := s.Image(ctx, id)
	if err != nil {
		return DiskUsage{}, err
	}
	var excl, exclInodes int64
	if rec.Quota && s.opts.Limiter != nil {
		n, ni, err := s.opts.Limiter.Usage(ctx, s.imageDir(id))
		if err != nil {
			return DiskUsage{}, err
		}
		excl, exclInodes = int64(n), int64(ni)
	} else {
		excl, exclInodes, err = walkUsage(s.imageSub(id, upperDir))
		if err != nil {
			return DiskUsage{}, err
		}
	}
	return DiskUsage{TotalBytesUsed: rec.BaseSize + excl, ExclusiveBytesUsed: excl,
		TotalInodesUsed: rec.BaseInodes + exclInodes, ExclusiveInodesUsed: exclInodes}, nil
}

// walkUsage sums allocated bytes and inodes of a tree, counting hardlinked
// files once. Dirs the caller cannot read (owned by sub-IDs) are skipped.
func walkUsage(root string) (total, inodes int64, err error) {
	seen := map[uint64]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := statT(info); ok {
			if st.Nlink > 1 && !d.IsDir() {
				if seen[st.Ino] {
					return nil
				}
				seen[st.Ino] = true
			}
			total += st.Blocks * 512
			inodes++
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return total, inodes, err
}
