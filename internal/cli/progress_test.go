package cli

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

func TestProgressSilentWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	if p := newProgress(&buf); p != nil {
		t.Fatal("progress on a buffer")
	}
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if p := newProgress(f); p != nil {
		t.Fatal("progress on a regular file")
	}
	var nilp *progress
	rc := io.NopCloser(strings.NewReader("x"))
	if nilp.track("l", 1, rc) != rc {
		t.Fatal("nil progress wrapped the stream")
	}
	nilp.finish()
}

func TestProgressCountsBytes(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressTo(&buf)
	rc := p.track("abc123", 3<<20, io.NopCloser(bytes.NewReader(make([]byte, 3<<20))))
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	p.finish()
	out := buf.String()
	if !strings.Contains(out, "abc123  3.0 / 3.0 MiB") || !strings.Contains(out, "done") {
		t.Fatalf("progress output %q", out)
	}
}
