package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The docs quote taproot's messages; these tests keep them true. A message
// is a line of a fenced block, or an inline code span, that starts with
// "taproot: " (an error) or "level=LEVEL msg=" (a log line in the text
// format). Where the message can be produced here (no registry, no root),
// TestDocsMessagesTriggered runs the command and wants the docs' line
// verbatim; every other one must match the Go source (TestDocsMessagesInSource).

const repoRoot = "../.."

type docMessage struct {
	file string
	line int
	text string // without the "taproot: " prefix for errors
	log  bool   // a level=… msg=… line
	json bool   // a JSON error line ({"level":"ERROR",…,"code":N,"class":…})
}

var (
	fenceRe      = regexp.MustCompile("^\\s*```")
	spanRe       = regexp.MustCompile("`([^`]+)`")
	annotationRe = regexp.MustCompile(`\s{2,}\(.*\)$`)
	logLineRe    = regexp.MustCompile(`^level=(DEBUG|INFO|WARN|ERROR) msg=`)
)

// docMessages extracts the quoted messages of docs/*.md and README.md.
func docMessages(t *testing.T) []docMessage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs/*.md under %s: %v", repoRoot, err)
	}
	files = append(files, filepath.Join(repoRoot, "README.md"))
	var out []docMessage
	add := func(file string, line int, s string) {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "taproot: "):
			s = annotationRe.ReplaceAllString(s, "")
			out = append(out, docMessage{file: filepath.Base(file), line: line, text: strings.TrimPrefix(s, "taproot: ")})
		case logLineRe.MatchString(s):
			s = annotationRe.ReplaceAllString(s, "")
			out = append(out, docMessage{file: filepath.Base(file), line: line, text: s, log: true})
		case strings.HasPrefix(s, "{") && strings.Contains(s, `"level":"ERROR"`):
			out = append(out, docMessage{file: filepath.Base(file), line: line, text: s, json: true})
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inFence := false
		var para []string
		paraLine := 0
		flush := func() {
			joined := strings.Join(para, " ")
			for _, m := range spanRe.FindAllStringSubmatch(joined, -1) {
				add(f, paraLine, m[1])
			}
			para = nil
		}
		for i, l := range strings.Split(string(data), "\n") {
			if fenceRe.MatchString(l) {
				flush()
				inFence = !inFence
				continue
			}
			if inFence {
				add(f, i+1, l)
				continue
			}
			if strings.TrimSpace(l) == "" {
				flush()
				continue
			}
			if len(para) == 0 {
				paraLine = i + 1
			}
			para = append(para, strings.TrimSpace(l))
		}
		flush()
	}
	return out
}

// sourceStrings returns every string literal of the non-test Go source
// (acceptance excluded), and for each call with string-literal arguments
// those arguments, for log calls (msg plus attribute keys).
func sourceStrings(t *testing.T) (lits []string, calls [][]string) {
	t.Helper()
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "acceptance" || n == "testdata" || (strings.HasPrefix(n, ".") && p != repoRoot) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if s, err := strconv.Unquote(n.Value); err == nil {
						lits = append(lits, s)
					}
				}
			case *ast.CallExpr:
				var args []string
				for _, a := range n.Args {
					if bl, ok := a.(*ast.BasicLit); ok && bl.Kind == token.STRING {
						if s, err := strconv.Unquote(bl.Value); err == nil {
							args = append(args, s)
						}
					}
				}
				if len(args) > 0 {
					calls = append(calls, args)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lits, calls
}

var verbRe = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)

// formatRegexp turns a format string into a regexp: verbs match anything,
// and so does the docs' "…" (written where a value was shortened).
func formatRegexp(format string, anchored bool) (*regexp.Regexp, int) {
	var b strings.Builder
	if anchored {
		b.WriteString("^")
	}
	fixed := 0
	last := 0
	for _, loc := range verbRe.FindAllStringIndex(format, -1) {
		lit := format[last:loc[0]]
		fixed += len(lit)
		b.WriteString(quoteWithEllipsis(lit))
		if format[loc[0]:loc[1]] == "%%" {
			b.WriteString("%")
		} else {
			b.WriteString(".*?")
		}
		last = loc[1]
	}
	fixed += len(format) - last
	b.WriteString(quoteWithEllipsis(format[last:]))
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, 0
	}
	return re, fixed
}

// quoteWithEllipsis quotes s for a regexp; the docs may write "…" for any
// run of characters, so between each pair of characters "…" may appear.
func quoteWithEllipsis(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteString(regexp.QuoteMeta(string(r)))
		b.WriteString("(?:…[^:]*?)?")
	}
	return b.String()
}

// explained reports whether msg is produced by some format in the source:
// either a format of at least 5 fixed characters matches msg from its
// start ("store %s: %w"), or one of at least 12 fixed characters matches
// inside it (a message wrapped by a caller, or a hint after a foreign
// error). The text around may come from Go or containers/image.
func explained(msg string, lits []string) bool {
	for _, l := range lits {
		if len(l) < 5 {
			continue
		}
		if re, fixed := formatRegexp(l, true); re != nil && fixed >= 5 && re.MatchString(msg) {
			return true
		}
		if re, fixed := formatRegexp(l, false); re != nil && fixed >= 12 && re.MatchString(msg) {
			return true
		}
	}
	return false
}

var logKVRe = regexp.MustCompile(`(?:^|\s)([a-z_]+)=`)

// logExplained reports whether a "level=… msg=… k=v" line comes from a log
// call with that message and those attribute keys.
func logExplained(line string, calls [][]string) (bool, string) {
	rest := logLineRe.ReplaceAllString(line, "")
	var msg string
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return false, "bad msg quoting"
		}
		msg, _ = strconv.Unquote(q)
		rest = rest[len(q):]
	} else {
		msg, rest, _ = strings.Cut(rest, " ")
	}
	var keys []string
	for _, m := range logKVRe.FindAllStringSubmatch(rest, -1) {
		keys = append(keys, m[1])
	}
	for _, args := range calls {
		if args[0] != msg {
			continue
		}
		ok := true
		for _, k := range keys {
			found := false
			for _, a := range args[1:] {
				found = found || a == k
			}
			ok = ok && found
		}
		if ok {
			return true, ""
		}
		return false, "no log call " + strconv.Quote(msg) + " with keys " + strings.Join(keys, ", ") + " (has " + strings.Join(args[1:], ", ") + ")"
	}
	return false, "no log call with message " + strconv.Quote(msg)
}

func TestDocsMessagesInSource(t *testing.T) {
	msgs := docMessages(t)
	if len(msgs) < 20 {
		t.Fatalf("found only %d quoted messages in the docs: is the extraction broken?", len(msgs))
	}
	perFile := map[string]int{}
	for _, m := range msgs {
		perFile[m.file]++
	}
	t.Logf("quoted messages per file: %v", perFile)
	lits, calls := sourceStrings(t)
	for _, m := range msgs {
		if m.json {
			var obj struct {
				Msg, Error, Class string
				Code              int
			}
			if err := json.Unmarshal([]byte(m.text), &obj); err != nil {
				t.Errorf("%s:%d: JSON error line does not parse: %v", m.file, m.line, err)
				continue
			}
			if !strings.HasSuffix(obj.Msg, " failed") || ExitCode(obj.Code).Class() != obj.Class || !explained(obj.Error, lits) {
				t.Errorf("%s:%d: JSON error line: msg %q, code %d class %q (code's class %q), error explained %v",
					m.file, m.line, obj.Msg, obj.Code, obj.Class, ExitCode(obj.Code).Class(), explained(obj.Error, lits))
			}
			continue
		}
		if m.log {
			if ok, why := logExplained(m.text, calls); !ok {
				t.Errorf("%s:%d: %s\n\t%s", m.file, m.line, why, m.text)
			}
			continue
		}
		if !explained(m.text, lits) {
			t.Errorf("%s:%d: no format string in the Go source produces this message:\n\ttaproot: %s", m.file, m.line, m.text)
		}
	}
}

// The extraction and matching can fail: messages the code does not produce
// are not explained.
func TestDocsMatcherRejectsDrift(t *testing.T) {
	lits, calls := sourceStrings(t)
	for _, drifted := range []string{
		"disk limit ignored: this store has no project quotas (run init-store on XFS)",
		"flux capacitor overheated while unpacking",
	} {
		if explained(drifted, lits) {
			t.Errorf("%q explained by the source", drifted)
		}
	}
	if !explained(`image "c1": image id already exists`, lits) {
		t.Errorf("a real message is not explained")
	}
	if ok, _ := logExplained(`level=WARN msg="disk limit ignored: this store has no project quotas (run init-store on XFS)" id=limited`, calls); ok {
		t.Errorf("an old warning is explained")
	}
	if ok, why := logExplained(`level=WARN msg="nothing to delete: image not found" id=nope`, calls); !ok {
		t.Errorf("a real warning is not explained: %s", why)
	}
}

// Messages the docs quote that this test can produce: each command runs in
// process and its stderr must be a line of the docs, verbatim.
func TestDocsMessagesTriggered(t *testing.T) {
	docs := map[string]bool{}
	for _, m := range docMessages(t) {
		if !m.log && !m.json {
			docs["taproot: "+m.text] = true
		}
	}
	badTOML := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(badTOML, []byte("bogus_key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		// subst turns the output's temp paths into the docs' ones.
		from, to string
	}{
		{args: []string{"create", "/tmp", "a/b"}},
		{args: []string{"--config", "/nonexistent.toml", "list"}},
		{args: []string{"--config", badTOML, "list"}, from: badTOML, to: "/tmp/g8/lay/bad.toml"},
		{args: []string{"--log-level", "loud", "list"}},
		{args: []string{"bogus"}},
		{args: []string{"create", "/nonexistent/rootfs", "c1"}},
		{args: []string{"create", "docker://UPPER/Case::bad", "c1"}},
		{args: []string{"create", "dokcer://registry.example.com/app:1.2", "c1"}},
		{args: []string{"stats", "nope"}},
	} {
		var out, errb bytes.Buffer
		Main(context.Background(), append([]string{"--store", filepath.Join(t.TempDir(), "store")}, tc.args...), Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		got := strings.TrimSpace(errb.String())
		if tc.from != "" {
			got = strings.ReplaceAll(got, tc.from, tc.to)
		}
		if !docs[got] {
			t.Errorf("taproot %s prints a line the docs do not quote verbatim:\n\t%s", strings.Join(tc.args, " "), got)
		}
	}
}

// The exit-code table in docs/troubleshooting.md is the code's.
func TestDocsExitCodeTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| ([0-9]+) \\| `([a-z_]+)` \\|")
	seen := map[ExitCode]bool{}
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		n, _ := strconv.Atoi(m[1])
		if got := ExitCode(n).Class(); got != m[2] {
			t.Errorf("troubleshooting.md: exit code %d is %q, the code says %q", n, m[2], got)
		}
		seen[ExitCode(n)] = true
	}
	for c := ExitInternal; c <= ExitDamaged; c++ {
		if !seen[c] {
			t.Errorf("troubleshooting.md's table lacks exit code %d (%s)", c, c.Class())
		}
	}
}
