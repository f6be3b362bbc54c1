package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/taproot-dev/taproot/builder"
)

// Every class has its own exit code; nil is success.
func TestExitCodeOf(t *testing.T) {
	if got := exitCodeOf(nil); got != ExitOK {
		t.Errorf("exitCodeOf(nil) = %d", got)
	}
	seen := map[ExitCode]builder.Class{}
	for c := builder.ClassInternal; c <= builder.ClassDamaged; c++ {
		// A failure of class c: ClassOf's own sentinels for three of them,
		// the store's and fetcher's for the rest.
		err := map[builder.Class]error{
			builder.ClassInternal:     errors.New("something odd"),
			builder.ClassBadInput:     badInput(errors.New("--flag: bad")),
			builder.ClassNotFound:     fmt.Errorf("%w at /x", builder.ErrNoStore),
			builder.ClassUnauthorized: &fs.PathError{Op: "mkdir", Path: "/root/store", Err: syscall.EACCES},
			builder.ClassTransient:    context.DeadlineExceeded,
			builder.ClassLimit:        &fs.PathError{Op: "write", Path: "/s/x", Err: syscall.ENOSPC},
			builder.ClassDamaged:      fmt.Errorf("%w; run taproot check --repair", builder.ErrStoreDamaged),
		}[c]
		if builder.ClassOf(err) != c {
			t.Fatalf("test error %v is not of class %d", err, c)
		}
		code := exitCodeOf(err)
		if code == ExitOK || code.Class() == "unknown" {
			t.Errorf("class %d: exit code %d", c, code)
		}
		if other, dup := seen[code]; dup {
			t.Errorf("classes %d and %d share exit code %d", other, c, code)
		}
		seen[code] = c
	}
	if exitCodeOf(badInput(errors.New("x"))) != ExitBadInput || exitCodeOf(builder.ErrStoreDamaged) != ExitDamaged {
		t.Errorf("bad input or damage has the wrong exit code")
	}
	// badInput keeps the message.
	if got := badInput(errors.New("--x 1: must be 2")).Error(); got != "--x 1: must be 2" {
		t.Errorf("badInput changed the message: %q", got)
	}
}

// run runs Main with a fresh store path (nothing created) and returns the
// exit code and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	t.Setenv("HOME", t.TempDir())
	store := filepath.Join(t.TempDir(), "store")
	code := Main(context.Background(), append([]string{"--store", store}, args...), Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestMainExitCodesAndJSONErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for _, tc := range []struct {
		args  []string
		code  ExitCode
		class string
		msg   string // the error's text contains this
	}{
		{[]string{"bogus-command"}, ExitBadInput, "bad_input", `unknown command "bogus-command"`},
		{[]string{"create", "--no-such-flag", "a", "b"}, ExitBadInput, "bad_input", "unknown flag: --no-such-flag"},
		{[]string{"create", "onlyone"}, ExitBadInput, "bad_input", "accepts 2 arg(s)"},
		{[]string{"--log-level", "loud", "list"}, ExitBadInput, "bad_input", `--log-level "loud": want debug, info, warn or error`},
		{[]string{"--config", missing, "list"}, ExitBadInput, "bad_input", "config " + missing},
		{[]string{"create", "dokcer://127.0.0.1:1/x/y:z", "c1"}, ExitBadInput, "bad_input", `unknown transport "dokcer"`},
		{[]string{"create", "--disk-limit-size-bytes", "-1", missing, "c1"}, ExitBadInput, "bad_input", "must not be negative"},
		{[]string{"create", missing, "c1"}, ExitNotFound, "not_found", missing + " does not exist"},
		{[]string{"stats", "nope"}, ExitNotFound, "not_found", `image "nope": image not found`},
		{[]string{"check"}, ExitNotFound, "not_found", "no store at "},
	} {
		name := strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			// Text: one "taproot: " line.
			code, stdout, stderr := run(t, tc.args...)
			if code != int(tc.code) {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if !strings.HasPrefix(stderr, "taproot: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.msg) {
				t.Errorf("stderr %q, want one line \"taproot: …%s…\"", stderr, tc.msg)
			}
			// JSON: every line one object, the last the error.
			for _, form := range [][]string{{"--log-format", "json"}, {"--log-format=json"}} {
				code, _, stderr = run(t, append(form, tc.args...)...)
				if code != int(tc.code) {
					t.Errorf("%v: exit %d, want %d", form, code, tc.code)
				}
				ls := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
				var last map[string]any
				for _, l := range ls {
					last = nil
					if err := json.Unmarshal([]byte(l), &last); err != nil {
						t.Fatalf("%v: stderr line %q is not JSON: %v", form, l, err)
					}
				}
				if last["level"] != "ERROR" || last["code"] != float64(tc.code) || last["class"] != tc.class ||
					!strings.Contains(fmt.Sprint(last["error"]), tc.msg) || !strings.HasSuffix(fmt.Sprint(last["msg"]), "failed") {
					t.Errorf("%v: last line %v, want level ERROR, code %d, class %s, error ~%q, msg \"… failed\"", form, last, tc.code, tc.class, tc.msg)
				}
			}
		})
	}
}

// A log_format = "json" config makes the error JSON even when a flag is bad.
func TestMainJSONErrorFromConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("log_format = \"json\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "--config", cfg, "--log-level", "loud", "list")
	var obj map[string]any
	if err := json.Unmarshal([]byte(stderr), &obj); err != nil || code != int(ExitBadInput) {
		t.Fatalf("exit %d, stderr %q (%v): want one JSON object and exit 2", code, stderr, err)
	}
}

// The exit codes listed in `taproot --help` are the code's.
func TestHelpListsExitCodes(t *testing.T) {
	long := NewCmdRoot(Streams{}).Long
	for c := ExitInternal; c <= ExitDamaged; c++ {
		name := strings.ReplaceAll(c.Class(), "_", " ")
		if c == ExitLimit {
			name = "disk limit"
		}
		if !strings.Contains(strings.Join(strings.Fields(long), " "), fmt.Sprintf("%d %s", c, name)) {
			t.Errorf("taproot --help does not list exit code %d as %q:\n%s", c, name, long)
		}
	}
}
