package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/taproot-dev/taproot/internal/userns"
	"github.com/taproot-dev/taproot/unpacker"
	"golang.org/x/sys/unix"
)

// Main is the worker's entry point. Call it first thing in main, and in the
// TestMain of any package whose tests run a worker (the test binary is then
// the worker). If this process was started as a worker (by Runner), Main
// serves its one request and exits; otherwise it returns at once and does
// nothing.
func Main() {
	if len(os.Args) < 2 || os.Args[1] != arg {
		return
	}
	// A rootless worker waits here for its ID maps, then re-execs itself
	// (with the same arguments, so it comes back here) to gain its
	// capabilities in the namespace.
	if err := userns.MaybeReexec(); err != nil {
		fmt.Fprintf(os.Stderr, "taproot worker: %s\n", err)
		os.Exit(1)
	}
	// An interrupt (a terminal's ^C reaches the whole process group)
	// stops the work at the next check, and the failure is still reported.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := serve(ctx, os.Stdin, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "taproot worker: %s\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serve reads one request from stdin and answers it on stdout. A request
// that failed as a whole is answered with an error line (its class kept)
// and returned, so that the worker also exits non-zero; one layer's
// failure is that layer's line, not the request's.
func serve(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	out := &lineEncoder{enc: json.NewEncoder(stdout)}
	reply, err := handle(ctx, stdin, out)
	var done []byte
	if err == nil {
		done, err = json.Marshal(reply)
	}
	if err != nil {
		return errors.Join(err, out.encode(line{Error: toWire(err)}))
	}
	return out.encode(line{Done: done})
}

// handle decodes the request and runs its op.
func handle(ctx context.Context, stdin io.Reader, out *lineEncoder) (any, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("worker must run as root of its user namespace")
	}
	var req request
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		return nil, fmt.Errorf("worker request: %w", err)
	}
	switch req.Op {
	case opUnpack:
		var body unpackRequest
		if err := decodeBody(req, &body); err != nil {
			return nil, err
		}
		return unpackReply{}, unpackLayers(ctx, body, out)
	case opSquash:
		var body squashRequest
		if err := decodeBody(req, &body); err != nil {
			return nil, err
		}
		n, err := squash(ctx, body)
		return squashReply{Bytes: n}, err
	case opVerify:
		var body verifyRequest
		if err := decodeBody(req, &body); err != nil {
			return nil, err
		}
		return verify(ctx, body), nil
	case opRemove:
		var body removeRequest
		if err := decodeBody(req, &body); err != nil {
			return nil, err
		}
		return remove(body), nil
	}
	return nil, fmt.Errorf("worker request: unknown op %q", req.Op)
}

