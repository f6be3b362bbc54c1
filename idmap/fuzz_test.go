package idmap

import (
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; what it accepts has a positive size, fits
// in 32 bits, and its String form parses back to the same mapping.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0:1000:1", "1:100000:65536", "0:4294967294:1", "0:0:4294967296", "4294967295:0:1",
		"1:2", "a:b:c", "-1:0:1", "0:0:0", " 0:0:1", "00:01:1", "+1:2:3", "0:0:1:", "1:1:4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		if m.Size == 0 {
			t.Fatalf("Parse(%q) accepted size 0", s)
		}
		if uint64(m.ContainerID)+uint64(m.Size) > 1<<32 || uint64(m.HostID)+uint64(m.Size) > 1<<32 {
			t.Fatalf("Parse(%q) = %v overflows 32 bits", s, m)
		}
		back, err := Parse(m.String())
		if err != nil || back != m {
			t.Fatalf("Parse(%q) = %v, but Parse(%q) = %v, %v", s, m, m.String(), back, err)
		}
	})
}

// FuzzParseList: ParseList never accepts two mappings that overlap on the
// container side or on the host side, and its result round-trips.
func FuzzParseList(f *testing.F) {
	f.Add("0:1000:1,1:100000:65536")
	f.Add("0:1000:1,0:2000:1")    // container overlap
	f.Add("0:1000:10,100:1005:1") // host overlap
	f.Add("0:0:4294967295,4294967295:4294967295:1")
	f.Add("5:5:5,0:0:5,10:10:5")
	f.Add("")
	f.Fuzz(func(t *testing.T, list string) {
		specs := strings.Split(list, ",")
		ms, err := ParseList(specs)
		if err != nil {
			return
		}
		if len(ms) != len(specs) || len(ms) == 0 {
			t.Fatalf("ParseList(%q) = %d mappings from %d specs", list, len(ms), len(specs))
		}
		for i, a := range ms {
			for _, b := range ms[i+1:] {
				if ovl(a.ContainerID, a.Size, b.ContainerID, b.Size) || ovl(a.HostID, a.Size, b.HostID, b.Size) {
					t.Fatalf("ParseList(%q) accepted overlapping %v and %v", list, a, b)
				}
			}
			// Every ID of the range translates both ways (ends checked).
			for _, c := range []uint32{a.ContainerID, a.ContainerID + a.Size - 1} {
				hid, err := ToHost(ms, c)
				if err != nil {
					t.Fatalf("%v: ToHost(%d): %v", ms, c, err)
				}
				if back, err := ToContainer(ms, hid); err != nil || back != c {
					t.Fatalf("%v: %d → %d → %d, %v", ms, c, hid, back, err)
				}
			}
		}
		var strs []string
		for _, m := range ms {
			strs = append(strs, m.String())
		}
		back, err := ParseList(strs)
		if err != nil || len(back) != len(ms) {
			t.Fatalf("round trip of %q: %v, %v", list, back, err)
		}
		for i := range back {
			if back[i] != ms[i] {
				t.Fatalf("round trip of %q: %v != %v", list, back, ms)
			}
		}
	})
}

// ovl is an independent statement of range overlap: some ID in both.
func ovl(a, an, b, bn uint32) bool {
	lo, hi := max(uint64(a), uint64(b)), min(uint64(a)+uint64(an), uint64(b)+uint64(bn))
	return lo < hi
}
