// Package depcheck checks import rules over the package graph `go list
// -deps` reports, so that the layering of taproot (which package may use
// which) is a test, not a wish. The idea is go-containerregistry's
// internal/depcheck (itself after knative's): load the transitive graph of
// a package, and fail naming the offending import and the chain of imports
// that pulls it in. This one runs `go list` instead of
// golang.org/x/tools/go/packages (not a dependency of taproot), judges
// whole rule tables against one load (one `go list` of the module takes
// 0.7 s warm, so the layering test loads twice, not once per rule), and
// takes known exceptions as import edges with the files that hold them, so
// that an exception cannot hide a second way in and fails once it is no
// longer needed.
package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Package is one node of the graph.
type Package struct {
	Path     string
	Standard bool     // part of the Go standard library
	Dir      string   // the package's source directory (for exceptions' files)
	Files    []string // its Go files (names in Dir), test files included in a test load
	Imports  []string // its direct imports (import paths)
}

// Graph is the import graph: import path -> package.
type Graph map[string]*Package

// Load runs `go list -deps -json` on patterns in dir and returns the graph
// of the named packages and everything they depend on. With tests, each
// package's test files count as part of it (their imports are its imports):
// the graph of a test binary, which is what the acceptance rules judge.
// The go command is found on $PATH (`go test` puts its own first).
func Load(dir string, tests bool, patterns ...string) (Graph, error) {
	args := []string{"list", "-e", "-deps", "-json=ImportPath,ForTest,Standard,Dir,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,Imports,Error,DepsErrors"}
	if tests {
		args = append(args, "-test")
	}
	args = append(args, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return decode(bytes.NewReader(out), tests)
}

// listed is the part of `go list -json` output Load reads.
type listed struct {
	ImportPath   string
	ForTest      string
	Standard     bool
	Dir          string
	GoFiles      []string
	CgoFiles     []string
	TestGoFiles  []string
	XTestGoFiles []string
	Imports      []string
	Error        *struct{ Err string }
	DepsErrors   []*struct{ Err string }
}

// decode reads the stream of JSON objects `go list -json` prints. In a
// test load, go list also prints each test's variants: "p [q.test]" (p
// recompiled for q's test), "p_test [p.test]" (p's external test package)
// and "p.test" (the generated main). Their imports are folded into p, with
// the bracketed suffix dropped, so the graph has one node per package.
func decode(r io.Reader, tests bool) (Graph, error) {
	g := Graph{}
	dec := json.NewDecoder(r)
	for {
		var l listed
		if err := dec.Decode(&l); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		if l.Error != nil {
			return nil, fmt.Errorf("go list %s: %s", l.ImportPath, l.Error.Err)
		}
		path := stripVariant(l.ImportPath)
		if l.ForTest != "" && strings.HasSuffix(path, "_test") {
			path = l.ForTest // the external test package p_test
		}
		if tests && strings.HasSuffix(l.ImportPath, ".test") {
			continue // the generated test main: imports testing and p
		}
		p := g[path]
		if p == nil {
			p = &Package{Path: path, Standard: l.Standard, Dir: l.Dir}
			g[path] = p
		}
		files := append(append([]string{}, l.GoFiles...), l.CgoFiles...)
		if tests {
			files = append(append(files, l.TestGoFiles...), l.XTestGoFiles...)
		}
		for _, f := range files {
			if !slices.Contains(p.Files, f) {
				p.Files = append(p.Files, f)
			}
		}
		for _, imp := range l.Imports {
			imp = stripVariant(imp)
			if imp != path && !slices.Contains(p.Imports, imp) {
				p.Imports = append(p.Imports, imp)
			}
		}
	}
	for _, p := range g {
		slices.Sort(p.Files)
		slices.Sort(p.Imports)
	}
	return g, nil
}

// stripVariant drops the " [q.test]" of a test variant's import path.
func stripVariant(path string) string {
	if i := strings.Index(path, " ["); i >= 0 {
		return path[:i]
	}
	return path
}

// Rule says what one package may depend on, transitively.
//
// A dependency d of Pkg (any package Pkg reaches by imports, Pkg itself
// excluded) breaks the rule when d matches Deny, or when Allow is set, d
// matches Scope (every package when Scope is empty) and d matches no Allow
// pattern. A pattern is an import path, a path ending in "/..." (that path
// and everything under it), or "std" (any standard-library package).
type Rule struct {
	Pkg   string
	Why   string // what the rule keeps, for the failure message
	Deny  []string
	Scope []string
	Allow []string
	// Direct makes Allow judge only Pkg's own imports (the arrows of a
	// layer diagram); Deny still judges every dependency.
	Direct bool
	// Exceptions are import edges the rule tolerates for now: the walk
	// does not follow them. Each must still exist (else it fails: delete
	// it), and must be made only in its Files.
	Exceptions []Exception
}

// Exception is a known import edge From -> To that a rule tolerates.
type Exception struct {
	From, To string
	// Files are the only files of From (names in its dir) that may import
	// To; empty means any.
	Files []string
	Why   string // what removes it (e.g. the branch that does)
}

// Violation is one broken rule: Dep reached from the rule's Pkg by Chain
// (Chain[0] is Pkg, the last element Dep; each imports the next).
type Violation struct {
	Rule  *Rule
	Dep   string
	Chain []string
	// Problem says what is wrong when it is not an unwanted dependency
	// (an exception that no longer holds or is used in another file).
	Problem string
}

func (v Violation) Error() string {
	if v.Problem != "" {
		return fmt.Sprintf("%s: %s", v.Rule.Pkg, v.Problem)
	}
	return fmt.Sprintf("%s must not depend on %s (%s); it does by %s",
		v.Rule.Pkg, v.Dep, v.Rule.Why, strings.Join(v.Chain, " -> "))
}

// Check judges r against g and returns every violation, one per offending
// dependency, each with the shortest chain of imports that reaches it.
func (g Graph) Check(r *Rule) []Violation {
	root := g[r.Pkg]
	if root == nil {
		return []Violation{{Rule: r, Problem: "not in the loaded graph (was it loaded, does it still exist?)"}}
	}
	var out []Violation
	skip := map[[2]string]bool{}
	for _, e := range r.Exceptions {
		skip[[2]string{e.From, e.To}] = true
		if problem := g.checkException(e); problem != "" {
			out = append(out, Violation{Rule: r, Dep: e.To, Problem: problem})
		}
	}
	// Breadth first: the first chain to reach a package is a shortest one.
	parent := map[string]string{r.Pkg: ""}
	queue := []string{r.Pkg}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p != r.Pkg && r.forbids(g[p], parent[p] == r.Pkg) {
			out = append(out, Violation{Rule: r, Dep: p, Chain: chain(parent, p)})
		}
		node := g[p]
		if node == nil {
			continue
		}
		for _, imp := range node.Imports {
			if _, seen := parent[imp]; seen || skip[[2]string{p, imp}] {
				continue
			}
			parent[imp] = p
			queue = append(queue, imp)
		}
	}
	return out
}

