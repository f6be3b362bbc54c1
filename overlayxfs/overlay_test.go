package overlayxfs

import (
	"fmt"
	"strings"
	"testing"
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
