package overlayxfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHelper writes a shell script that records its argv and environment
// and answers like taproot-quota.
func fakeHelper(t *testing.T) (QuotaHelper, string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := `#!/bin/sh
echo "$* env=$(env | grep -v '^PWD=' | grep -v '^SHLVL=' | grep -v '^_=' | wc -l)" >>` + log + `
case "$1" in
stats) echo '{"project_id":7,"bytes_used":4096,"bytes_limit":10485760,"inodes_used":5,"inodes_limit":5120}' ;;
check-store) echo '{"store":"'$2'","filesystem":"xfs","project_quota_accounting":true,"project_quota_enforced":true,"capacity_bytes":5}' ;;
clear) echo "taproot-quota: clear: refused for test" >&2; exit 1 ;;
esac
`
	p := filepath.Join(dir, "taproot-quota")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return QuotaHelper{Path: p}, log
}

func TestQuotaHelperClient(t *testing.T) {
	ctx := context.Background()
	h, log := fakeHelper(t)
	if err := h.SetLimit(ctx, "/s/images/x", 10485760, 5120); err != nil {
		t.Fatal(err)
	}
	u, err := h.Usage(ctx, "/s/images/x")
	if err != nil || u != (QuotaUsage{ProjectID: 7, BytesUsed: 4096, BytesLimit: 10485760, InodesUsed: 5, InodesLimit: 5120}) {
		t.Errorf("Usage = %+v, %v", u, err)
	}
	st, err := h.CheckStore(ctx, "/s")
	if err != nil || !st.ProjectQuotaEnforced || st.Store != "/s" || st.Filesystem != "xfs" {
		t.Errorf("CheckStore = %+v, %v", st, err)
	}
	err = h.Clear(ctx, "/s/images/x")
	if err == nil || !errors.Is(err, ErrQuotaHelper) || !strings.Contains(err.Error(), "refused for test") {
		t.Errorf("Clear error = %v", err)
	}
	b, _ := os.ReadFile(log)
	want := "set-limit /s/images/x 10485760 5120 env=0\nstats /s/images/x env=0\ncheck-store /s env=0\nclear /s/images/x env=0\n"
	if string(b) != want {
		t.Errorf("helper calls:\n%s\nwant:\n%s", b, want)
	}
	if err := (QuotaHelper{Path: "taproot-quota"}).Clear(ctx, "/s/images/x"); err == nil {
		t.Error("relative helper path accepted")
	}
	if _, err := (QuotaHelper{Path: "/nonexistent/taproot-quota"}).Usage(ctx, "/s/images/x"); err == nil {
		t.Error("missing helper gave no error")
	}
}

// A helper whose stdout is not its JSON is an error naming the call.
func TestQuotaHelperBadOutput(t *testing.T) {
	p := filepath.Join(t.TempDir(), "taproot-quota")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'not json'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := QuotaHelper{Path: p}
	if u, err := h.Usage(context.Background(), "/s/images/x"); err == nil || !strings.Contains(err.Error(), p+" stats /s/images/x: bad output \"not json\"") {
		t.Errorf("Usage = %+v, %v; want a bad output error", u, err)
	}
	if st, err := h.CheckStore(context.Background(), "/s"); err == nil || !strings.Contains(err.Error(), p+" check-store /s: bad output") {
		t.Errorf("CheckStore = %+v, %v; want a bad output error", st, err)
	}
}
