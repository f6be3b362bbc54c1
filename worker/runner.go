package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/internal/userns"
	"github.com/taproot-dev/taproot/unpacker"
	"golang.org/x/sys/unix"
)

// Runner starts workers: the parent side of the protocol. Each method runs
// one request in a new worker process and waits for it.
type Runner struct {
	// Exe is the binary to run as the worker; "" = /proc/self/exe, this
	// binary, whose main must call Main first. /proc/self/exe resolves
	// without searching the binary's dirs, which the namespace's root may
	// not be able to enter.
	Exe string
	// UIDs and GIDs are the namespace's mappings: the store's.
	UIDs, GIDs []idmap.Mapping
	// NewUIDMap and NewGIDMap are the setuid helpers' paths ("" = PATH).
	NewUIDMap, NewGIDMap string
	// Bounds limit what Unpack (and, for a layer's bytes and entries,
	// Squash) writes.
	Bounds Bounds
	// Parallel bounds the layers one Unpack downloads and unpacks at once
	// (<= 0: all of them).
	Parallel int
	// Sync makes Unpack and Squash flush what they wrote (syncfs) before
	// they report it.
	Sync bool
	// Log, if set, gets the worker's stderr at debug level.
	Log *slog.Logger
}

// UnpackJob is one layer for Unpack.
type UnpackJob struct {
	// Open opens the layer's blob as MediaType says it is compressed; the
	// parent copies it into the worker's fd.
	Open func() (io.ReadCloser, error)
	// TarSplit is where the worker writes the layer's tar-split metadata:
	// a file the parent made and keeps (the worker writes no record).
	TarSplit *os.File
	// Diff is an empty dir container root owns, that the layer fills.
	Diff string
	// BlobDigest and DiffID are checked when set; MediaType says how the
	// blob is compressed.
	BlobDigest, DiffID digest.Digest
	MediaType          string
}

// Unpack unpacks each job's stream into its Diff in one worker, Parallel
// layers at once, in index order. done is called once for each layer the
// worker reports, as soon as it does, from one goroutine, before Unpack
// returns: with the layer's result, or its failure (which errors.Is
// matches to its class). Unpack returns nil only if done was called for
// every job; its error is the run's (a stream that could not be read, the
// worker that failed), not a layer's.
func (r *Runner) Unpack(ctx context.Context, jobs []UnpackJob, done func(i int, res *unpacker.LayerResult, err error)) error {
	if done == nil {
		done = func(int, *unpacker.LayerResult, error) {}
	}
	n := len(jobs)
	par := r.Parallel
	if par <= 0 || par > n {
		par = n
	}
	req := unpackRequest{Bounds: r.Bounds, Parallel: par, Sync: r.Sync}
	streams := make([]func() (io.ReadCloser, error), n)
	tarSplits := make([]*os.File, n)
	for i, j := range jobs {
		if j.Open == nil || j.TarSplit == nil {
			return fmt.Errorf("unpack job %d: no stream or no tar-split file", i)
		}
		streams[i], tarSplits[i] = j.Open, j.TarSplit
		// Layer streams are the first extra fds, tar-split files after.
		req.Layers = append(req.Layers, unpackLayer{
			FD: userns.FirstExtraFD + i, TarSplitFD: userns.FirstExtraFD + n + i,
			Diff: j.Diff, BlobDigest: j.BlobDigest, DiffID: j.DiffID, MediaType: j.MediaType,
		})
	}
	reported := make([]bool, n)
	var bad []string
	onLayer := func(l layerReply) {
		if l.Index < 0 || l.Index >= n || reported[l.Index] {
			bad = append(bad, fmt.Sprintf("layer %d reported twice or out of range", l.Index))
			return
		}
		reported[l.Index] = true
		err := l.Error.err()
		if err == nil && l.Result == nil {
			err = errors.New("worker reported the layer without a result")
		}
		done(l.Index, l.Result, err)
	}
	var reply unpackReply
	if err := r.call(ctx, opUnpack, req, feed{streams, par}, tarSplits, onLayer, &reply); err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("user-namespace worker: %s", strings.Join(bad, "; "))
	}
	if i := slices.Index(reported, false); i >= 0 {
		return fmt.Errorf("user-namespace worker gave no result for layer %d of %d", i+1, n)
	}
	return nil
}

