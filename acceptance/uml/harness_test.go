package uml

import (
	"context"
	"strings"
	"testing"
)

// TestHarness checks the guest basics the quota tests rely on.
func TestHarness(t *testing.T) {
	res, err := Boot(context.Background(), t, `
set -e
echo "etc=$(awk '$2=="/etc"{print $3}' /proc/mounts)"
echo "mnt=$(awk -v m="$UML_MNT" '$2==m{print $3" "$4}' /proc/mounts)"
echo "tmp=$(awk -v m="$UML_TMP" '$2==m{print $3}' /proc/mounts)"
echo "overlay=$(grep -c overlay /proc/filesystems)"
echo "sys=$(awk '$2=="/sys"{print $3}' /proc/mounts)"
echo "run=$(awk '$2=="/run"{print $3}' /proc/mounts)"
echo x > /etc/taproot/probe
exit 3
`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot %v, total %v", res.BootTime, res.Duration)
	if res.ExitCode != 3 {
		t.Errorf("exit code %d, want 3; output:\n%s", res.ExitCode, res.Output)
	}
	for _, want := range []string{"etc=overlay\n", "mnt=xfs rw,", "prjquota", "tmp=tmpfs\n", "overlay=1\n", "sys=sysfs\n", "run=tmpfs\n"} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("output lacks %q:\n%s", want, res.Output)
		}
	}
	if res.BootTime <= 0 {
		t.Error("boot marker not seen on the console")
	}
}
