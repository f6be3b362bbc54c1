package acceptance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

type progressEvent struct {
	Event          string `json:"event"`
	Time           string `json:"time"`
	ElapsedMS      int64  `json:"elapsed_ms"`
	Ref            string `json:"ref"`
	ManifestDigest string `json:"manifest_digest"`
	Layers         any    `json:"layers"`
	Index          *int   `json:"index"`
	BlobDigest     string `json:"blob_digest"`
	DiffID         string `json:"diff_id"`
	Size           int64  `json:"size"`
	Bytes          int64  `json:"bytes"`
	UnpackedBytes  int64  `json:"unpacked_bytes"`
	ID             string `json:"id"`
	LayersFetched  int    `json:"layers_fetched"`
	LayersCached   int    `json:"layers_cached"`
	BytesDown      int64  `json:"bytes_downloaded"`
	ResolveMS      *int64 `json:"resolve_ms"`
	LayersMS       *int64 `json:"layers_ms"`
}

// progressEvents parses JSON lines, keeping those with an "event" (the
// progress events; log lines have none). Every line must be JSON.
func progressEvents(t *testing.T, out string) []progressEvent {
	t.Helper()
	var evs []progressEvent
	for _, l := range lines(out) {
		var raw map[string]any
		if err := json.Unmarshal([]byte(l), &raw); err != nil {
			t.Fatalf("line is not one JSON object (%v): %q", err, l)
		}
		if _, ok := raw["event"]; !ok {
			continue
		}
		var ev progressEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// --progress=json streams one JSON event per line through a real registry
// (behind a proxy that serves one blob slowly): resolved, per layer
// started/bytes/verified/unpacked, done with timings; a second create of
// the image reports its layers cached, here on --progress-fd 3.
func TestProgressJSON(t *testing.T) {
	need(t)
	t.Parallel()
	name := uniq("progress")
	img := busyboxImage(randomLayer(name, "p", 2<<20))
	_, b := pushImage(t, name, img)
	p := startBlobProxy(t)
	const delay = 2 * time.Second
	slow := b.Layers[1]
	p.slow(slow.Digest.String(), delay)
	store := newStore(t)

	ref := p.ref("acceptance/" + name)
	// As Garden passes it: a global flag before the command.
	r := tp(t, store, nil, []string{"--log-format", "json", "--progress=json"}, p.createArgs(ref, "p1")...)
	mustCreate(t, r, "create with --progress=json")
	evs := progressEvents(t, r.stderr)
	if len(evs) < 4 || evs[0].Event != "resolved" || evs[len(evs)-1].Event != "done" {
		t.Fatalf("want resolved first and done last, got:\n%s", r.stderr)
	}
	res := evs[0]
	if res.ManifestDigest != b.ManifestDigest.String() || !strings.Contains(res.Ref, name) {
		t.Errorf("resolved %+v: want manifest %s and the ref", res, b.ManifestDigest)
	}
	resLayers, _ := res.Layers.([]any)
	if len(resLayers) != len(b.Layers) {
		t.Fatalf("resolved lists %d layers, want %d", len(resLayers), len(b.Layers))
	}
	for i, l := range resLayers {
		m := l.(map[string]any)
		if m["blob_digest"] != b.Layers[i].Digest.String() || m["size"] != float64(len(b.Layers[i].Data)) || m["diff_id"] != b.Layers[i].DiffID.String() {
			t.Errorf("resolved layer %d = %v, want blob %s size %d", i, m, b.Layers[i].Digest, len(b.Layers[i].Data))
		}
	}
	// Per layer: started, bytes up to its size, verified, unpacked, in order.
	for i, bl := range b.Layers {
		var seq []string
		var bytesSeen []int64
		for _, ev := range evs {
			if ev.Index == nil || *ev.Index != i {
				continue
			}
			seq = append(seq, ev.Event)
			if ev.Event == "layer_bytes" {
				bytesSeen = append(bytesSeen, ev.Bytes)
			}
			if ev.Event == "layer_unpacked" && ev.UnpackedBytes <= 0 {
				t.Errorf("layer %d unpacked with %d bytes", i, ev.UnpackedBytes)
			}
		}
		got := strings.Join(compact(seq), ",")
		if got != "layer_started,layer_bytes,layer_verified,layer_unpacked" {
			t.Errorf("layer %d events %s, want started, bytes…, verified, unpacked", i, strings.Join(seq, ","))
		}
		if len(bytesSeen) == 0 || bytesSeen[len(bytesSeen)-1] != int64(len(bl.Data)) {
			t.Errorf("layer %d: bytes events %v, want the last at %d", i, bytesSeen, len(bl.Data))
		}
		for j := 1; j < len(bytesSeen); j++ {
			if bytesSeen[j] < bytesSeen[j-1] {
				t.Errorf("layer %d: bytes went down: %v", i, bytesSeen)
			}
		}
		if i == 1 && len(bytesSeen) < 4 {
			t.Errorf("the slow layer (%v over %v) had only %d bytes events: %v", len(bl.Data), delay, len(bytesSeen), bytesSeen)
		}
	}
	done := evs[len(evs)-1]
	var total int64
	for _, bl := range b.Layers {
		total += int64(len(bl.Data))
	}
	// The proxy sends the last chunk of the slow blob a little before its
	// delay is over (byte n is due at n/size of it): allow a tenth less.
	minLayers := delay.Milliseconds() * 9 / 10
	if done.ResolveMS == nil || done.LayersMS == nil {
		t.Fatalf("done has no resolve_ms or layers_ms: %+v", done)
	}
	if done.ID != "p1" || done.LayersFetched != 2 || done.LayersCached != 0 || done.BytesDown != total ||
		*done.LayersMS < minLayers || done.ElapsedMS < *done.LayersMS {
		t.Errorf("done = %+v (resolve_ms %d, layers_ms %d), want id p1, 2 fetched, %d bytes, layers_ms ≥ %d, elapsed ≥ layers",
			done, *done.ResolveMS, *done.LayersMS, total, minLayers)
	}
	t.Logf("done: resolve_ms %d, layers_ms %d, elapsed_ms %d", *done.ResolveMS, *done.LayersMS, done.ElapsedMS)

	// Again, another id: both layers cached, nothing downloaded; events on fd 3.
	dir := testDir(t, "layouts")
	evFile := filepath.Join(dir, "events.jsonl")
	r = execute(t, 3*time.Minute, asUser("sh", "-c", `f=$1; shift; exec "$@" 3>"$f"`, "sh", evFile,
		h.taproot, "--store", store, "create", "--insecure-registry", p.addr, "--progress-fd", "3", ref, "p2"))
	mustCreate(t, r, "create with --progress-fd 3")
	if strings.TrimSpace(r.stderr) != "" {
		t.Errorf("--progress-fd 3 wrote to stderr:\n%s", r.stderr)
	}
	data, err := os.ReadFile(evFile)
	if err != nil {
		t.Fatal(err)
	}
	evs = progressEvents(t, string(data))
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Event)
	}
	if got := strings.Join(kinds, ","); got != "resolved,layer_cached,layer_cached,done" {
		t.Errorf("second create's events: %s, want resolved, two layer_cached, done", got)
	}
	if d := evs[len(evs)-1]; d.LayersCached != 2 || d.BytesDown != 0 {
		t.Errorf("second create's done = %+v, want 2 cached and 0 bytes", d)
	}
}

