package quotahelper

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

func TestStructSizes(t *testing.T) {
	if s := unsafe.Sizeof(fsxattr{}); s != 28 {
		t.Errorf("fsxattr is %d bytes, want 28", s)
	}
	if s := unsafe.Sizeof(fsDiskQuota{}); s != 112 {
		t.Errorf("fs_disk_quota is %d bytes, want 112", s)
	}
	if s := unsafe.Sizeof(fsQuotaStat{}); s != 80 {
		t.Errorf("fs_quota_stat is %d bytes, want 80", s)
	}
	if o := unsafe.Offsetof(fsQuotaStat{}.Flags); o != 2 {
		t.Errorf("qs_flags at %d, want 2", o)
	}
	if o := unsafe.Offsetof(fsDiskQuota{}.Bcount); o != 40 {
		t.Errorf("d_bcount at %d, want 40", o)
	}
	if o := unsafe.Offsetof(fsDiskQuota{}.RtbHardlimit); o != 72 {
		t.Errorf("d_rtb_hardlimit at %d, want 72", o)
	}
	if c := qcmd(qXGetQuota, prjQuota); c != 0x580302 {
		t.Errorf("QCMD(Q_XGETQUOTA, PRJQUOTA) = %#x, want 0x580302", c)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]uint64{"1": 1, "10485760": 10485760, "18446744073709551615": 1<<64 - 1, "007": 7}
	for s, want := range good {
		got, err := parseSize(s)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "-1", "+5", " 5", "5 ", "10M", "0x10", "1e6", "1_000", "18446744073709551616",
		"99999999999999999999999", "١٢", "5\n"} {
		if n, err := parseSize(s); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", s, n)
		}
	}
}

func TestSplitImageDir(t *testing.T) {
	store, id, err := splitImageDir("/var/lib/taproot/images/abc")
	if err != nil || store != "/var/lib/taproot" || id != "abc" {
		t.Fatalf("got %q %q %v", store, id, err)
	}
	for _, p := range []string{"", "rel/images/x", "/s/images/../images/x", "/s/images/x/", "/s/images/./x",
		"/s//images/x", "/s/images/x/..", "/s/imagez/x", "/images/x", "/s/images", "/s/images/x/diff", "/s/images/a\x00b"} {
		if s, i, err := splitImageDir(p); err == nil {
			t.Errorf("splitImageDir(%q) = %q %q, want an error", p, s, i)
		}
	}
}

// testStore makes a store with one image under a fresh temp dir and a
// stores list naming it, and returns privs that read that list.
func testStore(t *testing.T) (p *privs, store string) {
	t.Helper()
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	store = filepath.Join(base, "store")
	for _, d := range []string{"images/img1/diff", "images/img1/work", "meta"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	list := filepath.Join(base, "stores")
	if err := os.WriteFile(list, []byte("# test\n\n"+store+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &privs{ruid: os.Getuid(), rgid: os.Getgid(), listPath: list}, store
}

func TestOpenImage(t *testing.T) {
	p, store := testStore(t)
	img, err := p.openImage(store + "/images/img1")
	if err != nil {
		t.Fatal(err)
	}
	if img.diff == nil || img.work == nil || len(img.dirs()) != 3 {
		t.Errorf("diff/work not opened: %v", img.dirs())
	}
	fi, _ := os.Stat(store + "/images/img1")
	if id, err := projectID(img); err != nil || fi == nil {
		t.Errorf("projectID: %v", err)
	} else if uint64(id) != img.st.Ino {
		t.Errorf("project ID %d is not the inode number %d", id, img.st.Ino)
	}
	img.close()
}

func TestOpenImageRefusals(t *testing.T) {
	p, store := testStore(t)
	other := t.TempDir()
	if err := os.Symlink("/etc", store+"/images/evil"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(store+"/images/img1", store+"/images/evil2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(store+"/images/wide", 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(store+"/images/wide", 0o777)
	if err := os.Symlink(other, store+"/images/img1/diffx"); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"/":                              "not of the form",
		store + "/images/evil":           "symbolic link",
		store + "/images/evil2":          "symbolic link",
		store + "/images/../images/img1": "not clean",
		store + "/images/nope":           "no such file",
		store + "/images/wide":           "writable by group or others",
		other + "/images/x":              "not inside a store listed",
		store + "x/images/img1":          "not inside a store listed",
	}
	for path, want := range cases {
		img, err := p.openImage(path)
		if err == nil {
			img.close()
			t.Errorf("openImage(%q) succeeded", path)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("openImage(%q) = %v, want an error containing %q", path, err, want)
		}
	}
}

func TestStoresListChecks(t *testing.T) {
	p, store := testStore(t)
	if err := os.Chmod(p.listPath, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := p.openImage(store + "/images/img1"); err == nil || !strings.Contains(err.Error(), "writable only by its owner") {
		t.Errorf("world-writable list accepted: %v", err)
	}
	os.Chmod(p.listPath, 0o644)
	// A setuid run trusts only a root-owned list.
	if os.Getuid() != 0 {
		p.setuid = true
		if _, err := p.readStores(); err == nil {
			t.Error("setuid run trusted a list owned by the caller")
		}
		p.setuid = false
	}
	if err := os.WriteFile(p.listPath, []byte("relative/store\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.readStores(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("relative store path accepted: %v", err)
	}
	p.listPath = filepath.Dir(p.listPath) + "/missing"
	if _, err := p.readStores(); err == nil {
		t.Error("missing list accepted")
	}
}

func TestStoreOwnedByAnotherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown")
	}
	p, store := testStore(t)
	p.ruid = 4000 // pretend to be an unprivileged caller
	err := filepath.Walk(store, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, 4001, 4001)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.openImage(store + "/images/img1"); err == nil || !strings.Contains(err.Error(), "not by the caller") {
		t.Errorf("store of another user accepted: %v", err)
	}
	// An image dir owned by someone other than the store's owner.
	p.ruid = 4001
	if err := os.Lchown(store+"/images/img1", 4002, 4002); err != nil {
		t.Fatal(err)
	}
	if _, err := p.openImage(store + "/images/img1"); err == nil || !strings.Contains(err.Error(), "not by the store's owner") {
		t.Errorf("image of another user accepted: %v", err)
	}
}

func TestMainUsage(t *testing.T) {
	env := os.Environ()
	defer func() { // Main clears the environment
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	}()
	var out, errb strings.Builder
	if code := Main([]string{"taproot-quota"}, &out, &errb); code != ExitUsage {
		t.Errorf("no args: exit %d", code)
	}
	errb.Reset()
	if code := Main([]string{"taproot-quota", "set-limit", "/x"}, &out, &errb); code != ExitUsage {
		t.Errorf("missing size: exit %d", code)
	}
	if !strings.HasPrefix(errb.String(), "taproot-quota: ") {
		t.Errorf("stderr %q", errb.String())
	}
}
