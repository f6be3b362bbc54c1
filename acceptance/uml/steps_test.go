package uml

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// A guest script reports each step as a line "RESULT <name> rc=<exit
// status> out=<output, newlines as |>" (the res function of the scripts);
// the tests assert on them with steps.

// resFunc defines the scripts' res NAME CMD...: it runs CMD and prints its
// RESULT line, which parseResults reads.
const resFunc = `res() { name=$1; shift; out=$("$@" 2>&1); rc=$?; printf 'RESULT %s rc=%d out=%s\n' "$name" "$rc" "$(printf %s "$out" | tr '\n' '|')"; }
`

type stepResult struct {
	rc  int
	out string
}

func parseResults(t *testing.T, output string) map[string]stepResult {
	t.Helper()
	res := map[string]stepResult{}
	for _, line := range strings.Split(output, "\n") {
		rest, ok := strings.CutPrefix(line, "RESULT ")
		if !ok {
			continue
		}
		name, rest, _ := strings.Cut(rest, " rc=")
		rcs, out, _ := strings.Cut(rest, " out=")
		rc, err := strconv.Atoi(rcs)
		if err != nil {
			t.Fatalf("bad result line %q", line)
		}
		res[name] = stepResult{rc: rc, out: strings.ReplaceAll(out, "|", "\n")}
	}
	return res
}

// guest boots script, fails the test if it cannot run, reports a non-zero
// exit of the script, logs its output when verbose, and returns its steps.
func guest(t *testing.T, script string, opts Options) (*steps, *Result) {
	t.Helper()
	res, err := Boot(context.Background(), t, script, opts)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		t.Logf("guest output:\n%s", res.Output)
	}
	if res.ExitCode != 0 {
		t.Errorf("guest script exited %d", res.ExitCode)
	}
	return &steps{t: t, r: parseResults(t, res.Output), output: res.Output}, res
}

// steps asserts on a guest's RESULT lines; a missing step is a failure.
// It reports with t.Errorf only (never Fatal), so that a subtest may call
// it too; a missing step then reads as a failed one (rc -1).
type steps struct {
	t      *testing.T
	r      map[string]stepResult
	output string
	shown  bool
}

func (s *steps) step(name string) stepResult {
	s.t.Helper()
	res, ok := s.r[name]
	if !ok {
		s.t.Errorf("step %s missing from the guest output", name)
		if !s.shown {
			s.shown = true
			s.t.Logf("guest output:\n%s", s.output)
		}
		return stepResult{rc: -1}
	}
	return res
}

func (s *steps) ok(name string) string {
	s.t.Helper()
	res := s.step(name)
	if res.rc != 0 {
		s.t.Errorf("%s: exit %d, want 0: %s", name, res.rc, res.out)
	}
	return strings.TrimSpace(res.out)
}

func (s *steps) fails(name string, want ...string) string {
	s.t.Helper()
	res := s.step(name)
	if res.rc == 0 {
		s.t.Errorf("%s succeeded, want a failure: %s", name, res.out)
	}
	for _, w := range want {
		if !strings.Contains(res.out, w) {
			s.t.Errorf("%s: error %q does not say %q", name, strings.TrimSpace(res.out), w)
		}
	}
	return strings.TrimSpace(res.out)
}

func (s *steps) num(name string) int64 {
	s.t.Helper()
	n, err := strconv.ParseInt(s.ok(name), 10, 64)
	if err != nil {
		s.t.Errorf("%s: %v", name, err)
	}
	return n
}

func (s *steps) decode(name string, v any) {
	s.t.Helper()
	if err := json.Unmarshal([]byte(s.ok(name)), v); err != nil {
		s.t.Errorf("%s: %v", name, err)
	}
}

func (s *steps) helperStats(name string) statsJSON {
	s.t.Helper()
	var q statsJSON
	s.decode(name, &q)
	return q
}

// refused asserts the step is the helper's refusal: exit 1, one line
// "taproot-quota: …" containing want.
func (s *steps) refused(name, want string) {
	s.t.Helper()
	res := s.step(name)
	if res.rc != 1 {
		s.t.Errorf("%s: exit %d, want 1 (refused): %s", name, res.rc, res.out)
	}
	if !strings.HasPrefix(res.out, "taproot-quota: ") || strings.Count(strings.TrimSpace(res.out), "\n") != 0 {
		s.t.Errorf("%s: want one line starting with taproot-quota:, got %q", name, res.out)
	}
	if !strings.Contains(res.out, want) {
		s.t.Errorf("%s: error %q does not contain %q", name, res.out, want)
	}
}