// compact drops consecutive repeats.
func compact(s []string) []string {
	var out []string
	for _, v := range s {
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return out
}

// An image too deep for one overlay mount reports the squash of its lowest
// layers, before done.
func TestProgressJSONSquashed(t *testing.T) {
	need(t)
	t.Parallel()
	const n = 150
	var layers []ib.Layer
	for i := 1; i <= n; i++ {
		layers = append(layers, layer(ib.File(fmt.Sprintf("deep-%03d", i), fmt.Sprintf("%d\n", i))))
	}
	ref, _ := pushImage(t, uniq("progress-deep"), busyboxImage(layers...))
	r := tp(t, newStore(t), nil, []string{"--progress=json"}, "create", "--insecure-registry", h.registry, ref, "deep")
	mustCreate(t, r, "create of a deep image with --progress=json")
	var kinds []string
	squashed := 0
	for _, ev := range progressEvents(t, r.stderr) {
		kinds = append(kinds, ev.Event)
		if f, ok := ev.Layers.(float64); ok && ev.Event == "squashed" {
			squashed = int(f) // "layers" is a count here, a list in resolved
		}
	}
	k := strings.Join(kinds, ",")
	if squashed < 2 || squashed > n+1 || !strings.HasSuffix(k, "squashed,done") {
		t.Errorf("want a squashed event (2..%d layers) right before done; squashed %d, events …%s", n+1, squashed, k[max(0, len(k)-200):])
	}
}
