package subids

import "testing"

func TestParse(t *testing.T) {
	out := []byte("0: u 100000 1000\n1: u 300000 65536\n2: u 500000 65536\n")
	if got, err := parse(out, "u", 65536, "/etc/subuid"); err != nil || got != 300000 {
		t.Errorf("parse: %d, %v; want the first range of 65536 IDs, 300000", got, err)
	}
	if _, err := parse(out, "u", 70000, "/etc/subuid"); err == nil {
		t.Error("parse: no range is big enough, want an error")
	}
	if _, err := parse([]byte("u:100000:65536\n"), "u", 1, "/etc/subuid"); err == nil {
		t.Error("parse of a line not in getsubids' format: want an error")
	}
}
