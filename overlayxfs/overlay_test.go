package overlayxfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPlanFitsAndSquash(t *testing.T) {
	p := Plan{Upper: "/var/lib/taproot/images/x/diff", Work: "/var/lib/taproot/images/x/work"}
	for i := 0; i < 150; i++ {
		p.Lowers = append(p.Lowers, fmt.Sprintf("/var/lib/taproot/l/%010d", i))
	}
	if p.Fits() {
		t.Fatalf("150 lowers of 30 bytes fit in a page: %d bytes", len(p.Data()))
	}
	k := p.KeepOnTop("/var/lib/taproot/l/squashedxx")
	if k <= 0 || k >= 150 {
		t.Fatalf("KeepOnTop = %d", k)
	}
	q := p
	q.Lowers = append(append([]string(nil), p.Lowers[:k]...), "/var/lib/taproot/l/squashedxx")
	if !q.Fits() {
		t.Fatalf("plan with %d kept does not fit: %d bytes", k, len(q.Data()))
	}
	q.Lowers = append(append([]string(nil), p.Lowers[:k+1]...), "/var/lib/taproot/l/squashedxx")
	if q.Fits() {
		t.Fatalf("KeepOnTop=%d is not the largest that fits", k)
	}
	small := Plan{Lowers: []string{"/a", "/b"}, Upper: "/u", Work: "/w"}
	if got := small.KeepOnTop("/s"); got != 2 {
		t.Fatalf("small plan KeepOnTop = %d, want 2", got)
	}
	if !strings.HasPrefix(small.Data(), "userxattr,lowerdir=/a:/b,upperdir=/u,workdir=/w") {
		t.Fatalf("data = %q", small.Data())
	}
}

func TestMaxLowers(t *testing.T) {
	p := Plan{Upper: "/u", Work: "/w"}
	for i := 0; i < 600; i++ {
		p.Lowers = append(p.Lowers, "/l")
	}
	if p.Fits() {
		t.Fatal("600 lowers fit")
	}
	if k := p.KeepOnTop("/s"); k != MaxLowers-1 {
		t.Fatalf("KeepOnTop = %d, want %d", k, MaxLowers-1)
	}
}

