package depcheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fake builds a graph from "pkg: imp imp" lines; a name without a dot in
// its first element is standard library, as in Go.
func fake(lines ...string) Graph {
	g := Graph{}
	node := func(p string) *Package {
		if g[p] == nil {
			first, _, _ := strings.Cut(p, "/")
			g[p] = &Package{Path: p, Standard: !strings.Contains(first, ".")}
		}
		return g[p]
	}
	for _, l := range lines {
		p, imps, _ := strings.Cut(l, ":")
		n := node(strings.TrimSpace(p))
		for _, imp := range strings.Fields(imps) {
			node(imp)
			n.Imports = append(n.Imports, imp)
		}
	}
	return g
}

func errorsOf(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Error())
	}
	return out
}

// wantErrors checks r on g gives exactly the want messages, in order.
func wantErrors(t *testing.T, g Graph, r *Rule, want ...string) {
	t.Helper()
	if got := errorsOf(g.Check(r)); !slices.Equal(got, want) {
		t.Errorf("Check:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckDenyNamesTheShortestChain(t *testing.T) {
	g := fake(
		"x.io/store: x.io/a x.io/b fmt",
		"x.io/a: x.io/c",
		"x.io/c: x.io/cobra",
		"x.io/b: x.io/cobra/sub",
	)
	r := &Rule{Pkg: "x.io/store", Why: "no CLI", Deny: []string{"x.io/cobra/..."}}
	wantErrors(t, g, r,
		"x.io/store must not depend on x.io/cobra/sub (no CLI); it does by x.io/store -> x.io/b -> x.io/cobra/sub",
		"x.io/store must not depend on x.io/cobra (no CLI); it does by x.io/store -> x.io/a -> x.io/c -> x.io/cobra",
	)
	// The pattern "p/..." is p and below, not every path with p as prefix.
	if vs := fake("x.io/store: x.io/cobrax").Check(r); len(vs) != 0 {
		t.Errorf("x.io/cobrax matched x.io/cobra/...: %v", errorsOf(vs))
	}
}

func TestCheckAllowInScope(t *testing.T) {
	g := fake(
		"m.io/leaf: m.io/idmap fmt x.io/thirdparty",
		"m.io/idmap: os m.io/store",
		"x.io/thirdparty: m.io/other",
	)
	r := &Rule{Pkg: "m.io/leaf", Why: "leaf", Scope: []string{"m.io/..."}, Allow: []string{"m.io/idmap"}}
	wantErrors(t, g, r,
		"m.io/leaf must not depend on m.io/store (leaf); it does by m.io/leaf -> m.io/idmap -> m.io/store",
		"m.io/leaf must not depend on m.io/other (leaf); it does by m.io/leaf -> x.io/thirdparty -> m.io/other",
	)
	// An empty Allow with a Scope allows nothing in the scope.
	r = &Rule{Pkg: "m.io/leaf", Scope: []string{"m.io/..."}, Allow: []string{}}
	if got := len(g.Check(r)); got != 3 {
		t.Errorf("Allow empty: %d violations, want 3 (idmap, store, other): %v", got, errorsOf(g.Check(r)))
	}
	// No Scope: everything outside Allow is judged; "std" is the standard library.
	r = &Rule{Pkg: "m.io/leaf", Allow: []string{"std", "m.io/..."}}
	if got := errorsOf(g.Check(r)); len(got) != 1 || !strings.Contains(got[0], "must not depend on x.io/thirdparty") {
		t.Errorf("Allow std and m.io: %q, want only x.io/thirdparty", got)
	}
}

func TestCheckDirect(t *testing.T) {
	g := fake(
		"m.io/cli: m.io/builder m.io/store",
		"m.io/builder: m.io/store m.io/fetcher x.io/cobra",
	)
	r := &Rule{Pkg: "m.io/cli", Why: "layers", Scope: []string{"m.io/..."}, Allow: []string{"m.io/builder"}, Deny: []string{"x.io/cobra"}, Direct: true}
	wantErrors(t, g, r,
		"m.io/cli must not depend on m.io/store (layers); it does by m.io/cli -> m.io/store",
		"m.io/cli must not depend on x.io/cobra (layers); it does by m.io/cli -> m.io/builder -> x.io/cobra",
	)
}

func TestCheckUnknownPackage(t *testing.T) {
	vs := fake("a.io/x: fmt").Check(&Rule{Pkg: "a.io/gone", Deny: []string{"fmt"}})
	if len(vs) != 1 || !strings.Contains(vs[0].Error(), "a.io/gone: not in the loaded graph") {
		t.Errorf("rule on a package not loaded: %q, want it refused", errorsOf(vs))
	}
}

// writePkg writes Go files (name -> imports) into a new dir.
func writePkg(t *testing.T, files map[string][]string) string {
	dir := t.TempDir()
	for name, imps := range files {
		src := "package p\n\nimport (\n"
		for _, imp := range imps {
			src += "\t_ \"" + imp + "\"\n"
		}
		src += ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestExceptions(t *testing.T) {
	dir := writePkg(t, map[string][]string{"user.go": {"m.io/spec"}, "store.go": {"m.io/flock"}})
	g := fake("m.io/store: m.io/spec m.io/flock", "m.io/spec: m.io/idmap")
	g["m.io/store"].Dir, g["m.io/store"].Files = dir, []string{"store.go", "user.go"}
	r := &Rule{
		Pkg: "m.io/store", Deny: []string{"m.io/spec", "m.io/idmap"},
		Exceptions: []Exception{{From: "m.io/store", To: "m.io/spec", Files: []string{"user.go"}, Why: "branch b moves user.go"}},
	}
	if vs := g.Check(r); len(vs) != 0 {
		t.Errorf("the known exception (and what only it brings, idmap): %q, want none", errorsOf(vs))
	}

	// A second way in is not covered by the exception.
	g2 := fake("m.io/store: m.io/spec m.io/flock", "m.io/flock: m.io/spec")
	g2["m.io/store"].Dir, g2["m.io/store"].Files = dir, []string{"store.go", "user.go"}
	if got := errorsOf(g2.Check(r)); len(got) != 1 || !strings.Contains(got[0], "it does by m.io/store -> m.io/flock -> m.io/spec") {
		t.Errorf("spec by a second chain: %q, want it named", got)
	}

	// Another file making the same import.
	other := writePkg(t, map[string][]string{"user.go": {"m.io/spec"}, "gc.go": {"m.io/spec", "fmt"}})
	g["m.io/store"].Dir, g["m.io/store"].Files = other, []string{"gc.go", "user.go"}
	if got := errorsOf(g.Check(r)); len(got) != 1 || got[0] != "m.io/store: imports m.io/spec in gc.go too: the exception (branch b moves user.go) covers only user.go" {
		t.Errorf("exception used by another file: %q", got)
	}

	// The exception no longer needed.
	g3 := fake("m.io/store: m.io/flock")
	if got := errorsOf(g3.Check(r)); len(got) != 1 || !strings.Contains(got[0], "exception m.io/store -> m.io/spec no longer holds (branch b moves user.go): delete it") {
		t.Errorf("stale exception: %q, want it reported", got)
	}
}

// One package of a test load: p's own entry, its test variant and its
// external test package fold into one node; the generated main is dropped.
func TestDecodeFoldsTestVariants(t *testing.T) {
	stream := `
{"ImportPath": "fmt", "Standard": true, "Dir": "/go/src/fmt", "GoFiles": ["print.go"]}
{"ImportPath": "m.io/q", "Dir": "/m/q", "GoFiles": ["q.go"], "Imports": ["fmt"]}
{"ImportPath": "m.io/p", "Dir": "/m/p", "GoFiles": ["p.go"], "Imports": ["fmt"]}
{"ImportPath": "m.io/p [m.io/p.test]", "ForTest": "m.io/p", "Dir": "/m/p", "GoFiles": ["p.go"], "TestGoFiles": ["p_test.go"], "Imports": ["fmt", "m.io/q [m.io/p.test]", "testing"]}
{"ImportPath": "m.io/p_test [m.io/p.test]", "ForTest": "m.io/p", "Dir": "/m/p", "XTestGoFiles": ["x_test.go"], "Imports": ["m.io/p [m.io/p.test]", "os"]}
{"ImportPath": "m.io/p.test", "Dir": "/m/p", "GoFiles": ["_testmain.go"], "Imports": ["m.io/p [m.io/p.test]", "m.io/p_test [m.io/p.test]", "testing"]}
`
	g, err := decode(strings.NewReader(stream), true)
	if err != nil {
		t.Fatal(err)
	}
	p := g["m.io/p"]
	if p == nil || !slices.Equal(p.Imports, []string{"fmt", "m.io/q", "os", "testing"}) || !slices.Equal(p.Files, []string{"p.go", "p_test.go", "x_test.go"}) {
		t.Fatalf("m.io/p: %+v, want its test imports and files folded in", p)
	}
	for k := range g {
		if strings.Contains(k, "[") || strings.HasSuffix(k, ".test") || strings.HasSuffix(k, "_test") {
			t.Errorf("graph keeps variant %q", k)
		}
	}
	if !g["fmt"].Standard || g["m.io/q"].Standard {
		t.Error("Standard not carried over")
	}

	// Without tests, test files are not the package's.
	g, err = decode(strings.NewReader(stream), false)
	if err != nil {
		t.Fatal(err)
	}
	if fs := g["m.io/p"].Files; slices.Contains(fs, "p_test.go") {
		t.Errorf("non-test load has test files: %v", fs)
	}

	if _, err := decode(strings.NewReader(`{"ImportPath": "m.io/bad", "Error": {"Err": "no Go files"}}`), false); err == nil || !strings.Contains(err.Error(), "m.io/bad: no Go files") {
		t.Errorf("a package go list could not load: %v, want its error", err)
	}
}