// Squash applies layers (base first) into diff, an empty dir container
// root owns, in apply form (whiteouts applied, not kept), and returns the
// bytes written.
func (r *Runner) Squash(ctx context.Context, diff string, layers []LayerRef) (int64, error) {
	req := squashRequest{Diff: diff, Layers: layers, Sync: r.Sync,
		Bounds: Bounds{MaxLayerBytes: r.Bounds.MaxLayerBytes, MaxEntries: r.Bounds.MaxEntries}}
	var reply squashReply
	err := r.call(ctx, opSquash, req, feed{}, nil, nil, &reply)
	return reply.Bytes, err
}

// Verify checks each layer against its tar-split metadata: the
// reassembled tar must hash to the diffID (ListOnly layers: only the file
// list is checked) or, quick, each file must have its recorded size, and
// the dir may hold no file the tar does not name. problems[i] is nil if
// layers[i] is sound; err is the run's.
func (r *Runner) Verify(ctx context.Context, layers []LayerRef, quick bool) (problems []error, err error) {
	var reply verifyReply
	if err := r.call(ctx, opVerify, verifyRequest{Layers: layers, Quick: quick}, feed{}, nil, nil, &reply); err != nil {
		return nil, err
	}
	if len(reply.Problems) != len(layers) {
		return nil, fmt.Errorf("user-namespace worker verified %d of %d layers", len(reply.Problems), len(layers))
	}
	problems = make([]error, len(layers))
	for i, p := range reply.Problems {
		problems[i] = p.err()
	}
	return problems, nil
}

// Remove removes paths (and all they hold) as container root.
func (r *Runner) Remove(ctx context.Context, paths []string) error {
	var reply removeReply
	if err := r.call(ctx, opRemove, removeRequest{Paths: paths}, feed{}, nil, nil, &reply); err != nil {
		return err
	}
	if len(reply.Errors) == 0 {
		return nil
	}
	// One line (errors.Join would print one per path), every class kept.
	all := &remoteError{}
	var msgs []string
	for _, e := range reply.Errors {
		msgs = append(msgs, e.Msg)
		all.wraps = append(all.wraps, e.err())
	}
	all.msg = strings.Join(msgs, "; ")
	return all
}

// feed is what call copies into the worker: streams, at most par at once
// (the worker's own Parallel, so both sides have the same layers in flight).
type feed struct {
	streams []func() (io.ReadCloser, error)
	par     int
}

