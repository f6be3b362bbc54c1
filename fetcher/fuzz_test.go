package fetcher

import (
	"testing"
)

// FuzzParseRef: ParseRef never panics, and for registry and layout
// references the canonical form parses back to the same reference
// (canonical form is a fixed point).
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"docker://127.0.0.1:5000/repo:tag",
		"docker:///busybox",
		"docker:///busybox#1.36",
		"docker://docker.io/library/busybox:latest",
		"docker://host/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"docker://host/repo:tag@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"docker://UPPER/Case::bad",
		"docker://localhost/x#a#b",
		"docker:/x", "docker:", "docker://", "docker:////x",
		"oci:/srv/layout:tag", "oci:/srv/layout", "oci:relative:tag", "oci:/a:@0",
		"oci-archive:/x.tar:tag", "docker-archive:/x.tar", "docker-archive:/x.tar:repo:tag",
		"dir:/x", "http://x", "file://relative", "file:///nonexistent", "", ":", "#",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		if r.Raw != s {
			t.Fatalf("ParseRef(%q).Raw = %q", s, r.Raw)
		}
		switch r.Kind {
		case Docker, OCILayout, OCIArchive, DockerArchive:
		default:
			return // local paths: canonical form depends on the filesystem
		}
		if r.Canonical == "" {
			t.Fatalf("ParseRef(%q): no canonical form", s)
		}
		if r.Kind == Docker && r.Registry == "" {
			t.Fatalf("ParseRef(%q): docker reference without registry", s)
		}
		if r.Pinned != (r.Digest != "") {
			t.Fatalf("ParseRef(%q): Pinned=%v Digest=%q", s, r.Pinned, r.Digest)
		}
		again, err := ParseRef(r.Canonical)
		if err != nil {
			t.Fatalf("ParseRef(%q) = %q, which does not parse: %v", s, r.Canonical, err)
		}
		if again.Canonical != r.Canonical || again.Kind != r.Kind || again.Pinned != r.Pinned ||
			again.Digest != r.Digest || again.Registry != r.Registry || again.Path != r.Path {
			t.Fatalf("canonical form is not a fixed point:\n%q → %+v\n%q → %+v", s, r, r.Canonical, again)
		}
	})
}
