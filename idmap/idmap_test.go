package idmap

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mapping
		bad  bool
	}{
		{in: "0:1000:1", want: Mapping{0, 1000, 1}},
		{in: "1:100000:65536", want: Mapping{1, 100000, 65536}},
		{in: "0:4294967294:1", want: Mapping{0, 4294967294, 1}},
		{in: "0:1000", bad: true},
		{in: "0:1000:0", bad: true},
		{in: "a:1:1", bad: true},
		{in: "-1:1:1", bad: true},
		{in: "0:4294967295:2", bad: true},
		{in: "0:1:1:1", bad: true},
	} {
		got, err := Parse(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestOverlapRejected(t *testing.T) {
	if _, err := ParseList([]string{"0:1000:10", "5:2000:10"}); err == nil {
		t.Fatal("overlapping container ranges accepted")
	}
	if _, err := ParseList([]string{"0:1000:10", "10:1005:10"}); err == nil {
		t.Fatal("overlapping host ranges accepted")
	}
	if _, err := ParseList([]string{"0:1000:1", "1:100000:65536"}); err != nil {
		t.Fatal(err)
	}
}

func TestToHostAndBack(t *testing.T) {
	ms := []Mapping{{0, 1000, 1}, {1, 100000, 65536}}
	for cid, hid := range map[uint32]uint32{0: 1000, 1: 100000, 65000: 164999, 65536: 165535} {
		got, err := ToHost(ms, cid)
		if err != nil || got != hid {
			t.Errorf("ToHost(%d) = %d, %v; want %d", cid, got, err, hid)
		}
		back, err := ToContainer(ms, hid)
		if err != nil || back != cid {
			t.Errorf("ToContainer(%d) = %d, %v; want %d", hid, back, err, cid)
		}
	}
	if _, err := ToHost(ms, 65537); !errors.Is(err, ErrUnmapped) {
		t.Errorf("ToHost(65537) err = %v, want ErrUnmapped", err)
	}
	if got, _ := ToHost(Maximus(), 0); got != MaximusID {
		t.Errorf("maximus root = %d", got)
	}
}

func TestForUser(t *testing.T) {
	f := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(f, []byte("other:200000:65536\n#c\n4242:100000:65536\n4242:300000:10\n"), 0o644)
	ms, err := ForUser(f, 4242, 4242)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0, 4242, 1}, {1, 100000, 65536}, {65537, 300000, 10}}
	if len(ms) != len(want) {
		t.Fatalf("got %v want %v", ms, want)
	}
	for i := range ms {
		if ms[i] != want[i] {
			t.Fatalf("got %v want %v", ms, want)
		}
	}
	if _, err := ForUser(f, 4343, 4343); err == nil {
		t.Fatal("user without range accepted")
	}
}