// call runs one request in a new worker in the user namespace: the feed's
// streams are copied into pipes at the worker's first extra fds, files
// follow them. onLayer, if not nil, gets each layer line as it arrives,
// from one goroutine, before call returns. The last line's reply is decoded
// into reply; a failure it reports is returned, rebuilt with its class.
func (r *Runner) call(ctx context.Context, o op, body any, in feed, files []*os.File, onLayer func(layerReply), reply any) error {
	streams := in.streams
	var readEnds, writeEnds []*os.File
	defer func() {
		for _, f := range append(readEnds, writeEnds...) {
			f.Close()
		}
	}()
	for range streams {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		if len(streams) <= maxGrownPipes {
			growPipe(pw)
		}
		readEnds, writeEnds = append(readEnds, pr), append(writeEnds, pw)
	}
	rawBody, err := json.Marshal(body)
	if err != nil {
		return err
	}
	reqData, err := json.Marshal(request{Op: o, Body: rawBody})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exe := r.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	cmd, err := userns.Command(ctx, exe, []string{arg}, userns.Maps{
		UIDs: r.UIDs, GIDs: r.GIDs, NewUIDMap: r.NewUIDMap, NewGIDMap: r.NewGIDMap,
	}, append(slices.Clip(readEnds), files...))
	if err != nil {
		return err
	}
	var (
		stderr   strings.Builder
		last     *line
		badLines []string
	)
	ec := cmd.Exec()
	ec.Stdin = strings.NewReader(string(reqData))
	// os/exec copies the worker's stdout into this writer from one
	// goroutine and Wait waits for it: every callback runs before Wait
	// returns.
	ec.Stdout = &lineSplitter{onLine: func(b []byte) {
		var l line
		switch err := json.Unmarshal(b, &l); {
		case err != nil:
			badLines = append(badLines, string(b))
		case l.Layer != nil:
			if onLayer != nil {
				onLayer(*l.Layer)
			}
		case l.Done != nil || l.Error != nil:
			last = &l
		}
	}}
	ec.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	for _, f := range readEnds {
		f.Close()
	}
	readEnds = nil

	// Feed the streams, a bounded number at a time, starting them in index
	// order. The worker unpacks as many at once, also in index order, so the
	// layers in flight are the same few on both sides: the worker's memory
	// stays bounded however many layers the image has (small layers fit
	// whole in their pipes, so the worker would otherwise decompress all of
	// them at once), and neither side can wait on a layer the other has not
	// started: a feed blocked on a full pipe is one the worker has started.
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		feedErr = make([]error, len(streams))
		sem     = make(chan struct{}, max(in.par, 1))
	)
	for i, open := range streams {
		w := writeEnds[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for _, w := range writeEnds[i:] {
				w.Close()
			}
			writeEnds = nil
		}
		if writeEnds == nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			defer func() { <-sem }()
			rc, err := open()
			if err == nil {
				_, err = io.Copy(w, rc)
				rc.Close()
			}
			// EPIPE: the worker gave up on this layer and says why.
			if err != nil && !errors.Is(err, syscall.EPIPE) {
				mu.Lock()
				feedErr[i] = err
				mu.Unlock()
			}
		}()
	}
	writeEnds = nil
	wg.Wait()
	waitErr := cmd.Wait()
	// A failed download explains a worker's "unexpected EOF" better.
	for i, err := range feedErr {
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	errText := strings.TrimSpace(stderr.String())
	if errText != "" && r.Log != nil {
		r.Log.Debug("worker stderr", "output", errText)
	}
	// The worker's own account of a failed request says more than its
	// exit status (and keeps the failure's class).
	if last != nil && last.Error != nil {
		return last.Error.err()
	}
	if waitErr != nil {
		return fmt.Errorf("user-namespace worker: %w: %s", waitErr, errText)
	}
	if last == nil {
		return fmt.Errorf("user-namespace worker gave no response: %s %s", strings.Join(badLines, " "), errText)
	}
	if err := json.Unmarshal(last.Done, reply); err != nil {
		return fmt.Errorf("user-namespace worker %s reply: %w", o, err)
	}
	return nil
}

// layerPipeSize is the capacity asked for each layer pipe (the unprivileged
// maximum is /proc/sys/fs/pipe-max-size, 1 MiB by default). The default
// 64 KiB makes the feeder and the worker take turns every few dozen KiB; a
// larger pipe lets the download run ahead while the worker decompresses.
// Only when there are few streams: an unprivileged user's pipes share
// /proc/sys/fs/pipe-user-pages-soft (64 MiB), past which the kernel gives new
// pipes a single page, and an image of 150 layers opens 150 pipes at once.
const (
	layerPipeSize = 1 << 20
	maxGrownPipes = 16
)

// growPipe enlarges a pipe, best effort (through SyscallConn, which keeps
// the file in the runtime poller, unlike Fd).
func growPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.FcntlInt(fd, unix.F_SETPIPE_SZ, layerPipeSize)
	})
}
