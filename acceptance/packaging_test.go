package acceptance

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The operator side: the .deb that `make deb` builds, shell completion, man
// pages and --help.

// runRoot runs argv as root (the harness user) with a plain environment.
func runRoot(t *testing.T, dir string, env []string, argv ...string) result {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin", "HOME=/root", "LANG=C"}, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), dur: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return r
}

// scripts/mkdeb.sh (what `make deb` runs) builds a .deb with everything in
// place: setuid root taproot-quota, the clean service+timer and cron line
// pointing at /usr/bin/taproot, man pages, completions, maintainer scripts;
// and the binary in it runs.
func TestDebPackage(t *testing.T) {
	need(t)
	t.Parallel()
	for _, tool := range []string{"dpkg-deb", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (dpkg-deb is in every Debian; make: scripts/deps.sh)", tool)
		}
	}
	if h.quota == "" {
		t.Fatal("no taproot-quota binary to package (see the acceptance setup message)")
	}
	out := t.TempDir()
	r := runRoot(t, "..", []string{"BIN=" + filepath.Dir(h.taproot), "OUT=" + out, "VERSION=1.2.3~test", "DEB_ZLEVEL=1"}, "bash", "scripts/mkdeb.sh")
	if r.code != 0 {
		t.Fatalf("scripts/mkdeb.sh:\n%s", r)
	}
	deb := strings.TrimSpace(r.stdout)
	if want := filepath.Join(out, "taproot_1.2.3~test_"); !strings.HasPrefix(deb, want) || !strings.HasSuffix(deb, ".deb") || !exists(deb) {
		t.Fatalf("mkdeb.sh printed %q, want an existing %s<arch>.deb", deb, want)
	}
	t.Logf("built %s in %v", filepath.Base(deb), r.dur.Round(time.Millisecond))

	r = runRoot(t, "/", nil, "dpkg-deb", "-c", deb)
	if r.code != 0 {
		t.Fatalf("dpkg-deb -c:\n%s", r)
	}
	listing := map[string]string{} // path → "mode owner"
	for _, l := range lines(r.stdout) {
		f := strings.Fields(l)
		if len(f) >= 6 {
			listing[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
		}
	}
	want := map[string]string{
		"/usr/bin/taproot":                                  "-rwxr-xr-x root/root",
		"/usr/bin/taproot-quota":                            "-rwsr-xr-x root/root",
		"/lib/systemd/system/taproot-clean.service":         "-rw-r--r-- root/root",
		"/lib/systemd/system/taproot-clean.timer":           "-rw-r--r-- root/root",
		"/lib/systemd/system/taproot-clean@.service":        "-rw-r--r-- root/root",
		"/lib/systemd/system/taproot-clean@.timer":          "-rw-r--r-- root/root",
		"/lib/systemd/system/taproot-check.service":         "-rw-r--r-- root/root",
		"/lib/systemd/system/taproot-check@.service":        "-rw-r--r-- root/root",
		"/etc/cron.d/taproot":                               "-rw-r--r-- root/root",
		"/usr/share/man/man1/taproot.1.gz":                  "-rw-r--r-- root/root",
		"/usr/share/man/man1/taproot-create.1.gz":           "-rw-r--r-- root/root",
		"/usr/share/man/man1/taproot-clean.1.gz":            "-rw-r--r-- root/root",
		"/usr/share/bash-completion/completions/taproot":    "-rw-r--r-- root/root",
		"/usr/share/zsh/vendor-completions/_taproot":        "-rw-r--r-- root/root",
		"/usr/share/fish/vendor_completions.d/taproot.fish": "-rw-r--r-- root/root",
		"/usr/share/doc/taproot/config.toml.example":        "-rw-r--r-- root/root",
		"/usr/share/doc/taproot/README.md":                  "-rw-r--r-- root/root",
	}
	for p, mode := range want {
		if got, ok := listing[p]; !ok {
			t.Errorf("the .deb lacks %s", p)
		} else if got != mode {
			t.Errorf("%s is %q in the .deb, want %q", p, got, mode)
		}
	}
	for p, mode := range listing {
		if strings.HasPrefix(mode, "-") && !strings.HasSuffix(mode, "root/root") {
			t.Errorf("%s is not root's in the .deb: %s", p, mode)
		}
	}

	for field, wantVal := range map[string]string{"Package": "taproot", "Version": "1.2.3~test"} {
		r := runRoot(t, "/", nil, "dpkg-deb", "-f", deb, field)
		if got := strings.TrimSpace(r.stdout); got != wantVal {
			t.Errorf("control %s = %q, want %q", field, got, wantVal)
		}
	}
	r = runRoot(t, "/", nil, "dpkg-deb", "-f", deb, "Depends")
	if !strings.Contains(r.stdout, "uidmap") {
		t.Errorf("Depends = %q lacks uidmap (newuidmap/newgidmap)", strings.TrimSpace(r.stdout))
	}

	// Unpack it and look inside: units and cron point at the installed
	// binary, maintainer scripts are valid sh, the binary runs.
	root := filepath.Join(t.TempDir(), "root")
	if r := runRoot(t, "/", nil, "dpkg-deb", "-R", deb, root); r.code != 0 {
		t.Fatalf("dpkg-deb -R:\n%s", r)
	}
	for _, f := range []string{"lib/systemd/system/taproot-clean.service", "lib/systemd/system/taproot-clean@.service", "etc/cron.d/taproot"} {
		body := readFile(t, filepath.Join(root, f))
		if strings.Contains(body, "@BINDIR@") || !strings.Contains(body, "/usr/bin/taproot clean") {
			t.Errorf("%s does not run /usr/bin/taproot clean:\n%s", f, body)
		}
	}
	// The boot-time check (issue 15) repairs what a power cut left, and
	// is ordered before the services that start containers.
	for _, f := range []string{"lib/systemd/system/taproot-check.service", "lib/systemd/system/taproot-check@.service"} {
		body := readFile(t, filepath.Join(root, f))
		if strings.Contains(body, "@BINDIR@") || !strings.Contains(body, "ExecStart=/usr/bin/taproot check --quick --repair\n") ||
			!strings.Contains(body, "Before=multi-user.target") || !strings.Contains(body, "WantedBy=multi-user.target") || !strings.Contains(body, "Type=oneshot") {
			t.Errorf("%s does not run /usr/bin/taproot check --quick --repair once at boot:\n%s", f, body)
		}
	}
	if timer := readFile(t, filepath.Join(root, "lib/systemd/system/taproot-clean.timer")); !strings.Contains(timer, "OnCalendar=") || !strings.Contains(timer, "WantedBy=timers.target") {
		t.Errorf("taproot-clean.timer has no schedule or install section:\n%s", timer)
	}
	if !regexp.MustCompile(`(?m)^[0-9*,/-]+ [0-9*,/-]+ \* \* \* root `).MatchString(readFile(t, filepath.Join(root, "etc/cron.d/taproot"))) {
		t.Errorf("etc/cron.d/taproot has no valid line running as root")
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if r := runRoot(t, "/", nil, "sh", "-n", filepath.Join(root, "DEBIAN", s)); r.code != 0 {
			t.Errorf("DEBIAN/%s is not valid sh:\n%s", s, r)
		}
	}
	if !strings.Contains(readFile(t, filepath.Join(root, "DEBIAN/postinst")), "4755") {
		t.Errorf("postinst does not restore the setuid bit of taproot-quota")
	}
	r = runRoot(t, "/", nil, filepath.Join(root, "usr/bin/taproot"), "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "taproot ") {
		t.Errorf("the packaged taproot does not run:\n%s", r)
	}
}