func TestPlanMount(t *testing.T) {
	p := Plan{Lowers: []string{"/s/l/a", "/s/l/b"}, Upper: "/s/images/x/diff", Work: "/s/images/x/work", Rootfs: "/s/images/x/rootfs"}
	m, err := p.Mount()
	if err != nil {
		t.Fatal(err)
	}
	want := Mount{Type: "overlay", Source: "overlay", Target: "/s/images/x/rootfs",
		Options: []string{"userxattr", "lowerdir=/s/l/a:/s/l/b", "upperdir=/s/images/x/diff", "workdir=/s/images/x/work"}}
	if !reflect.DeepEqual(m, want) || !m.Equal(want) {
		t.Fatalf("mount = %+v, want %+v", m, want)
	}
	if m.Data() != "userxattr,lowerdir=/s/l/a:/s/l/b,upperdir=/s/images/x/diff,workdir=/s/images/x/work" {
		t.Errorf("data = %q", m.Data())
	}
	// The JSON is what image.json holds.
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"type":"overlay","source":"overlay","target":"/s/images/x/rootfs","options":["userxattr","lowerdir=/s/l/a:/s/l/b","upperdir=/s/images/x/diff","workdir=/s/images/x/work"]}` {
		t.Errorf("json = %s", data)
	}
	var back Mount
	if err := json.Unmarshal(data, &back); err != nil || !back.Equal(m) {
		t.Errorf("json round trip = %+v, %v", back, err)
	}
	for _, o := range []Mount{
		{Type: "bind", Source: m.Source, Target: m.Target, Options: m.Options},
		{Type: m.Type, Source: m.Source, Target: "/etc", Options: m.Options},
		{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options[:3]},
		{Type: m.Type, Source: m.Source, Target: m.Target, Options: append(append([]string(nil), m.Options[:3]...), "workdir=/etc")},
	} {
		if m.Equal(o) {
			t.Errorf("Equal(%+v) is true", o)
		}
	}

	// Lowers gives back the plan's lowers, top first, from the data alone.
	if got := m.Lowers(); !reflect.DeepEqual(got, p.Lowers) {
		t.Errorf("Lowers = %q, want %q", got, p.Lowers)
	}
	if got := (Mount{Type: "bind", Source: "/x", Target: "/y"}).Lowers(); got != nil {
		t.Errorf("Lowers of a mount without lowerdir = %q, want none", got)
	}

	sm, err := m.SpecMount(p.Rootfs)
	if err != nil || sm.Destination != "/" || sm.Type != "overlay" || sm.Source != "overlay" || !reflect.DeepEqual(sm.Options, m.Options) {
		t.Errorf("SpecMount = %+v, %v", sm, err)
	}
	sm.Options[0] = "changed"
	if m.Options[0] != "userxattr" {
		t.Error("SpecMount shares the options slice")
	}
	if sm, err := m.SpecMount("/s/images"); err != nil || sm.Destination != "/x/rootfs" {
		t.Errorf("SpecMount under a parent root = %+v, %v", sm, err)
	}
	if _, err := m.SpecMount("/s/images/y/rootfs"); err == nil {
		t.Error("SpecMount of a target outside root succeeded")
	}
}

// A path overlay's options cannot carry is refused, not split.
func TestPlanMountRefusesBadPaths(t *testing.T) {
	good := Plan{Lowers: []string{"/s/l/a"}, Upper: "/s/images/x/diff", Work: "/s/images/x/work", Rootfs: "/s/images/x/rootfs"}
	for _, bad := range []string{"/s,x", "/s:x", `/s\x`, "/s\nx", "s", "/s/../s", "/s/"} {
		for field, edit := range map[string]func(*Plan, string){
			"lower":  func(p *Plan, root string) { p.Lowers = []string{root + "/l/a"} },
			"upper":  func(p *Plan, root string) { p.Upper = root + "/images/x/diff" },
			"work":   func(p *Plan, root string) { p.Work = root + "/images/x/work" },
			"rootfs": func(p *Plan, root string) { p.Rootfs = root + "/images/x/rootfs" },
		} {
			p := good
			p.Lowers = append([]string(nil), good.Lowers...)
			edit(&p, bad)
			if _, err := p.Mount(); !errors.Is(err, ErrMountPath) {
				t.Errorf("%s under %q: err = %v, want ErrMountPath", field, bad, err)
			}
		}
	}
	if _, err := (Plan{Upper: "/u", Work: "/w", Rootfs: "/r"}).Mount(); err == nil {
		t.Error("a plan without lowers mounts")
	}
	deep := good
	for i := 0; i < MaxLowers; i++ {
		deep.Lowers = append(deep.Lowers, "/s/l/b")
	}
	if _, err := deep.Mount(); !errors.Is(err, ErrMountTooLarge) {
		t.Errorf("%d lowers: err = %v, want ErrMountTooLarge", len(deep.Lowers), err)
	}
}

// TestMountAndUnmount mounts a real overlay (root only) and unmounts it
// twice: the second is a no-op, as delete's is on an image never mounted.
func TestMountAndUnmount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay needs root (the acceptance --with-mount test runs it as root)")
	}
	dir := t.TempDir()
	p := Plan{Lowers: []string{filepath.Join(dir, "lower")}, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), Rootfs: filepath.Join(dir, "rootfs")}
	for _, d := range []string{p.Lowers[0], p.Upper, p.Work, p.Rootfs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(p.Lowers[0], "f"), []byte("lower\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := p.Mount()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(m.Target, unix.MNT_DETACH)
	if b, err := os.ReadFile(filepath.Join(m.Target, "f")); err != nil || string(b) != "lower\n" {
		t.Fatalf("rootfs/f = %q, %v", b, err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.Target, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rootfs/f after unmount: %v", err)
	}
	if err := m.Unmount(); err != nil {
		t.Errorf("second unmount: %v", err)
	}
	gone := Mount{Target: filepath.Join(dir, "nonexistent")}
	if err := gone.Unmount(); err != nil {
		t.Errorf("unmount of a missing target: %v", err)
	}
}
