package quotahelper

import (
	"reflect"
	"testing"

	"github.com/taproot-dev/taproot/overlayxfs"
)

// The taproot binary does not link this package (internal/depcheck pins
// that), so the client side, overlayxfs, keeps its own copy of what both
// programs must agree on: the stores list, the words of one refusal, and
// the JSON the helper prints (the filesystem names both print are one
// table, internal/fsname, which both import). A test-only import: the
// helper itself does not link overlayxfs.
func TestClientAgrees(t *testing.T) {
	if StoresListPath != overlayxfs.StoresListPath {
		t.Errorf("the helper reads the stores list at %s, taproot init-store writes it at %s", StoresListPath, overlayxfs.StoresListPath)
	}
	if ErrSharedFilesystem.Error() != overlayxfs.ErrSharedFilesystem.Error() {
		t.Errorf("the two programs refuse a shared filesystem in different words:\nhelper: %s\nclient: %s", ErrSharedFilesystem, overlayxfs.ErrSharedFilesystem)
	}
	sameJSON(t, Stats{}, overlayxfs.QuotaUsage{})
	sameJSON(t, StoreStatus{}, overlayxfs.StoreQuotaStatus{})
}

// sameJSON: the type the helper encodes and the one the client decodes
// have the same fields (JSON name and Go type).
func sameJSON(t *testing.T, helper, client any) {
	t.Helper()
	h, c := reflect.TypeOf(helper), reflect.TypeOf(client)
	fields := func(ty reflect.Type) map[string]reflect.Type {
		m := map[string]reflect.Type{}
		for i := range ty.NumField() {
			f := ty.Field(i)
			m[f.Tag.Get("json")] = f.Type
		}
		return m
	}
	hf, cf := fields(h), fields(c)
	if len(hf) == 0 {
		t.Fatalf("%v has no fields: test is broken", h)
	}
	if !reflect.DeepEqual(hf, cf) {
		t.Errorf("the helper prints %v as %v, the client reads it as %v %v", h, hf, c, cf)
	}
}
