package overlayxfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// QuotaHelper runs the setuid taproot-quota helper (package quotahelper)
// at Path, an absolute path: no PATH lookup.
type QuotaHelper struct {
	Path string
}

// QuotaUsage is an image's project quota, as `taproot-quota stats` reports.
type QuotaUsage struct {
	ProjectID   uint32 `json:"project_id"`
	BytesUsed   uint64 `json:"bytes_used"`   // exclusive bytes of the image
	BytesLimit  uint64 `json:"bytes_limit"`  // 0: no limit
	InodesUsed  uint64 `json:"inodes_used"`  // exclusive inodes of the image
	InodesLimit uint64 `json:"inodes_limit"` // 0: no limit
}

// StoreQuotaStatus is what `taproot-quota check-store` reports.
type StoreQuotaStatus struct {
	Store                  string `json:"store"`
	Filesystem             string `json:"filesystem"`
	ProjectQuotaAccounting bool   `json:"project_quota_accounting"`
	ProjectQuotaEnforced   bool   `json:"project_quota_enforced"`
	CapacityBytes          uint64 `json:"capacity_bytes"`
}

// SetLimit limits imageDir (<store>/images/<id>) to bytes and inodes (both
// greater than 0), in one call, with a project ID the helper derives
// itself. Call it before creating diff/ and work/ or after: the helper sets
// both.
func (h QuotaHelper) SetLimit(ctx context.Context, imageDir string, bytes, inodes uint64) error {
	_, err := h.run(ctx, "set-limit", imageDir, strconv.FormatUint(bytes, 10), strconv.FormatUint(inodes, 10))
	return err
}

// Usage reads imageDir's quota in O(1) (Q_XGETQUOTA, no tree walk).
func (h QuotaHelper) Usage(ctx context.Context, imageDir string) (QuotaUsage, error) {
	return runJSON[QuotaUsage](ctx, h, "stats", imageDir)
}

// Clear removes imageDir's limit and resets its project ID; call it before
// deleting the image, which then frees the ID.
func (h QuotaHelper) Clear(ctx context.Context, imageDir string) error {
	_, err := h.run(ctx, "clear", imageDir)
	return err
}

// CheckStore reports whether project quotas are on for a listed store.
func (h QuotaHelper) CheckStore(ctx context.Context, storeDir string) (StoreQuotaStatus, error) {
	return runJSON[StoreQuotaStatus](ctx, h, "check-store", storeDir)
}

// runJSON runs the helper's subcommand cmd on dir and decodes the one JSON
// line it prints into a T.
func runJSON[T any](ctx context.Context, h QuotaHelper, cmd, dir string) (T, error) {
	var v T
	out, err := h.run(ctx, cmd, dir)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return v, fmt.Errorf("%s %s %s: bad output %q: %w", h.Path, cmd, dir, out, err)
	}
	return v, nil
}

// run execs the helper with a minimal environment and returns its stdout;
// on failure the error carries the helper's one-line message.
func (h QuotaHelper) run(ctx context.Context, args ...string) ([]byte, error) {
	if !strings.HasPrefix(h.Path, "/") {
		return nil, fmt.Errorf("quota helper path %q is not absolute", h.Path)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, h.Path, args...)
	cmd.Env = []string{}
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return nil, fmt.Errorf("%s: %w", msg, ErrQuotaHelper)
		}
		return nil, fmt.Errorf("%s %s: %w", h.Path, strings.Join(args, " "), err)
	}
	return bytes.TrimSpace(stdout.Bytes()), nil
}

// ErrQuotaHelper marks an error the helper reported (refusal or failure).
var ErrQuotaHelper = errors.New("quota helper failed")
