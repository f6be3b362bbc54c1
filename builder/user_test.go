package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// layerWith makes a layer dir holding etc/passwd written by make.
func layerWith(t *testing.T, make func(passwd string) error) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "diff")
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := make(filepath.Join(dir, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writePasswd(content string) func(string) error {
	return func(p string) error { return os.WriteFile(p, []byte(content), 0o644) }
}

// readWithin calls readImageFile and fails the test if it does not return
// within 10 s (a FIFO opened for reading blocks forever).
func readWithin(t *testing.T, lowers []string) (string, error) {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	done := make(chan res, 1)
	go func() {
		s, err := readImageFile(lowers, "etc/passwd")
		done <- res{s, err}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("readImageFile(%v) blocked", lowers)
		return "", nil
	}
}

func TestReadImageFile(t *testing.T) {
	base := layerWith(t, writePasswd("app:x:1000:1001::/home/app:/bin/sh\n"))
	top := layerWith(t, writePasswd("app:x:2000:2001::/home/app:/bin/sh\n"))

	// The topmost layer that has the file wins.
	got, err := readWithin(t, []string{top, base})
	if err != nil || !strings.Contains(got, ":2000:") {
		t.Fatalf("top first: %q, %v", got, err)
	}
	if uid, gid, ok := lookupPasswd(got, "app"); !ok || uid != 2000 || gid != 2001 {
		t.Errorf("lookupPasswd = %d %d %v", uid, gid, ok)
	}
	empty := filepath.Join(t.TempDir(), "diff")
	os.MkdirAll(empty, 0o755)
	if got, err := readWithin(t, []string{empty, base}); err != nil || !strings.Contains(got, ":1000:") {
		t.Errorf("through a layer without it: %q, %v", got, err)
	}

	refused := map[string]func(string) error{
		"FIFO":     func(p string) error { return unix.Mkfifo(p, 0o644) },
		"symlink":  func(p string) error { return os.Symlink("/etc/shadow", p) },
		"dir":      func(p string) error { return os.Mkdir(p, 0o755) },
		"socket":   func(p string) error { return unix.Mknod(p, unix.S_IFSOCK|0o644, 0) },
		"huge":     func(p string) error { return sparse(p, 64<<30) }, // 64 GiB, sparse: must not be read or allocated
		"1MiB + 1": func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("x", maxImageUserFile+1)), 0o644) },
	}
	for what, mk := range refused {
		l := layerWith(t, mk)
		start := time.Now()
		got, err := readWithin(t, []string{l, base})
		if err == nil {
			t.Errorf("%s as /etc/passwd: read %d bytes, want an error", what, len(got))
			continue
		}
		if !strings.Contains(err.Error(), "/etc/passwd in the image") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q should name /etc/passwd in the image, on one line", what, err)
		}
		t.Logf("%s: %v (%v)", what, err, time.Since(start).Round(time.Microsecond))
	}
	// Exactly the bound is read.
	l := layerWith(t, writePasswd(strings.Repeat("x", maxImageUserFile)))
	if got, err := readWithin(t, []string{l}); err != nil || len(got) != maxImageUserFile {
		t.Errorf("1 MiB: %d bytes, %v", len(got), err)
	}

	// Names resolve inside the layer: neither an absolute nor a climbing
	// symlinked /etc reaches the host's /etc/passwd.
	host, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/etc", "../../../../../../../../../etc", "/proc/self/root/etc", "/proc/1/root/etc"} {
		dir := filepath.Join(t.TempDir(), "diff")
		os.MkdirAll(dir, 0o755)
		if err := os.Symlink(target, filepath.Join(dir, "etc")); err != nil {
			t.Fatal(err)
		}
		got, err := readWithin(t, []string{dir})
		if err == nil || got == string(host) {
			t.Errorf("etc -> %s: read %q (%v), want an error", target, got, err)
		}
	}
	// A symlinked /etc inside the layer is fine.
	dir := filepath.Join(t.TempDir(), "diff")
	os.MkdirAll(filepath.Join(dir, "real"), 0o755)
	os.WriteFile(filepath.Join(dir, "real", "passwd"), []byte("app:x:3:3::/:/bin/sh\n"), 0o644)
	os.Symlink("/real", filepath.Join(dir, "etc"))
	if got, err := readWithin(t, []string{dir}); err != nil || !strings.Contains(got, "app:x:3:3") {
		t.Errorf("etc -> /real: %q, %v", got, err)
	}
}

func TestReadImageFileWhiteout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mknod the 0:0 whiteout device outside a user namespace")
	}
	base := layerWith(t, writePasswd("app:x:1000:1000::/:/bin/sh\n"))
	top := layerWith(t, func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o600, 0) })
	if got, err := readWithin(t, []string{top, base}); err == nil {
		t.Errorf("whited-out /etc/passwd read: %q", got)
	}
	// Another char device is refused, not opened.
	null := layerWith(t, func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) })
	if _, err := readWithin(t, []string{null, base}); err == nil || !strings.Contains(err.Error(), "character device") {
		t.Errorf("char device as /etc/passwd: %v", err)
	}
}

func sparse(p string, size int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Truncate(size)
}

// TestResolveUser walks the image user forms through the one passwd/group
// parser: names, numbers, a numeric user's primary group, malformed and
// short lines passed over.
func TestResolveUser(t *testing.T) {
	layer := layerWith(t, writePasswd("short:x:7\n"+
		"bad:x:1:notanumber::/:/bin/sh\n"+
		"app:x:1000:1001::/home/app:/bin/sh\n"+
		"bad:x:2:2::/:/bin/sh\n"+
		"odd:x:3000:nogid::/:/bin/sh\n"+
		"odd2:x:3000:3003::/:/bin/sh\n"))
	if err := os.WriteFile(filepath.Join(layer, "etc", "group"), []byte("staff:x:50:\nbroken:x:\nbroken:x:51:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user     string
		uid, gid uint32
	}{
		{"", 0, 0},
		{"app", 1000, 1001},
		{"app:staff", 1000, 50},
		{"app:77", 1000, 77},
		{"bad", 2, 2},        // the malformed first "bad" is passed over
		{"1000", 1000, 1001}, // a numeric user's group from passwd
		{"3000", 3000, 3003}, // ... from the first well-formed line for it
		{"4242", 4242, 0},    // not in passwd: group 0
		{"4242:broken", 4242, 51},
	} {
		u, err := resolveUser(c.user, []string{layer})
		if err != nil || u.UID != c.uid || u.GID != c.gid {
			t.Errorf("resolveUser(%q) = %d:%d %v, want %d:%d", c.user, u.UID, u.GID, err, c.uid, c.gid)
		}
	}
	for _, user := range []string{"short", "nobody", "app:nogroup"} {
		if u, err := resolveUser(user, []string{layer}); err == nil {
			t.Errorf("resolveUser(%q) = %+v, want an error", user, u)
		}
	}
}

// TestLookupID resolves init-store's --owner names in the host's files
// (root is in every /etc/passwd and /etc/group) and takes numbers as
// they are.
func TestLookupID(t *testing.T) {
	for _, kind := range []string{"user", "group"} {
		if id, err := lookupID("root", kind); err != nil || id != 0 {
			t.Errorf("lookupID(root, %s) = %d %v", kind, id, err)
		}
		if id, err := lookupID("4242", kind); err != nil || id != 4242 {
			t.Errorf("lookupID(4242, %s) = %d %v", kind, id, err)
		}
		if _, err := lookupID("no-such-name-here", kind); err == nil {
			t.Errorf("lookupID(no-such-name-here, %s): no error", kind)
		}
	}
}
