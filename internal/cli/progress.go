package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// progress draws one line per layer being downloaded (bytes and rate) on a
// terminal, and nothing at all when stderr is not one: daemons read stderr
// as logs.
type progress struct {
	w      io.Writer
	mu     sync.Mutex
	layers []*layerProgress
	stop   chan struct{}
	done   chan struct{}
	drawn  int // lines drawn last time
	start  time.Time
}

type layerProgress struct {
	name  string
	size  int64 // -1 unknown
	read  atomic.Int64
	ended atomic.Bool
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// newProgress returns nil (no output) unless w is a terminal.
func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	return newProgressTo(w)
}

func newProgressTo(w io.Writer) *progress {
	p := &progress{w: w, stop: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	go p.loop()
	return p
}

// track wraps a layer's stream so its bytes are counted. Safe on nil.
func (p *progress) track(name string, size int64, rc io.ReadCloser) io.ReadCloser {
	if p == nil {
		return rc
	}
	lp := &layerProgress{name: name, size: size}
	p.mu.Lock()
	p.layers = append(p.layers, lp)
	p.mu.Unlock()
	return &countingReadCloser{rc: rc, lp: lp}
}

type countingReadCloser struct {
	rc io.ReadCloser
	lp *layerProgress
}

func (c *countingReadCloser) Read(b []byte) (int, error) {
	n, err := c.rc.Read(b)
	c.lp.read.Add(int64(n))
	return n, err
}

func (c *countingReadCloser) Close() error {
	c.lp.ended.Store(true)
	return c.rc.Close()
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.draw()
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn) // back to the first line
	}
	secs := time.Since(p.start).Seconds()
	for _, lp := range p.layers {
		n := lp.read.Load()
		state := "downloading"
		if lp.ended.Load() {
			state = "done"
		}
		total := "?"
		if lp.size >= 0 {
			total = mib(lp.size)
		}
		fmt.Fprintf(&b, "\x1b[2K%s  %s / %s MiB  %s MiB/s  %s\n", lp.name, mib(n), total, mib(int64(float64(n)/max(secs, 0.001))), state)
	}
	p.drawn = len(p.layers)
	io.WriteString(p.w, b.String())
}

func mib(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

// finish draws the last state and stops. Safe on nil.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
}