// checkException says what is wrong with e in g, or "".
func (g Graph) checkException(e Exception) string {
	from := g[e.From]
	if from == nil || !slices.Contains(from.Imports, e.To) {
		return fmt.Sprintf("exception %s -> %s no longer holds (%s): delete it", e.From, e.To, e.Why)
	}
	if len(e.Files) == 0 {
		return ""
	}
	var extra []string
	for _, f := range from.Files {
		if slices.Contains(e.Files, f) {
			continue
		}
		imports, err := fileImports(filepath.Join(from.Dir, f))
		if err != nil {
			return fmt.Sprintf("exception %s -> %s: %v", e.From, e.To, err)
		}
		if slices.Contains(imports, e.To) {
			extra = append(extra, f)
		}
	}
	if len(extra) > 0 {
		return fmt.Sprintf("imports %s in %s too: the exception (%s) covers only %s",
			e.To, strings.Join(extra, ", "), e.Why, strings.Join(e.Files, ", "))
	}
	return ""
}

// fileImports lists the import paths of one Go file.
func fileImports(path string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, spec := range f.Imports {
		p, err := strconv.Unquote(spec.Path.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: import %s: %w", path, spec.Path.Value, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// forbids says whether r refuses p, imported by Pkg itself when direct.
func (r *Rule) forbids(p *Package, direct bool) bool {
	if p == nil {
		return false
	}
	if matchAny(r.Deny, p) {
		return true
	}
	if r.Allow == nil || (r.Direct && !direct) {
		return false
	}
	if len(r.Scope) > 0 && !matchAny(r.Scope, p) {
		return false
	}
	return !matchAny(r.Allow, p)
}

func matchAny(patterns []string, p *Package) bool {
	for _, pat := range patterns {
		switch {
		case pat == "std":
			if p.Standard {
				return true
			}
		case strings.HasSuffix(pat, "/..."):
			base := strings.TrimSuffix(pat, "/...")
			if p.Path == base || strings.HasPrefix(p.Path, base+"/") {
				return true
			}
		case p.Path == pat:
			return true
		}
	}
	return false
}

// chain walks parent links back from p to the root.
func chain(parent map[string]string, p string) []string {
	var c []string
	for ; p != ""; p = parent[p] {
		c = append(c, p)
	}
	slices.Reverse(c)
	return c
}
