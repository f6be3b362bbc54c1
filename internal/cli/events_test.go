package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/builder"
)

func TestEventsStream(t *testing.T) {
	var buf bytes.Buffer
	e := newEvents(&buf)
	blob := []byte(strings.Repeat("x", 100))
	img := builder.Image{
		ManifestDigest: digest.FromString("manifest"),
		Layers: []builder.Layer{
			{BlobDigest: digest.FromString("b0"), DiffID: digest.FromString("d0"), Size: 10},
			{BlobDigest: digest.FromBytes(blob), DiffID: digest.FromString("d1"), Size: int64(len(blob))},
		},
	}
	e.resolved(img)
	e.event(builder.Event{Kind: builder.LayerCached, DiffID: digest.FromString("d0")})
	rc := e.track(1, io.NopCloser(bytes.NewReader(blob)))
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	e.event(builder.Event{Kind: builder.LayerUnpacked, DiffID: digest.FromString("d1"), Bytes: 300, Verified: true})
	e.event(builder.Event{Kind: builder.Squashed, Layers: 2})
	e.done(map[string]any{"id": "c1"})

	var kinds []string
	var last map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not one JSON object per line: %q: %v", l, err)
		}
		kinds = append(kinds, ev["event"].(string))
		if _, ok := ev["time"].(string); !ok {
			t.Errorf("%s has no time", l)
		}
		if _, ok := ev["elapsed_ms"].(float64); !ok {
			t.Errorf("%s has no elapsed_ms", l)
		}
		switch ev["event"] {
		case "resolved":
			ls := ev["layers"].([]any)
			if len(ls) != 2 || ls[1].(map[string]any)["size"] != float64(100) || ev["manifest_digest"] != img.ManifestDigest.String() {
				t.Errorf("resolved: %s", l)
			}
		case "layer_bytes":
			last = ev
		case "layer_unpacked":
			if ev["index"] != float64(1) || ev["unpacked_bytes"] != float64(300) {
				t.Errorf("layer_unpacked: %s", l)
			}
		case "done":
			if ev["layers_fetched"] != float64(1) || ev["layers_cached"] != float64(1) || ev["bytes_downloaded"] != float64(100) || ev["id"] != "c1" {
				t.Errorf("done: %s", l)
			}
		}
	}
	if last == nil || last["bytes"] != float64(100) || last["index"] != float64(1) {
		t.Errorf("the last layer_bytes event is %v, want index 1 with all 100 bytes", last)
	}
	got := strings.Join(kinds, ",")
	for _, want := range []string{"resolved,layer_cached,layer_started,layer_bytes", "layer_verified,layer_unpacked,squashed,done"} {
		if !strings.Contains(got, want) {
			t.Errorf("events %s, want them to contain %s", got, want)
		}
	}
	// nil events do nothing.
	var none *events
	none.resolved(img)
	none.event(builder.Event{Kind: builder.LayerCached})
	none.done(map[string]any{})
	if rc := none.track(0, io.NopCloser(strings.NewReader("x"))); rc == nil {
		t.Error("nil track returned nil")
	}
}

func TestProgressFlags(t *testing.T) {
	for _, g := range []*globals{{progress: "loud"}, {progressFD: 1}, {progressFD: -3}, {progressFD: 987}} {
		if _, _, err := g.progressSetup(); exitCodeOf(err) != ExitBadInput {
			t.Errorf("progressSetup(%q, fd %d) = %v, want a bad-input error", g.progress, g.progressFD, err)
		}
	}
	g := &globals{streams: Streams{Err: io.Discard}, progress: "json"}
	if _, ev, err := g.progressSetup(); err != nil || ev == nil {
		t.Errorf("--progress=json: %v, %v", ev, err)
	}
	g.progress = "none"
	if p, ev, err := g.progressSetup(); err != nil || ev != nil || p != nil {
		t.Errorf("--progress=none: %v %v %v", p, ev, err)
	}
}
