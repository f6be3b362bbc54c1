package quotahelper

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// allowedImport says whether a (non-test) file of this package may import
// path: the standard library, golang.org/x/sys, and github.com/moby/sys/
// mountinfo (the one mountinfo parser, itself only stdlib and x/sys, which
// TestTransitiveDeps checks).
func allowedImport(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	if !strings.Contains(first, ".") {
		return true // standard library
	}
	return path == "golang.org/x/sys" || strings.HasPrefix(path, "golang.org/x/sys/") || path == "github.com/moby/sys/mountinfo"
}

func TestImportsOnlyStdlibAndXSys(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			n++
			if !allowedImport(p) {
				t.Errorf("%s imports %q: quotahelper may import only the standard library, golang.org/x/sys and moby/sys/mountinfo", name, p)
			}
		}
	}
	if n == 0 {
		t.Fatal("found no imports at all: test is broken")
	}
	if allowedImport("github.com/taproot-dev/taproot/overlayxfs") || allowedImport("golang.org/x/syslog") || allowedImport("github.com/moby/sys/mount") || allowedImport("github.com/moby/sys/mountinfo/x") {
		t.Fatal("allowedImport is too lax")
	}
}

// TestTransitiveDeps checks the whole dependency graph with go list, so an
// x/sys package pulling something else in would show too.
func TestTransitiveDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found:", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	self := false
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/taproot-dev/taproot/quotahelper" {
			self = true
			continue
		}
		if !allowedImport(p) {
			t.Errorf("quotahelper depends on %q", p)
		}
	}
	if !self {
		t.Fatalf("go list output does not name the package itself: %q", out)
	}
}
