package acceptance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// jsonLines parses every line of stderr as one JSON object.
func jsonLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if l == "" && stderr == "" {
			break
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(l), &obj); err != nil {
			t.Errorf("stderr line is not one JSON object (%v): %q", err, l)
			continue
		}
		out = append(out, obj)
	}
	return out
}

// With --log-format json every line on stderr is one JSON object, the final
// error included, and the exit code is the failure's class (the table in
// docs/troubleshooting.md).
func TestJSONErrorsAndExitCodes(t *testing.T) {
	need(t)
	t.Parallel()
	ref, b := pushImage(t, "json-errors", busyboxImage(layer(ib.File("a", "a\n"))))
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := testDir(t, "registries")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("bob:"+string(hash)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	authReg := startTestRegistry(t, fmt.Sprintf("auth:\n  htpasswd:\n    realm: taproot-test\n    path: %s\n", htpasswd), false)
	emptyAuth := writeUserFile(t, "empty-auth.json", `{"auths":{}}`)
	rootOwned := filepath.Join(testDir(t, "stores"), "rootowned")
	if err := os.Mkdir(rootOwned, 0o755); err != nil {
		t.Fatal(err)
	}
	// A store whose layer has a file no layer entry names: check finds damage.
	damaged := newStore(t)
	create(t, damaged, ref, "first")
	if err := os.WriteFile(filepath.Join(layerDir(damaged, b.DiffIDs()[len(b.Layers)-1]), "intruder"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Layers the worker refuses: its failure keeps its class across the
	// process, so the exit code says which.
	hostileRef := pushRaw(t, "json-errors-hostile", h.registry, buildRaw(t, []rawLayer{gzLayer(t, rawTar(t, nil, tReg("../../escape", "x\n")))}, nil))
	bigRef := pushRaw(t, "json-errors-big", h.registry, buildRaw(t, []rawLayer{gzLayer(t, rawTar(t, nil, tReg("big", strings.Repeat("b", 1<<20))))}, nil))
	smallBound := writeConfig(t, "[create]\nmax_layer_bytes = 65536\n")

	cases := []struct {
		name   string
		store  string
		global []string
		args   []string
		code   int
		class  string
		want   string
	}{
		{"bad reference", "", nil, []string{"create", "docker://UPPER/Case::bad", "c"}, 2, "bad_input", "bad image reference"},
		{"transport typo", "", nil, []string{"create", "dokcer://" + h.registry + "/acceptance/json-errors:latest", "c"}, 2, "bad_input", `unknown transport "dokcer"`},
		{"usage", "", nil, []string{"create", "just-one-arg"}, 2, "bad_input", "accepts 2 arg(s)"},
		{"image not found", "", nil, []string{"create", "--insecure-registry", h.registry, "docker://" + h.registry + "/acceptance/no-such:latest", "c"}, 3, "not_found", "image not found"},
		{"id not found", "", nil, []string{"stats", "nope"}, 3, "not_found", "image not found"},
		{"unauthorized", "", []string{"--config", writeUserFile(t, "config.toml", fmt.Sprintf("[registry]\nauth_file = %q\n", emptyAuth))},
			[]string{"create", "--insecure-registry", authReg.addr, "docker://" + authReg.addr + "/acceptance/private:latest", "c"}, 4, "unauthorized", "unauthorized"},
		{"store not writable", filepath.Join(rootOwned, "store"), nil, []string{"create", "--insecure-registry", h.registry, ref, "c"}, 4, "unauthorized", "permission denied"},
		{"unreachable", "", nil, []string{"create", "--insecure-registry", fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("docker://127.0.0.1:%d/x/y:latest", port), "c"}, 5, "transient", "registry unreachable"},
		{"hostile layer", "", nil, []string{"create", "--insecure-registry", h.registry, hostileRef, "c"}, 2, "bad_input", "unsafe path in layer"},
		{"layer over a bound", "", []string{"--config", smallBound}, []string{"create", "--insecure-registry", h.registry, bigRef, "c"}, 6, "limit", "max_layer_bytes"},
		{"limit below image", "", nil, []string{"create", "--insecure-registry", h.registry, "--disk-limit-size-bytes", "1000", ref, "c"}, 6, "limit", "disk limit is smaller than the image's base size"},
		{"store damaged", damaged, nil, []string{"check"}, 7, "store_damaged", "store is damaged"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			store := c.store
			if store == "" {
				store = newStore(t)
			}
			r := tp(t, store, nil, append([]string{"--log-format", "json"}, c.global...), c.args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d (%s):\n%s", r.code, c.code, c.class, r)
			}
			objs := jsonLines(t, r.stderr)
			if len(objs) == 0 {
				t.Fatalf("nothing on stderr")
			}
			last := objs[len(objs)-1]
			if last["level"] != "ERROR" || last["code"] != float64(c.code) || last["class"] != c.class ||
				!strings.Contains(fmt.Sprint(last["error"]), c.want) || fmt.Sprint(last["msg"]) == "" {
				t.Errorf("last stderr object %v: want level ERROR, code %d, class %s, error containing %q", last, c.code, c.class, c.want)
			}
			// The same failure in text is the one "taproot: " line, same code.
			r = tp(t, store, nil, c.global, c.args...)
			if r.code != c.code || !strings.HasPrefix(r.stderr, "taproot: ") || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("text form: want exit %d and one \"taproot: …%s…\" line:\n%s", c.code, c.want, r)
			}
		})
	}

	// A successful create with debug logs: still only JSON lines on stderr.
	store := newStore(t)
	r := tp(t, store, nil, []string{"--log-format", "json", "--log-level", "debug"}, "create", "--insecure-registry", h.registry, ref, "ok")
	mustCreate(t, r, "create with JSON debug logs")
	if objs := jsonLines(t, r.stderr); len(objs) == 0 {
		t.Errorf("no debug log lines at all:\n%s", r.stderr)
	}
}
