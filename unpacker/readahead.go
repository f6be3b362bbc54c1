package unpacker

import (
	"errors"
	"io"
	"sync"
)

// Read-ahead between the decompressing and the writing half of an unpack.
//
// Why: UnpackLayer did everything in one goroutine (read the blob, hash it,
// decompress, hash the tar, parse, CRC, write files), so a single-layer
// image used one core however many the machine had. With the first half
// (blob read + SHA-256, inflate, tar SHA-256, ratio check) in its own
// goroutine, decompression overlaps the file system work: `mkbenchimage
// unpack` of the 1.57 GB single-layer bench image (big1) on the 2-core VM,
// in tmpfs at load 5–7: 11.7 / 10.0 s → 7.3 / 9.6 s wall, same CPU; the
// quiet-machine figure is in docs/PERFORMANCE.md.
//
// Sizes: chunks of readAheadChunk, at most readAheadDepth of them filled and
// waiting. 4 × 256 KiB = 1 MiB per layer in flight: enough to ride out a
// stall of either side of a few ms, and at ParallelLayers = 3 layers at
// once 3 MiB of the worker's 100 MiB budget.
const (
	readAheadChunk = 256 << 10
	readAheadDepth = 4
)

// errReadAheadClosed is what the producer reads once Close was called.
var errReadAheadClosed = errors.New("unpacker: read-ahead closed")

type raChunk struct {
	buf []byte // the whole buffer (returned to free)
	n   int    // bytes of data in buf
	err error  // the error after those bytes (io.EOF at the end)
}

// readAhead reads r in its own goroutine, ahead of the consumer. Everything
// r touches (hashes, counters) belongs to that goroutine until Close
// returns (or Read returned an error: the producer has stopped then).
type readAhead struct {
	full   chan raChunk
	free   chan []byte
	stop   chan struct{}
	exited chan struct{}
	once   sync.Once

	cur raChunk // being consumed
	off int
	err error // sticky, after the last chunk
}

func newReadAhead(r io.Reader) *readAhead {
	a := &readAhead{
		full:   make(chan raChunk, readAheadDepth),
		free:   make(chan []byte, readAheadDepth+1),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for range readAheadDepth + 1 {
		a.free <- make([]byte, readAheadChunk)
	}
	go a.produce(r)
	return a
}

func (a *readAhead) produce(r io.Reader) {
	defer close(a.exited)
	for {
		var buf []byte
		select {
		case buf = <-a.free:
		case <-a.stop:
			return
		}
		// Not io.ReadFull: it turns io.EOF after some bytes into
		// io.ErrUnexpectedEOF, and a truncated gzip stream's own
		// io.ErrUnexpectedEOF must stay an error while a clean end stays
		// io.EOF.
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var m int
			m, err = r.Read(buf[n:])
			n += m
		}
		select {
		case a.full <- raChunk{buf: buf, n: n, err: err}:
		case <-a.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (a *readAhead) Read(p []byte) (int, error) {
	for a.off == a.cur.n {
		if a.err != nil {
			return 0, a.err
		}
		if a.cur.buf != nil {
			a.free <- a.cur.buf
		}
		c, ok := <-a.full
		if !ok {
			a.err = errReadAheadClosed
			return 0, a.err
		}
		a.cur, a.off = c, 0
		if c.err != nil {
			a.err = c.err // after this chunk's bytes
		}
	}
	n := copy(p, a.cur.buf[a.off:a.cur.n])
	a.off += n
	return n, nil
}

// Close stops the producer and waits for it: after Close, what the
// producer's reader touched may be read by the caller. A producer blocked
// in a read of the blob returns when that read does (the blob's writer
// gives up or closes the pipe on an error).
func (a *readAhead) Close() {
	a.once.Do(func() { close(a.stop) })
	<-a.exited
}
