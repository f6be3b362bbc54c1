package acceptance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The README's steps and docs/runtimes.md's runc recipe, word for word: the
// shell blocks marked <!-- doc-test: root --> run as root, those marked
// <!-- doc-test: user --> as the unprivileged test user, and a block marked
// <!-- doc-test: output --> lists lines the previous block must print. A
// "dir=NAME" after the kind runs the block in its own directory NAME (the
// same for every block naming it), which root blocks get as $BUNDLE, with
// the user's name as $RUN_AS.

type docBlock struct {
	kind string // root, user or output
	dir  string // dir=NAME, "" for the file's default directory
	body string
	file string
	line int
}

// docBlocks returns the marked fenced blocks of a markdown file, in order.
func docBlocks(t *testing.T, file string) []docBlock {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []docBlock
	ls := strings.Split(string(data), "\n")
	for i := 0; i < len(ls); i++ {
		kind, ok := strings.CutPrefix(strings.TrimSpace(ls[i]), "<!-- doc-test: ")
		if !ok {
			continue
		}
		kind = strings.TrimSuffix(kind, " -->")
		kind, dir, _ := strings.Cut(kind, " ")
		dir = strings.TrimPrefix(dir, "dir=")
		if i+1 >= len(ls) || !strings.HasPrefix(ls[i+1], "```") {
			t.Fatalf("%s:%d: doc-test marker not followed by a fenced block", file, i+1)
		}
		b := docBlock{kind: kind, dir: dir, file: filepath.Base(file), line: i + 2}
		var body []string
		for i += 2; i < len(ls) && !strings.HasPrefix(ls[i], "```"); i++ {
			body = append(body, ls[i])
		}
		b.body = strings.Join(body, "\n") + "\n"
		out = append(out, b)
	}
	return out
}

func TestDocsWordForWord(t *testing.T) {
	need(t)
	t.Parallel()
	home := testDir(t, "homes")
	stage := filepath.Join(testDir(t, "layouts"), "stage")
	bindir := filepath.Join(stage, "usr/local/bin")
	path := bindir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// `make install` as the README says, staged: DESTDIR from the
	// environment (the Makefile's DESTDIR ?=) keeps it out of /usr/local.
	rootEnv := []string{"DESTDIR=" + stage, "PATH=" + path + ":/usr/local/go/bin"}
	userEnv := []string{"PATH=" + path, "HOME=" + home, "USER=" + h.user, "LOGNAME=" + h.user, "LANG=C"}

	var last result
	var ran bool
	check := func(b docBlock) {
		if !ran {
			t.Fatalf("%s:%d: output block without a block before it", b.file, b.line)
		}
		for _, want := range lines(b.body) {
			want = strings.ReplaceAll(want, "/home/"+h.user, home)
			if !strings.Contains(last.stdout, want) {
				t.Errorf("%s:%d: the block before printed no line with %q:\n%s", b.file, b.line, want, last)
			}
		}
	}
	runBlocks := func(file string, env []string, dir, rootDir string) {
		blocks := docBlocks(t, file)
		if len(blocks) == 0 {
			t.Fatalf("%s has no doc-test blocks", file)
		}
		for _, b := range blocks {
			script := filepath.Join(testDir(t, "layouts"), "block.sh")
			if err := os.WriteFile(script, []byte(b.body), 0o644); err != nil {
				t.Fatal(err)
			}
			dir, rootDir, rootExtra := dir, rootDir, []string(nil)
			if b.dir != "" {
				dir = filepath.Join(home, b.dir)
				if err := mkdirOwned(dir); err != nil {
					t.Fatal(err)
				}
				rootDir = dir
				rootExtra = []string{"BUNDLE=" + dir, "RUN_AS=" + h.user}
			}
			switch b.kind {
			case "root":
				last = runRoot(t, rootDir, append(append(rootEnv, env...), rootExtra...), "sh", "-e", script)
			case "user":
				argv := append(append([]string{"env", "-i"}, append(userEnv, env...)...), "sh", "-c", `cd "$0" && exec sh -e "$1"`, dir, script)
				last = execute(t, 5*time.Minute, asUser(argv...))
			case "output":
				check(b)
				continue
			default:
				t.Fatalf("%s:%d: unknown doc-test kind %q", b.file, b.line, b.kind)
			}
			ran = true
			t.Logf("%s:%d (%s): exit %d in %v", b.file, b.line, b.kind, last.code, last.dur.Round(time.Millisecond))
			if last.code != 0 {
				t.Fatalf("%s:%d: the %s block failed:\n%s\n%s", b.file, b.line, b.kind, b.body, last)
			}
		}
	}

	runBlocks("../README.md", nil, home, "..")
	for _, b := range []string{"taproot", "taproot-quota"} {
		fi, err := os.Stat(filepath.Join(bindir, b))
		if err != nil {
			t.Fatalf("make install did not install %s: %v", b, err)
		}
		if b == "taproot-quota" && fi.Mode()&os.ModeSetuid == 0 {
			t.Errorf("installed taproot-quota is not setuid: %v", fi.Mode())
		}
	}
	recipeDir := filepath.Join(home, "web")
	if err := mkdirOwned(recipeDir); err != nil {
		t.Fatal(err)
	}
	runBlocks("../docs/runtimes.md", []string{"IMAGE=" + filepath.Join(home, "try/rootfs")}, recipeDir, recipeDir)
	if !exists(filepath.Join(recipeDir, "runc-state")) {
		t.Errorf("runc kept no state under the recipe's --root")
	}
	if !exists(filepath.Join(home, "crun", "crun-state")) {
		t.Errorf("crun kept no state under the recipe's --root")
	}
}
