package builder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taproot-dev/taproot/overlayxfs"
)

func TestCheckOneOwnerPerFS(t *testing.T) {
	base := t.TempDir()
	list := filepath.Join(base, "stores")
	a := filepath.Join(base, "a")
	if err := os.MkdirAll(filepath.Join(a, "meta"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, "meta", "store.json"), []byte(`{"version":1,"owner_uid":1000,"owner_gid":1000}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkOneOwnerPerFS(list, filepath.Join(base, "new"), 1001); err != nil {
		t.Errorf("no stores list: %v", err)
	}
	if err := os.WriteFile(list, []byte("# stores\n"+a+"\n"+filepath.Join(base, "gone")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A second owner on the same filesystem (a new store, not made yet).
	err := checkOneOwnerPerFS(list, filepath.Join(base, "new", "store"), 1001)
	if !errors.Is(err, overlayxfs.ErrSharedFilesystem) {
		t.Fatalf("second owner on one filesystem: %v, want ErrSharedFilesystem", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, a+" of uid 1000") || !strings.Contains(msg, "--store-size-bytes") {
		t.Errorf("error is not one line naming the other store and the way out: %q", msg)
	}
	// The same owner, and the listed store itself again, are fine.
	if err := checkOneOwnerPerFS(list, filepath.Join(base, "b"), 1000); err != nil {
		t.Errorf("same owner refused: %v", err)
	}
	if err := checkOneOwnerPerFS(list, a, 1001); err != nil {
		t.Errorf("the store itself counted as another: %v", err)
	}
	// Without a readable meta, the dir's owner counts.
	os.Remove(filepath.Join(a, "meta", "store.json"))
	if err := checkOneOwnerPerFS(list, filepath.Join(base, "b"), uint32(os.Getuid())+1); !errors.Is(err, overlayxfs.ErrSharedFilesystem) {
		t.Errorf("store without meta, other dir owner: %v, want ErrSharedFilesystem", err)
	}
}
