package quotahelper

import (
	"testing"

	"github.com/taproot-dev/taproot/overlayxfs"
)

// The taproot binary does not link this package (internal/depcheck pins
// that), so the client side keeps its own copy of what both programs must
// agree on. A test-only import: the helper itself still links only the
// standard library and x/sys.
func TestClientAgrees(t *testing.T) {
	if StoresListPath != overlayxfs.StoresListPath {
		t.Errorf("the helper reads the stores list at %s, taproot init-store writes it at %s", StoresListPath, overlayxfs.StoresListPath)
	}
	if ErrSharedFilesystem.Error() != overlayxfs.ErrSharedFilesystem.Error() {
		t.Errorf("the two programs refuse a shared filesystem in different words:\nhelper: %s\nclient: %s", ErrSharedFilesystem, overlayxfs.ErrSharedFilesystem)
	}
}
