package depcheck

import (
	"slices"
	"strings"
	"testing"
)

// The layering of taproot (the target graph of issue 14):
//
//	cmd/taproot  -> internal/cli, worker
//	internal/cli -> builder, internal/config, spec
//	builder      -> store, fetcher, gc, spec, overlayxfs, internal/config, idmap
//	gc           -> store
//	store        -> worker, unpacker, overlayxfs, internal/flock, idmap
//	worker       -> unpacker, internal/userns
//	leaves (no other taproot package): fetcher, unpacker, overlayxfs,
//	quotahelper, spec, internal/{flock,userns,idmap,config,fsname}
//	(overlayxfs and quotahelper may both import internal/fsname)
//
// The arrows are Direct rules (a package's own imports); what a package
// must never link (cobra or containers/image in the store, quotahelper in
// the taproot binary) is judged on its whole transitive graph, as are the
// leaves. The acceptance packages are judged on their test binaries'
// graphs (a test imports from its _test.go files). Edges that other
// branches of this round remove are exceptions naming the branch.

const mod = "github.com/taproot-dev/taproot"

// probed is a rule and packages it must refuse: TestRulesCanFail adds an
// import of probe to the rule's package through a made-up middle package
// (to see the chain), and of direct, if set, straight from it.
type probed struct {
	Rule
	probe, direct string
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
	return probed{Rule: Rule{
		Pkg:   mod + "/" + pkg,
		Why:   why,
		Scope: []string{mod + "/..."},
		Allow: allow,
	}, probe: mod + "/store"}
}

// binaryOnly: an acceptance package uses taproot through its binaries
// only, and acceptance/internal/* helpers.
func binaryOnly(pkg string, exceptions ...Exception) probed {
	return probed{Rule: Rule{
		Pkg:        mod + "/" + pkg,
		Why:        "acceptance tests use only the binaries (and acceptance/internal/*)",
		Scope:      []string{mod + "/..."},
		Allow:      []string{mod + "/acceptance/internal/..."},
		Exceptions: exceptions,
	}, probe: mod + "/idmap"}
}

// pkgs prefixes each name with the module path.
func pkgs(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = mod + "/" + n
	}
	return out
}

