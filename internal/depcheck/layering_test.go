package depcheck

import (
	"strings"
	"testing"
)

// The layering of taproot (docs: common target graph of issue 14):
//
//	cmd/taproot  -> internal/cli -> builder -> store -> worker -> unpacker
//	leaves (no taproot middle package): fetcher, unpacker, overlayxfs,
//	quotahelper, spec, internal/{flock,userns,idmap,config}
//
// Each rule is judged on the transitive graph of its package; the rules of
// the acceptance packages on their test binaries' graphs (a test imports
// from its _test.go files).

const mod = "github.com/taproot-dev/taproot"

// probed is a rule and a package it must refuse: TestRulesCanFail adds an
// import of probe to the rule's package (through a made-up middle
// package, to see the chain) and expects the rule to name it.
type probed struct {
	Rule
	probe string
}

// leaf: pkg may depend on no taproot package but the allowed ones.
func leaf(pkg string, allowed ...string) probed {
	allow := []string{}
	why := "a leaf depends on no other taproot package"
	for _, a := range allowed {
		allow = append(allow, mod+"/"+a)
	}
	if len(allowed) > 0 {
		why = "a leaf depends on no taproot package but " + strings.Join(allowed, ", ")
	}
	return probed{Rule{
		Pkg:   mod + "/" + pkg,
		Why:   why,
		Scope: []string{mod + "/..."},
		Allow: allow,
	}, mod + "/store"}
}

// binaryOnly: an acceptance package uses taproot through its binaries
// only, and acceptance/internal/* helpers.
func binaryOnly(pkg string, exceptions ...Exception) probed {
	return probed{Rule{
		Pkg:        mod + "/" + pkg,
		Why:        "acceptance tests use only the binaries (and acceptance/internal/*)",
		Scope:      []string{mod + "/..."},
		Allow:      []string{mod + "/acceptance/internal/..."},
		Exceptions: exceptions,
	}, mod + "/internal/idmap"}
}

// productRules are judged on the graph without test files.
var productRules = []probed{
	leaf("fetcher"),
	leaf("unpacker"),
	leaf("overlayxfs"),
	leaf("quotahelper"),
	leaf("spec", "internal/idmap"),
	leaf("internal/flock"),
	leaf("internal/userns", "internal/idmap"),
	leaf("internal/idmap"),
	leaf("internal/config"),
	{Rule{
		Pkg: mod + "/store",
		Why: "the store is storage: no CLI, no registry client, no runtime-spec output, nothing above it",
		Deny: []string{
			"github.com/spf13/cobra/...",
			"github.com/containers/image/v5/...",
			mod + "/spec",
			mod + "/fetcher",
			mod + "/gc",
			mod + "/builder/...",
			mod + "/internal/cli",
		},
		Exceptions: []Exception{{
			From: mod + "/store", To: mod + "/spec", Files: []string{"user.go"},
			Why: "branch builder moves store/user.go into builder/; the lead deletes this exception at that merge",
		}},
	}, "github.com/spf13/cobra"},
	{Rule{
		Pkg:  mod + "/cmd/taproot",
		Why:  "the taproot binary does not link the setuid helper's package: overlayxfs holds the client's side",
		Deny: []string{mod + "/quotahelper"},
	}, mod + "/quotahelper"},
	{Rule{
		Pkg:   mod + "/cmd/taproot-quota",
		Why:   "the setuid helper links only its package, the standard library and x/sys: every line it links runs with privilege",
		Allow: []string{"std", "golang.org/x/sys/...", mod + "/quotahelper"},
	}, "github.com/sirupsen/logrus"},
	{Rule{
		Pkg:   mod + "/internal/swaprace",
		Why:   "a test helper the acceptance tests may import: it brings no product code and nothing but x/sys with it",
		Allow: []string{"std", "golang.org/x/sys/..."},
	}, mod + "/unpacker"},
}

// testRules are judged on the graph with test files.
var testRules = []probed{
	binaryOnly("acceptance", Exception{
		From: mod + "/acceptance", To: mod + "/internal/swaprace", Files: []string{"localsrc_test.go"},
		Why: "the swap racer is shared with fetcher's unit tests, which cannot import acceptance/internal; it is a test helper, not product code, and links only x/sys (rule internal/swaprace)",
	}),
	binaryOnly("acceptance/uml"),
	binaryOnly("acceptance/cmd/mkbundle"),
	binaryOnly("acceptance/cmd/mkimage"),
	binaryOnly("acceptance/cmd/treelist"),
	binaryOnly("acceptance/cmd/mkbenchimage", Exception{
		From: mod + "/acceptance/cmd/mkbenchimage", To: mod + "/unpacker", Files: []string{"main.go"},
		Why: "`mkbenchimage unpack` profiles unpacker.UnpackLayer without the registry, worker and user namespace (a benchmark tool for `make bench`, not a test of the product)",
	}),
}

// load loads the module's graph: every package, with or without tests.
func load(t *testing.T, tests bool) Graph {
	t.Helper()
	pattern := mod + "/..."
	if tests {
		pattern = mod + "/acceptance/..."
	}
	g, err := Load(".", tests, pattern)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// eachRule runs f on every rule as a subtest, with the graph it is judged
// on (loaded once per kind).
func eachRule(t *testing.T, f func(t *testing.T, g Graph, r probed)) {
	for _, set := range []struct {
		tests bool
		rules []probed
	}{{false, productRules}, {true, testRules}} {
		g := load(t, set.tests)
		for _, r := range set.rules {
			t.Run(strings.TrimPrefix(r.Pkg, mod+"/"), func(t *testing.T) { f(t, g, r) })
		}
	}
}

func TestLayering(t *testing.T) {
	eachRule(t, func(t *testing.T, g Graph, r probed) {
		for _, v := range g.Check(&r.Rule) {
			t.Error(v)
		}
	})
}

// TestRulesCanFail: each rule, on the real graph, refuses its probe
// brought in by an extra import, and names the chain.
func TestRulesCanFail(t *testing.T) {
	eachRule(t, func(t *testing.T, g Graph, r probed) {
		vs := cloneWith(g, r.Pkg, r.probe).Check(&r.Rule)
		want := r.Pkg + " -> example.com/middle -> " + r.probe
		for _, v := range vs {
			if v.Dep == r.probe && strings.Contains(v.Error(), want) {
				return
			}
		}
		t.Errorf("with %s importing %s by example.com/middle: %v, want a violation naming the chain %q", r.Pkg, r.probe, vs, want)
	})
}

// cloneWith returns a copy of g in which from imports probe through a
// new package example.com/middle.
func cloneWith(g Graph, from, probe string) Graph {
	c := Graph{}
	for k, p := range g {
		cp := *p
		c[k] = &cp
	}
	f := *c[from]
	f.Imports = append(append([]string{}, f.Imports...), "example.com/middle")
	c[from] = &f
	c["example.com/middle"] = &Package{Path: "example.com/middle", Imports: []string{probe}}
	if c[probe] == nil {
		c[probe] = &Package{Path: probe}
	}
	return c
}