// decodeBody decodes the op's body strictly: both ends are this binary, so
// a field one does not know is a bug to see at once.
func decodeBody(req request, body any) error {
	dec := json.NewDecoder(bytes.NewReader(req.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(body); err != nil {
		return fmt.Errorf("worker %s request: %w", req.Op, err)
	}
	return nil
}

// unpackLayers unpacks the request's layers, Parallel at once in index
// order, and reports each on its own line as soon as it is done.
func unpackLayers(ctx context.Context, req unpackRequest, out *lineEncoder) error {
	opts := unpacker.Options{SkipDevices: true, MaxBytes: req.Bounds.MaxLayerBytes, MaxEntries: req.Bounds.MaxEntries,
		MaxRatio: req.Bounds.MaxRatio, Image: unpacker.NewBudget(req.Bounds.MaxImageBytes)}
	par := req.Parallel
	if par <= 0 {
		par = len(req.Layers)
	}
	sem := make(chan struct{}, max(par, 1))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		encErrs []error
	)
	for i, l := range req.Layers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := unpackOne(ctx, i, l, opts, req.Sync)
			// Report each layer as soon as it is done, so the parent can
			// publish it and let other creates waiting on it go on.
			reply := layerReply{Index: i, Error: toWire(err)}
			if err == nil {
				reply.Result = &res
			}
			if err := out.encode(line{Layer: &reply}); err != nil {
				mu.Lock()
				encErrs = append(encErrs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// A layer's own failure is in its line; only a line that could not
	// be written fails the request.
	return errors.Join(encErrs...)
}

// unpackOne unpacks layer i from its fd into its diff dir.
func unpackOne(ctx context.Context, i int, l unpackLayer, opts unpacker.Options, sync bool) (unpacker.LayerResult, error) {
	f := os.NewFile(uintptr(l.FD), fmt.Sprintf("layer-%d", i))
	// Closing our end when we give up makes the parent's copy fail with
	// EPIPE rather than download the rest for nothing.
	defer f.Close()
	ts := os.NewFile(uintptr(l.TarSplitFD), fmt.Sprintf("tar-split-%d", i))
	defer ts.Close()
	res, err := unpacker.UnpackLayerTo(ctx, f, l.Diff, ts, unpacker.LayerSpec{
		BlobDigest: l.BlobDigest, DiffID: l.DiffID, MediaType: l.MediaType,
	}, opts)
	if err == nil {
		err = ts.Close()
	}
	if err == nil && sync {
		err = syncFS(l.Diff)
	}
	return res, err
}

// squash applies the layers, base first, into the request's diff dir and
// returns the bytes written.
func squash(ctx context.Context, req squashRequest) (n int64, err error) {
	// Squash re-reads layers the store accepted: the image and ratio
	// bounds were theirs when they were unpacked.
	opts := unpacker.Options{SkipDevices: true, MaxBytes: req.Bounds.MaxLayerBytes, MaxEntries: req.Bounds.MaxEntries,
		Whiteouts: unpacker.ApplyWhiteouts}
	for _, l := range req.Layers {
		m, err := squashLayer(ctx, req.Diff, l, opts)
		if err != nil {
			return 0, fmt.Errorf("squash layer %s: %w", l.DiffID, err)
		}
		n += m
	}
	if req.Sync {
		// The squashed layer is published by rename like any other: its
		// contents must be on disk first.
		if err := syncFS(req.Diff); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// squashLayer applies one layer onto diff.
func squashLayer(ctx context.Context, diff string, l LayerRef, opts unpacker.Options) (int64, error) {
	ts, err := os.Open(filepath.Join(l.Dir, unpacker.TarSplitName))
	if err != nil {
		return 0, err
	}
	defer ts.Close()
	pr, pw := io.Pipe()
	go func() {
		// A layer whose tar cannot be rebuilt (ListOnly) is applied from
		// its overlay form instead.
		if l.ListOnly {
			pw.CloseWithError(unpacker.DiffTar(ctx, filepath.Join(l.Dir, "diff"), pw))
			return
		}
		pw.CloseWithError(unpacker.Reassemble(ctx, filepath.Join(l.Dir, "diff"), ts, pw))
	}()
	res, err := unpacker.Unpack(ctx, pr, diff, opts)
	// Stops the producer if Unpack gave up before the end.
	pr.CloseWithError(io.ErrClosedPipe)
	return res.Bytes, err
}

// verify checks each layer; a layer's problem is its reply entry.
func verify(ctx context.Context, req verifyRequest) verifyReply {
	rep := verifyReply{Problems: make([]*wireError, len(req.Layers))}
	for i, l := range req.Layers {
		rep.Problems[i] = toWire(checkLayer(ctx, l, req.Quick))
	}
	return rep
}

// remove removes each path; failures are the reply's.
func remove(req removeRequest) removeReply {
	var rep removeReply
	for _, p := range req.Paths {
		if err := os.RemoveAll(p); err != nil {
			rep.Errors = append(rep.Errors, toWire(err))
		}
	}
	return rep
}

// syncFS flushes the filesystem holding path: one syncfs instead of an
// fsync per file.
func syncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: path, Err: err}
	}
	return nil
}
