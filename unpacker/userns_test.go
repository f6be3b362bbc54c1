package unpacker

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const usernsEnv = "TAPROOT_UNPACKER_USERNS_ROOT"

// TestUserNamespace re-executes this test binary as root of a new user
// namespace that maps only ID 0 (to our own uid), the situation of a
// rootless store, and runs TestUsernsHelper there.
func TestUserNamespace(t *testing.T) {
	if os.Getenv(usernsEnv) != "" {
		t.Skip("already inside")
	}
	inUserns(t, "TestUsernsHelper", usernsEnv, syscall.CLONE_NEWUSER,
		syscall.SysProcIDMap{ContainerID: 0, HostID: os.Getuid(), Size: 1}, syscall.SysProcIDMap{ContainerID: 0, HostID: os.Getgid(), Size: 1}, t.Skipf)
}

func TestUsernsHelper(t *testing.T) {
	base := os.Getenv(usernsEnv)
	if base == "" {
		return // an entry point: TestUserNamespace runs it in a user namespace
	}
	var uidMap [64]byte
	n, _ := unix.Open("/proc/self/uid_map", unix.O_RDONLY, 0)
	m, _ := unix.Read(n, uidMap[:])
	unix.Close(n)
	t.Logf("uid_map: %s", strings.TrimSpace(string(uidMap[:m])))

	root := filepath.Join(base, "ok")
	os.Mkdir(root, 0o755)
	res := mustUnpack(t, root, mkTar(t,
		dirE("a/"),
		fileE("b/.wh.gone", ""),
		fileE("a/.wh..wh..opq", ""),
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "a/suid", Mode: 0o4755}},
		te{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3}},
		te{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "raw-whiteout"}},
	), Options{SkipDevices: true})
	for _, p := range []string{"b/gone", "raw-whiteout"} {
		if st := lstat(t, filepath.Join(root, p)); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: not a 0:0 char device", p)
		}
	}
	if v, err := getXattr(filepath.Join(root, "a"), "user.overlay.opaque"); v != "y" {
		t.Errorf("opaque xattr: %q %v", v, err)
	}
	if st := lstat(t, filepath.Join(root, "a/suid")); st.Mode&0o7777 != 0o4755 {
		t.Errorf("suid mode %o", st.Mode)
	}
	assertMissing(t, filepath.Join(root, "dev/null"))
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "skipped 1 device nodes") {
		t.Errorf("warnings %q", res.Warnings)
	}

	// A real device without SkipDevices: a clear error.
	root2 := filepath.Join(base, "dev")
	os.Mkdir(root2, 0o755)
	_, err := unpackBytes(t, root2, mkTar(t, te{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}), Options{})
	if err == nil || !strings.Contains(err.Error(), "needs root in the initial user namespace") {
		t.Errorf("device without SkipDevices: %v", err)
	}

	// IDs outside the mapping.
	for _, c := range []struct {
		uid, gid int
		want     string
	}{
		{70000, 0, `layer entry "etc/x": uid 70000 is outside the store's id mapping`},
		{0, 70001, `layer entry "etc/x": gid 70001 is outside the store's id mapping`},
	} {
		root3 := filepath.Join(base, "ids")
		os.RemoveAll(root3)
		os.Mkdir(root3, 0o755)
		_, err = unpackBytes(t, root3, mkTar(t, te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "etc/x", Uid: c.uid, Gid: c.gid}}), Options{})
		if !errors.Is(err, ErrIDOutsideMapping) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err %v, want %q", err, c.want)
		}
	}
	t.Logf("example error: %v", err)
}