// `taproot completion bash|zsh|fish` prints working scripts: bash completes
// a command name and a flag through the script itself.
func TestCompletion(t *testing.T) {
	need(t)
	t.Parallel()
	for shell, marker := range map[string]string{"bash": "__start_taproot", "zsh": "#compdef taproot", "fish": "complete -c taproot"} {
		r := taproot(t, "/nonexistent", "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, marker) {
			t.Errorf("completion %s: want a script with %q:\n%s", shell, marker, r)
			continue
		}
		if _, err := exec.LookPath(shell); err == nil {
			p := filepath.Join(t.TempDir(), "completion."+shell)
			if err := os.WriteFile(p, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if r := runRoot(t, "/", nil, shell, "-n", p); r.code != 0 {
				t.Errorf("%s -n on the %s completion script:\n%s", shell, shell, r)
			}
		}
	}

	// Drive the bash script as bash would on <TAB>. Without the
	// bash-completion package, define the one helper it needs.
	script := `
if [ -r /usr/share/bash-completion/bash_completion ]; then . /usr/share/bash-completion/bash_completion; fi
if ! type _get_comp_words_by_ref >/dev/null 2>&1; then
  _get_comp_words_by_ref() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
fi
source <("$TAPROOT" completion bash)
complete_line() {
  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
  __start_taproot 2>/dev/null
  printf '%s\n' "${COMPREPLY[@]}"; echo --
}
complete_line "$TAPROOT" cr
complete_line "$TAPROOT" create --disk-limit
`
	r := runRoot(t, "/", []string{"TAPROOT=" + h.taproot}, "bash", "-c", script)
	if r.code != 0 {
		t.Fatalf("bash completion:\n%s", r)
	}
	parts := strings.Split(r.stdout, "--\n")
	if len(parts) < 2 || strings.TrimSpace(parts[0]) != "create" {
		t.Errorf("completing `taproot cr`: got %q, want create", parts[0])
	}
	if len(parts) < 2 || !strings.Contains(parts[1], "--disk-limit-size-bytes") {
		t.Errorf("completing `taproot create --disk-limit`: got %q, want --disk-limit-size-bytes", r.stdout)
	}
}

// Every command's --help has examples, and the man pages generated from
// the same tree keep argument placeholders.
func TestHelpAndManPages(t *testing.T) {
	need(t)
	t.Parallel()
	r := taproot(t, "/nonexistent", "--help")
	if r.code != 0 {
		t.Fatalf("--help:\n%s", r)
	}
	_, list, ok := strings.Cut(r.stdout, "Available Commands:\n")
	if !ok {
		t.Fatalf("--help has no command list:\n%s", r.stdout)
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var cmds []string
	for _, l := range lines(list) {
		if c := strings.Fields(l)[0]; c != "help" {
			cmds = append(cmds, c)
		}
	}
	if len(cmds) < 8 {
		t.Fatalf("only %d commands in --help: %v", len(cmds), cmds)
	}
	for _, c := range cmds {
		r := taproot(t, "/nonexistent", c, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "\nExamples:\n") {
			t.Errorf("`taproot %s --help` has no Examples section:\n%s", c, r)
		}
	}

	dir := filepath.Join(testDir(t, "layouts"), "man")
	if r := taproot(t, "/nonexistent", "__man", dir); r.code != 0 {
		t.Fatalf("__man:\n%s", r)
	}
	for _, c := range append([]string{""}, cmds...) {
		name := "taproot.1"
		if c != "" {
			name = "taproot-" + c + ".1"
		}
		if !exists(filepath.Join(dir, name)) {
			t.Errorf("no man page %s for %q", name, c)
		}
	}
	page := readFile(t, filepath.Join(dir, "taproot-create.1"))
	for _, w := range []string{`taproot create [flags] <image\-ref> <id>`, "--disk-limit-size-bytes", "docker:///REPO"} {
		if !strings.Contains(strings.ReplaceAll(page, `\-`, "-"), strings.ReplaceAll(w, `\-`, "-")) {
			t.Errorf("taproot-create.1 lacks %q", w)
		}
	}
}

// `make install` and the .deb refuse each other clearly instead of mixing:
// dpkg installing over a `make install` stops in preinst with what to do
// (not at a conffile prompt for /etc/cron.d/taproot), `make uninstall`
// removes every file install put there, then the .deb installs, and
// `make install`/`make uninstall` refuse while it is there. All in a dpkg
// root (dpkg --root) so the host's /usr and /etc are untouched.
func TestMakeInstallAndDebExcludeEachOther(t *testing.T) {
	need(t)
	t.Parallel()
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (dpkg is in every Debian; make: scripts/deps.sh)", tool)
		}
	}
	if h.quota == "" {
		t.Fatal("no taproot-quota binary to package (see the acceptance setup message)")
	}
	bin := filepath.Dir(h.taproot)
	r := runRoot(t, "..", []string{"BIN=" + bin, "OUT=" + t.TempDir(), "VERSION=1.2.3~coexist", "DEB_ZLEVEL=1"}, "bash", "scripts/mkdeb.sh")
	if r.code != 0 {
		t.Fatalf("scripts/mkdeb.sh:\n%s", r)
	}
	deb := strings.TrimSpace(r.stdout)
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// dpkg reads the answer to a conffile prompt from stdin: runRoot gives
	// it none (EOF), so a prompt would fail the install, not hang.
	dpkg := func(args ...string) result {
		return runRoot(t, "/", nil, append([]string{"dpkg", "--root=" + root, "--force-script-chrootless", "--force-depends"}, args...)...)
	}
	status := func() string {
		r := runRoot(t, "/", nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${db:Status-Status}", "taproot")
		return strings.TrimSpace(r.stdout)
	}
	makeIn := func(target string, extra ...string) result {
		// BIN: the harness's binaries (install-files copies them; install
		// is only run where install-check refuses before it builds).
		return runRoot(t, "..", append([]string{"DESTDIR=" + root}, extra...), "make", "-s", target, "BIN="+bin)
	}
	ours := func() []string {
		var files []string
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() && !strings.HasPrefix(p, filepath.Join(root, "var/lib/dpkg")) {
				files = append(files, strings.TrimPrefix(p, root))
			}
			return nil
		})
		return files
	}

	if r := makeIn("install-files"); r.code != 0 {
		t.Fatalf("make install-files:\n%s", r)
	}
	if !exists(filepath.Join(root, "etc/cron.d/taproot")) || !exists(filepath.Join(root, "usr/local/bin/taproot")) {
		t.Fatalf("make install put no cron file or binary: %v", ours())
	}
	r = dpkg("-i", deb)
	if r.code == 0 {
		t.Fatalf("dpkg -i over a make install succeeded:\n%s", r)
	}
	if strings.Contains(r.stdout+r.stderr, "Configuration file") || !strings.Contains(r.stderr, "make uninstall") {
		t.Errorf("dpkg -i over a make install: want the preinst's refusal naming make uninstall, not a conffile prompt:\n%s", r)
	}
	if st := status(); st != "not-installed" {
		t.Errorf("after the refused install the package is %q, want not-installed", st)
	}

	if r := makeIn("uninstall"); r.code != 0 {
		t.Fatalf("make uninstall:\n%s", r)
	}
	if left := ours(); len(left) != 0 {
		t.Errorf("make uninstall left: %v", left)
	}

	if r := dpkg("-i", deb); r.code != 0 || status() != "installed" {
		t.Fatalf("dpkg -i after make uninstall (status %q):\n%s", status(), r)
	}
	if fi, err := os.Stat(filepath.Join(root, "usr/bin/taproot-quota")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("packaged taproot-quota after postinst: %v %v", fi, err)
	}
	r = makeIn("install")
	if r.code == 0 || !strings.Contains(r.stderr, "the taproot .deb is installed") || exists(filepath.Join(root, "usr/local/bin/taproot")) {
		t.Errorf("make install with the .deb installed: want a refusal and nothing installed:\n%s", r)
	}
	r = makeIn("uninstall", "PREFIX=/usr")
	if r.code == 0 || !strings.Contains(r.stderr, "belongs to the taproot .deb") || !exists(filepath.Join(root, "usr/bin/taproot")) {
		t.Errorf("make uninstall PREFIX=/usr with the .deb installed: want a refusal and the package's files kept:\n%s", r)
	}
	if r := dpkg("-r", "taproot"); r.code != 0 {
		t.Fatalf("dpkg -r:\n%s", r)
	}
	if st := status(); st != "config-files" {
		t.Errorf("after dpkg -r the package is %q, want config-files (the cron conffile kept)", st)
	}
	if r := makeIn("install-check"); r.code != 0 {
		t.Errorf("make install still refuses after dpkg -r:\n%s", r)
	}
	// A make install over the removed package's conffile, then the .deb
	// again: still a clear refusal, not a conffile prompt.
	if r := makeIn("install-files"); r.code != 0 {
		t.Fatalf("make install-files after dpkg -r:\n%s", r)
	}
	r = dpkg("-i", deb)
	if r.code == 0 || strings.Contains(r.stdout+r.stderr, "Configuration file") || !strings.Contains(r.stderr, "make uninstall") {
		t.Errorf("dpkg -i over a make install after dpkg -r: want the preinst's refusal:\n%s", r)
	}
	if r := makeIn("uninstall"); r.code != 0 {
		t.Fatalf("make uninstall:\n%s", r)
	}
	if r := dpkg("-i", deb); r.code != 0 || status() != "installed" {
		t.Errorf("dpkg -i after make uninstall, over the kept conffile (status %q):\n%s", status(), r)
	}
}