// productRules are judged on the graph without test files.
var productRules = []probed{
	leaf("fetcher"),
	leaf("unpacker"),
	// internal/fsname: the one filesystem-name table, printed by taproot
	// (overlayxfs) and by the setuid helper (quotahelper).
	leaf("overlayxfs", "internal/fsname"),
	leaf("quotahelper", "internal/fsname"),
	leaf("internal/fsname"),
	leaf("spec", "idmap"),
	leaf("internal/flock"),
	leaf("internal/userns", "idmap"),
	leaf("idmap"),
	leaf("internal/config"),
	{Rule: Rule{
		Pkg:    mod + "/cmd/taproot",
		Why:    "the taproot binary is the CLI and the worker, without the setuid helper's package (overlayxfs holds the client's side)",
		Deny:   pkgs("quotahelper"),
		Scope:  pkgs("..."),
		Allow:  pkgs("internal/cli", "worker"),
		Direct: true,
	}, probe: mod + "/quotahelper", direct: mod + "/store"},
	{Rule: Rule{
		Pkg:    mod + "/internal/cli",
		Why:    "the CLI parses flags, calls one use case and encodes its result",
		Deny:   pkgs("quotahelper"),
		Scope:  pkgs("..."),
		Allow:  pkgs("builder", "internal/config", "spec"),
		Direct: true,
	}, probe: mod + "/quotahelper", direct: mod + "/internal/flock"},
	{Rule: Rule{
		Pkg:    mod + "/builder",
		Why:    "the use cases compose the store, the fetcher and the policies; no CLI framework, nothing above them",
		Deny:   append(pkgs("internal/cli", "quotahelper"), "github.com/spf13/cobra/..."),
		Scope:  pkgs("..."),
		Allow:  pkgs("store", "fetcher", "gc", "spec", "overlayxfs", "internal/config", "idmap", "unpacker"),
		Direct: true,
	}, probe: "github.com/spf13/cobra", direct: mod + "/internal/userns"},
	{Rule: Rule{
		Pkg: mod + "/gc",
		Why: "gc is policy over the store",
		Deny: append(pkgs("internal/cli", "builder/...", "fetcher"),
			"github.com/spf13/cobra/...", "github.com/containers/image/v5/..."),
		Scope:  pkgs("..."),
		Allow:  pkgs("store"),
		Direct: true,
	}, probe: "github.com/spf13/cobra", direct: mod + "/unpacker"},
	{Rule: Rule{
		Pkg: mod + "/store",
		Why: "the store is storage: no CLI, no registry client, no runtime-spec output, nothing above it",
		Deny: append(pkgs("spec", "fetcher", "gc", "builder/...", "internal/cli"),
			"github.com/spf13/cobra/...", "github.com/containers/image/v5/..."),
		Scope:  pkgs("..."),
		Allow:  pkgs("worker", "unpacker", "overlayxfs", "internal/flock", "idmap"),
		Direct: true,
	}, probe: "github.com/spf13/cobra", direct: mod + "/internal/config"},
	{Rule: Rule{
		Pkg: mod + "/worker",
		Why: "the worker runs as container root on the image author's bytes: the unpacker and the namespace plumbing, nothing of the store, the CLI or the registry",
		Deny: append(pkgs("store", "builder/...", "internal/cli", "fetcher", "spec", "gc"),
			"github.com/spf13/cobra/...", "github.com/containers/image/v5/..."),
		Scope:  pkgs("..."),
		Allow:  pkgs("unpacker", "internal/userns", "idmap"),
		Direct: true,
	}, probe: "github.com/spf13/cobra", direct: mod + "/internal/flock"},
	{Rule: Rule{
		Pkg: mod + "/cmd/taproot-quota",
		Why: "the setuid helper links only its package, the standard library, x/sys and the one mountinfo parser: every line it links runs with privilege",
		// moby/sys/mountinfo (itself only std and x/sys): main's c99c31e
		// (branch mounts) reads mountinfo with it in quotahelper; exactly
		// that package, not moby/sys/....
		// internal/fsname: a name table of a dozen lines (fmt and x/sys),
		// shared with taproot so the two programs name filesystems alike.
		Allow: []string{"std", "golang.org/x/sys/...", "github.com/moby/sys/mountinfo", mod + "/quotahelper", mod + "/internal/fsname"},
	}, probe: "github.com/moby/sys/mount"},
	{Rule: Rule{
		Pkg:   mod + "/internal/swaprace",
		Why:   "a test helper the acceptance tests may import: it brings no product code and nothing but x/sys with it",
		Allow: []string{"std", "golang.org/x/sys/..."},
	}, probe: mod + "/unpacker"},
	{Rule: Rule{
		Pkg:   mod + "/internal/rawtar",
		Why:   "a test helper the acceptance tests may import: it brings no product code and nothing but the standard library with it",
		Allow: []string{"std"},
	}, probe: mod + "/unpacker"},
}

// testRules are judged on the graph with test files.
var testRules = []probed{
	binaryOnly("acceptance", Exception{
		From: mod + "/acceptance", To: mod + "/internal/swaprace", Files: []string{"localsrc_test.go"},
		Why: "the swap racer is shared with fetcher's unit tests, which cannot import acceptance/internal; it is a test helper, not product code, and links only x/sys (rule internal/swaprace)",
	}, Exception{
		From: mod + "/acceptance", To: mod + "/internal/rawtar", Files: []string{"bounds_test.go", "hostile_test.go"},
		Why: "the hand-made tar blocks (PAX bomb, GNU sparse head) are shared with unpacker's unit tests, which cannot import acceptance/internal; a test helper, not product code, standard library only (rule internal/rawtar)",
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
		bad := cloneWith(g, r.Pkg, "example.com/middle", r.probe)
		if r.direct != "" {
			bad = cloneWith(bad, r.Pkg, r.direct)
		}
		vs := bad.Check(&r.Rule)
		for _, want := range [][]string{{r.probe, r.Pkg + " -> example.com/middle -> " + r.probe}, {r.direct, r.Pkg + " -> " + r.direct}} {
			if want[0] != "" && !slices.ContainsFunc(vs, func(v Violation) bool {
				return v.Dep == want[0] && strings.HasSuffix(v.Error(), "it does by "+want[1])
			}) {
				t.Errorf("with %s importing %s: %v, want a violation naming the chain %q", r.Pkg, want[0], vs, want[1])
			}
		}
	})
}

// cloneWith returns a copy of g in which from imports the chain of
// packages given (each importing the next), made up where missing.
func cloneWith(g Graph, from string, chain ...string) Graph {
	c := Graph{}
	for k, p := range g {
		cp := *p
		c[k] = &cp
	}
	for _, next := range chain {
		if c[next] == nil {
			c[next] = &Package{Path: next}
		}
		f := *c[from]
		f.Imports = append(append([]string{}, f.Imports...), next)
		c[from] = &f
		from = next
	}
	return c
}
