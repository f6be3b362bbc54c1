package quotahelper

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
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
		got, err := parseCount("size", s)
		if err != nil || got != want {
			t.Errorf("parseCount(size, %q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "-1", "+5", " 5", "5 ", "10M", "0x10", "1e6", "1_000", "18446744073709551616",
		"99999999999999999999999", "١٢", "5\n"} {
		if n, err := parseCount("size", s); err == nil || !strings.Contains(err.Error(), "invalid size") {
			t.Errorf("parseCount(size, %q) = %d, %v; want an invalid size error", s, n, err)
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
	// check-store names the store itself as not listed.
	if _, err := p.checkStore(other); err == nil || !strings.Contains(err.Error(), other+" is not a store listed in "+p.listPath) {
		t.Errorf("checkStore(%q) = %v, want it refused as not a listed store", other, err)
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
	chownTree(t, store, 4001)
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

func TestParseInodes(t *testing.T) {
	for s, want := range map[string]uint64{"1": 1, "5120": 5120, "18446744073709551615": 1<<64 - 1} {
		if got, err := parseCount("inode count", s); err != nil || got != want {
			t.Errorf("parseCount(inode count, %q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "-1", "+5", " 5", "1k", "0x10", "18446744073709551616", "5\n"} {
		if n, err := parseCount("inode count", s); err == nil || !strings.Contains(err.Error(), "invalid inode count") {
			t.Errorf("parseCount(inode count, %q) = %d, %v; want an invalid inode count error", s, n, err)
		}
	}
}

// maximusMeta is a root store's meta/store.json as the store writes it.
const maximusMeta = `{"version":1,"owner_uid":0,"owner_gid":0,
 "uid_mappings":[{"container_id":0,"host_id":4294967294,"size":1},{"container_id":1,"host_id":1,"size":4294967293}],
 "gid_mappings":[{"container_id":0,"host_id":4294967294,"size":1},{"container_id":1,"host_id":1,"size":4294967293}],"quota":true}`

const maximusRoot = 4294967294

// rootStore makes testStore a root store with quotas whose diff/ and work/
// are container root's, as taproot lays one out.
func rootStore(t *testing.T) (*privs, string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to chown to container root's host uid")
	}
	p, store := testStore(t)
	if err := os.WriteFile(store+"/meta/store.json", []byte(maximusMeta), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"diff", "work"} {
		if err := os.Chown(store+"/images/img1/"+d, maximusRoot, maximusRoot); err != nil {
			t.Fatal(err)
		}
	}
	return p, store
}

func TestRootStoreContainerRootDirs(t *testing.T) {
	p, store := rootStore(t)
	img, err := p.openImage(store + "/images/img1")
	if err != nil {
		t.Fatalf("root store with container root's diff/ and work/ refused: %v", err)
	}
	if img.diff == nil || img.work == nil {
		t.Error("diff/ or work/ not opened")
	}
	img.close()

	// Only diff/ and work/ may be container root's, and only container root's.
	if err := os.Chown(store+"/images/img1/diff", maximusRoot-1, maximusRoot); err != nil {
		t.Fatal(err)
	}
	if _, err := p.openImage(store + "/images/img1"); err == nil || !strings.Contains(err.Error(), "or its container root (uid 4294967294)") {
		t.Errorf("diff/ of another uid accepted: %v", err)
	}
	os.Chown(store+"/images/img1/diff", maximusRoot, maximusRoot)
	if err := os.Chown(store+"/images/img1", maximusRoot, maximusRoot); err != nil {
		t.Fatal(err)
	}
	if _, err := p.openImage(store + "/images/img1"); err == nil || !strings.Contains(err.Error(), "not by the store's owner") {
		t.Errorf("image dir owned by container root accepted: %v", err)
	}
	os.Chown(store+"/images/img1", 0, 0)
	if err := os.Chmod(store+"/images/img1/work", 0o775); err != nil {
		t.Fatal(err)
	}
	if _, err := p.openImage(store + "/images/img1"); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("group-writable work/ accepted: %v", err)
	}
	os.Chmod(store+"/images/img1/work", 0o755)
	if img, err := p.openImage(store + "/images/img1"); err != nil {
		t.Errorf("restored store refused: %v", err)
	} else {
		img.close()
	}
}

// TestRootStoreMetaChecks: the meta that names container root must be the
// owner's, unwritable by others, a small regular file reached without
// symlinks, and name the owner; else a dir not the owner's is refused.
func TestRootStoreMetaChecks(t *testing.T) {
	cases := map[string]func(t *testing.T, store string){
		"missing": func(t *testing.T, store string) { os.Remove(store + "/meta/store.json") },
		"group writable": func(t *testing.T, store string) {
			os.Chmod(store+"/meta/store.json", 0o664)
		},
		"owned by container root": func(t *testing.T, store string) {
			os.Chown(store+"/meta/store.json", maximusRoot, maximusRoot)
		},
		"meta dir owned by container root": func(t *testing.T, store string) {
			os.Chown(store+"/meta", maximusRoot, maximusRoot)
		},
		"meta dir world writable": func(t *testing.T, store string) {
			os.Chmod(store+"/meta", 0o777)
		},
		"symlink": func(t *testing.T, store string) {
			other := t.TempDir() + "/store.json"
			os.WriteFile(other, []byte(maximusMeta), 0o644)
			os.Remove(store + "/meta/store.json")
			os.Symlink(other, store+"/meta/store.json")
		},
		"meta dir symlink": func(t *testing.T, store string) {
			other := t.TempDir()
			os.WriteFile(other+"/store.json", []byte(maximusMeta), 0o644)
			os.RemoveAll(store + "/meta")
			os.Symlink(other, store+"/meta")
		},
		"fifo": func(t *testing.T, store string) {
			os.Remove(store + "/meta/store.json")
			if err := unix.Mkfifo(store+"/meta/store.json", 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"too big": func(t *testing.T, store string) {
			os.WriteFile(store+"/meta/store.json", []byte(maximusMeta+strings.Repeat(" ", maxMetaSize)), 0o644)
		},
		"other owner_uid": func(t *testing.T, store string) {
			os.WriteFile(store+"/meta/store.json", []byte(strings.Replace(maximusMeta, `"owner_uid":0`, `"owner_uid":1000`, 1)), 0o644)
		},
		"no owner_uid": func(t *testing.T, store string) {
			os.WriteFile(store+"/meta/store.json", []byte(strings.Replace(maximusMeta, `"owner_uid":0,`, ``, 1)), 0o644)
		},
		"root mapped twice": func(t *testing.T, store string) {
			os.WriteFile(store+"/meta/store.json", []byte(strings.Replace(maximusMeta, `"uid_mappings":[`, `"uid_mappings":[{"container_id":0,"host_id":7,"size":1},`, 1)), 0o644)
		},
		"not json": func(t *testing.T, store string) {
			os.WriteFile(store+"/meta/store.json", []byte("{"), 0o644)
		},
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			p, store := rootStore(t)
			spoil(t, store)
			img, err := p.openImage(store + "/images/img1")
			if err == nil {
				img.close()
				t.Fatal("container root's diff/ accepted with a bad meta")
			}
			if !errors.Is(err, ErrBadMeta) {
				t.Errorf("error %v is not ErrBadMeta", err)
			}
			// A store whose dirs are all the owner's needs no meta.
			os.Chown(store+"/images/img1/diff", 0, 0)
			os.Chown(store+"/images/img1/work", 0, 0)
			if img, err := p.openImage(store + "/images/img1"); err != nil {
				t.Errorf("store with owner-owned dirs refused for its meta: %v", err)
			} else {
				img.close()
			}
		})
	}
}

// TestRootlessStoreMetaNamesRoot: a meta written by a rootless owner that
// maps container root to host root does not make a root-owned diff/
// acceptable.
func TestRootlessStoreMetaNamesRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown")
	}
	p, store := testStore(t)
	p.ruid = 4000
	meta := `{"owner_uid":4000,"uid_mappings":[{"container_id":0,"host_id":0,"size":1}]}`
	if err := os.WriteFile(store+"/meta/store.json", []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, store, 4000)
	if img, err := p.openImage(store + "/images/img1"); err != nil {
		t.Fatalf("rootless store refused: %v", err)
	} else {
		img.close()
	}
	os.Chown(store+"/images/img1/diff", 0, 0)
	if _, err := p.openImage(store + "/images/img1"); err == nil || !strings.Contains(err.Error(), "container root (none") {
		t.Errorf("root-owned diff/ in a rootless store accepted: %v", err)
	}
}

// TestOneOwnerPerFilesystem: two listed stores of two owners on one
// filesystem are refused, both ways; a listed path that is missing or goes
// through a symlink is no store.
func TestOneOwnerPerFilesystem(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown")
	}
	p, store := testStore(t)
	base := filepath.Dir(store)
	other := base + "/other"
	for _, d := range []string{"images/o1/diff", "meta"} {
		if err := os.MkdirAll(filepath.Join(other, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeList := func(lines ...string) {
		t.Helper()
		if err := os.WriteFile(p.listPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := func(dir string) error {
		img, err := p.openImage(dir)
		if err == nil {
			img.close()
		}
		return err
	}
	// Same owner (root): fine.
	writeList(store, other)
	if err := open(store + "/images/img1"); err != nil {
		t.Fatalf("two stores of one owner refused: %v", err)
	}
	// The other store handed to uid 4001.
	if err := os.Chown(other, 4001, 4001); err != nil {
		t.Fatal(err)
	}
	if err := open(store + "/images/img1"); !errors.Is(err, ErrSharedFilesystem) {
		t.Errorf("openImage with another owner's store on the filesystem: %v, want ErrSharedFilesystem", err)
	} else if !strings.Contains(err.Error(), other+" (uid 4001)") || !strings.Contains(err.Error(), "--store-size-bytes") {
		t.Errorf("error does not name the other store and the way out: %v", err)
	}
	if _, err := p.checkStore(store); !errors.Is(err, ErrSharedFilesystem) {
		t.Errorf("check-store with another owner's store on the filesystem: %v, want ErrSharedFilesystem", err)
	}
	// The other owner is refused as well.
	p2 := *p
	p2.ruid = 4001
	os.Chown(other+"/images", 4001, 4001)
	os.Chown(other+"/images/o1", 4001, 4001)
	if err := open2(&p2, other+"/images/o1"); !errors.Is(err, ErrSharedFilesystem) {
		t.Errorf("the other owner's openImage: %v, want ErrSharedFilesystem", err)
	}
	// A missing listed store, or one reached through a symlink, is no store.
	link := base + "/link"
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	writeList(store, base+"/missing", link, link+"/images")
	if err := open(store + "/images/img1"); err != nil {
		t.Errorf("missing or symlinked listed paths counted as stores: %v", err)
	}
}

func open2(p *privs, dir string) error {
	img, err := p.openImage(dir)
	if err == nil {
		img.close()
	}
	return err
}

// chownTree gives everything below dir (dir too) to uid:uid.
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
