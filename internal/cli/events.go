package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/builder"
	"golang.org/x/sys/unix"
)

// events writes a create's or pull's progress as JSON lines, one event per
// line, for daemons (--progress=json on stderr, or --progress-fd N). The
// schema is in docs/garden.md. Every method is safe on nil (no events) and
// from several goroutines: the store reports from its worker's reader while
// layer streams are counted in theirs.
type events struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time

	resolvedAt time.Time
	layersAt   time.Time
	byDiff     map[digest.Digest][]int
	noDiff     []int // indexes of layers whose diffID is learnt by unpacking
	layers     []eventLayer

	fetched, cached int
	downloaded      int64
}

type eventLayer struct {
	blob     digest.Digest
	size     int64
	started  time.Time
	read     int64
	shown    time.Time // last layer_bytes event
	reported int64     // its bytes
}

// bytesEvery bounds layer_bytes events to about 5 a second per layer: a
// 1 GiB layer over a fast link would otherwise print one per 32 KiB read.
const bytesEvery = 200 * time.Millisecond

// progressSetup turns --progress/--progress-fd into the terminal display
// and the JSON events to use (either may be nil).
func (g *globals) progressSetup() (*progress, *events, error) {
	switch g.progress {
	case "", "auto", "none", "json":
	default:
		return nil, nil, badInput(fmt.Errorf("--progress %q: want auto, none or json", g.progress))
	}
	if g.progressFD != 0 {
		if g.progressFD < 0 || g.progressFD == 1 {
			return nil, nil, badInput(fmt.Errorf("--progress-fd %d: want 2 or an fd opened for writing (stdout is for the result)", g.progressFD))
		}
		var st unix.Stat_t
		if err := unix.Fstat(g.progressFD, &st); err != nil {
			return nil, nil, badInput(fmt.Errorf("--progress-fd %d: %w", g.progressFD, err))
		}
		return nil, newEvents(os.NewFile(uintptr(g.progressFD), fmt.Sprintf("progress-fd-%d", g.progressFD))), nil
	}
	switch g.progress {
	case "json":
		return nil, newEvents(g.streams.Err), nil
	case "none":
		return nil, nil, nil
	}
	return newProgress(g.streams.Err), nil, nil
}

func newEvents(w io.Writer) *events {
	return &events{w: w, start: time.Now(), byDiff: map[digest.Digest][]int{}}
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// emit writes one event; the caller holds e.mu.
func (e *events) emit(kind string, fields map[string]any) {
	fields["event"] = kind
	now := time.Now()
	fields["time"] = now.UTC().Format(time.RFC3339Nano)
	fields["elapsed_ms"] = ms(now.Sub(e.start))
	b, err := json.Marshal(fields)
	if err != nil {
		return
	}
	e.w.Write(append(b, '\n'))
}

// resolved reports the image: reference, manifest digest and layers.
func (e *events) resolved(img builder.Image) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resolvedAt = time.Now()
	var ls []map[string]any
	for i, l := range img.Layers {
		e.layers = append(e.layers, eventLayer{blob: l.BlobDigest, size: l.Size})
		if l.DiffID == "" {
			e.noDiff = append(e.noDiff, i)
		} else {
			e.byDiff[l.DiffID] = append(e.byDiff[l.DiffID], i)
		}
		ls = append(ls, map[string]any{"index": i, "blob_digest": l.BlobDigest, "diff_id": l.DiffID, "media_type": l.MediaType, "size": l.Size})
	}
	e.emit("resolved", map[string]any{"ref": img.Ref, "manifest_digest": img.ManifestDigest, "layers": ls, "resolve_ms": ms(e.resolvedAt.Sub(e.start))})
}

// track counts the bytes of layer i's stream: layer_started now,
// layer_bytes as they come and when the stream ends.
func (e *events) track(i int, rc io.ReadCloser) io.ReadCloser {
	if e == nil {
		return rc
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.layersAt.IsZero() {
		e.layersAt = time.Now()
	}
	l := &e.layers[i]
	l.started = time.Now()
	e.emit("layer_started", map[string]any{"index": i, "blob_digest": l.blob, "size": l.size})
	return &eventReader{rc: rc, e: e, i: i}
}

type eventReader struct {
	rc   io.ReadCloser
	e    *events
	i    int
	done bool
}

func (r *eventReader) Read(b []byte) (int, error) {
	n, err := r.rc.Read(b)
	r.e.read(r.i, int64(n), err != nil && !r.done)
	if err != nil {
		r.done = true
	}
	return n, err
}

func (r *eventReader) Close() error { return r.rc.Close() }

func (e *events) read(i int, n int64, final bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := &e.layers[i]
	l.read += n
	e.downloaded += n
	now := time.Now()
	changed := l.read != l.reported || l.shown.IsZero()
	if changed && (final || now.Sub(l.shown) >= bytesEvery) {
		l.shown, l.reported = now, l.read
		e.emit("layer_bytes", map[string]any{"index": i, "bytes": l.read, "size": l.size})
	}
}

// event receives the store's reports (builder.Hooks.Event).
func (e *events) event(p builder.Event) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if p.Kind == builder.Squashed {
		e.emit("squashed", map[string]any{"layers": p.Layers})
		return
	}
	idx := e.byDiff[p.DiffID]
	if len(idx) == 0 && len(e.noDiff) > 0 {
		// A local rootfs: its diffID is known only now.
		idx, e.noDiff = e.noDiff[:1], e.noDiff[1:]
		e.byDiff[p.DiffID] = idx
	}
	for _, i := range idx {
		l := e.layers[i]
		switch p.Kind {
		case builder.LayerCached:
			e.cached++
			e.emit("layer_cached", map[string]any{"index": i, "diff_id": p.DiffID})
		case builder.LayerUnpacked:
			e.fetched++
			if p.Verified {
				e.emit("layer_verified", map[string]any{"index": i, "blob_digest": l.blob, "diff_id": p.DiffID})
			}
			f := map[string]any{"index": i, "diff_id": p.DiffID, "unpacked_bytes": p.Bytes}
			if !l.started.IsZero() {
				f["layer_ms"] = ms(time.Since(l.started))
			}
			e.emit("layer_unpacked", f)
		}
	}
}

// done reports success with the timings: resolve_ms (reference to
// manifest and config), layers_ms (first layer stream to the end of the
// store's work) and elapsed_ms (the whole command).
func (e *events) done(fields map[string]any) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	fields["resolve_ms"] = ms(e.resolvedAt.Sub(e.start))
	if !e.layersAt.IsZero() {
		fields["layers_ms"] = ms(now.Sub(e.layersAt))
	} else {
		fields["layers_ms"] = int64(0)
	}
	fields["layers_fetched"] = e.fetched
	fields["layers_cached"] = e.cached
	fields["bytes_downloaded"] = e.downloaded
	e.emit("done", fields)
}
