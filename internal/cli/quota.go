package cli

import (
	"context"
	"os"
	"path/filepath"

	"github.com/taproot-dev/taproot/overlayxfs"
)

// quotaLimiter adapts the helper client to the store's Limiter.
type quotaLimiter struct{ h overlayxfs.QuotaHelper }

func (q quotaLimiter) SetLimit(ctx context.Context, dir string, bytes, inodes uint64) error {
	return q.h.SetLimit(ctx, dir, bytes, inodes)
}

func (q quotaLimiter) Usage(ctx context.Context, dir string) (bytes, inodes uint64, err error) {
	u, err := q.h.Usage(ctx, dir)
	return u.BytesUsed, u.InodesUsed, err
}

func (q quotaLimiter) Clear(ctx context.Context, dir string) error { return q.h.Clear(ctx, dir) }

// quotaHelperPath finds taproot-quota: the config's path, else beside the
// taproot binary, else the usual install dirs. "" when there is none.
func (g *globals) quotaHelperPath() string {
	if p := g.cfg.Quota.Helper; p != "" {
		return p
	}
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "taproot-quota"))
	}
	candidates = append(candidates, "/usr/local/bin/taproot-quota", "/usr/bin/taproot-quota")
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
			return c
		}
	}
	return ""
}
