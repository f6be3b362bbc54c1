package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/internal/userns"
	"github.com/taproot-dev/taproot/unpacker"
	"golang.org/x/sys/unix"
)

// The worker runs inside a user namespace with the store's mapping, as root
// of that namespace. It reads one request as JSON on stdin, layer streams on
// the extra fds the request names, and writes one response on stdout.

type workerRequest struct {
	Unpack   []unpackJob `json:"unpack,omitempty"`
	Remove   []string    `json:"remove,omitempty"`
	Squash   *squashJob  `json:"squash,omitempty"`
	Verify   []verifyJob `json:"verify,omitempty"`
	MaxBytes int64       `json:"max_bytes,omitempty"`
	// MaxImageBytes is shared by the layers of Unpack; MaxEntries and
	// MaxRatio bound each (see unpacker.Options).
	MaxImageBytes int64 `json:"max_image_bytes,omitempty"`
	MaxEntries    int64 `json:"max_entries,omitempty"`
	MaxRatio      int64 `json:"max_ratio,omitempty"`
	// Parallel bounds the layers unpacked at once (0 = all). The parent
	// feeds at most as many streams at once, both in index order: see
	// runWorker for why that cannot deadlock.
	Parallel int  `json:"parallel,omitempty"`
	Sync     bool `json:"sync,omitempty"`
	// Quick makes Verify compare file sizes with the tar-split metadata
	// instead of reassembling each layer (check --quick).
	Quick bool `json:"quick,omitempty"`
}

// unpackJob unpacks one layer stream (fd FD) into Diff, an empty dir
// container root owns, and writes its tar-split metadata to TarSplitFD, a
// file the parent made: the worker writes layer contents, never a record or
// a dir the parent publishes.
type unpackJob struct {
	FD         int           `json:"fd"`
	TarSplitFD int           `json:"tar_split_fd"`
	Diff       string        `json:"diff"`
	BlobDigest digest.Digest `json:"blob_digest,omitempty"`
	DiffID     digest.Digest `json:"diff_id,omitempty"`
	MediaType  string        `json:"media_type,omitempty"`
}

// squashJob merges layers (base first) into Diff, an empty dir container
// root owns, in apply form.
type squashJob struct {
	Diff   string     `json:"diff"`
	Layers []layerRef `json:"layers"`
}

type layerRef struct {
	Dir    string        `json:"dir"` // layers/<key>
	DiffID digest.Digest `json:"diff_id"`
	// ListOnly: the layer repeats a path with content (or whites out its
	// own content), so only its file list can be checked, not its bytes,
	// and a squash applies its overlay form (see unpacker.LayerResult).
	ListOnly bool `json:"list_only,omitempty"`
}

type verifyJob = layerRef

type workerResponse struct {
	Unpack []unpackResult `json:"unpack,omitempty"`
	Remove []string       `json:"remove_errors,omitempty"`
	Squash *squashResult  `json:"squash,omitempty"`
	Verify []string       `json:"verify,omitempty"` // "" = ok, else the problem
}

type unpackResult struct {
	Error  string                `json:"error,omitempty"`
	Code   string                `json:"code,omitempty"` // see workerErrorCode
	Result *unpacker.LayerResult `json:"result,omitempty"`
}

// workerLine is one line of the worker's output: a layer's result as soon
// as it is done, and the whole response at the end.
type workerLine struct {
	Layer *layerProgress  `json:"layer,omitempty"`
	Final *workerResponse `json:"final,omitempty"`
}

type layerProgress struct {
	Index int `json:"index"`
	unpackResult
}

// lineEncoder writes whole JSON lines from concurrent goroutines.
type lineEncoder struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (e *lineEncoder) encode(v any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.enc.Encode(v)
}

// lineSplitter is the parent's view of the worker's stdout: it hands each
// complete line to onLine as it arrives.
type lineSplitter struct {
	buf    []byte
	onLine func([]byte)
}

func (l *lineSplitter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.onLine(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

type squashResult struct {
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
	Bytes int64  `json:"bytes"`
}

// RunWorker is the worker's main: it serves one request.
func RunWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("worker must run as root of its user namespace")
	}
	var req workerRequest
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		return fmt.Errorf("worker request: %w", err)
	}
	var resp workerResponse
	opts := unpacker.Options{SkipDevices: true, MaxBytes: req.MaxBytes, MaxEntries: req.MaxEntries,
		MaxRatio: req.MaxRatio, Image: unpacker.NewBudget(req.MaxImageBytes)}
	out := &lineEncoder{enc: json.NewEncoder(stdout)}

	if len(req.Unpack) > 0 {
		resp.Unpack = make([]unpackResult, len(req.Unpack))
		par := req.Parallel
		if par <= 0 {
			par = len(req.Unpack)
		}
		sem := make(chan struct{}, par)
		var wg sync.WaitGroup
		for i, job := range req.Unpack {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				f := os.NewFile(uintptr(job.FD), fmt.Sprintf("layer-%d", i))
				defer f.Close()
				ts := os.NewFile(uintptr(job.TarSplitFD), fmt.Sprintf("tar-split-%d", i))
				defer ts.Close()
				res, err := unpacker.UnpackLayerTo(ctx, f, job.Diff, ts, unpacker.LayerSpec{
					BlobDigest: job.BlobDigest, DiffID: job.DiffID, MediaType: job.MediaType,
				}, opts)
				if err == nil {
					err = ts.Close()
				}
				if err != nil {
					// Closing our end makes the parent's copy fail with
					// EPIPE rather than download the rest for nothing.
					resp.Unpack[i].Error, resp.Unpack[i].Code = err.Error(), workerErrorCode(err)
					out.encode(workerLine{Layer: &layerProgress{Index: i, unpackResult: resp.Unpack[i]}})
					return
				}
				if req.Sync {
					err = syncFS(job.Diff)
				}
				if err != nil {
					resp.Unpack[i].Error, resp.Unpack[i].Code = err.Error(), workerErrorCode(err)
				} else {
					resp.Unpack[i].Result = &res
				}
				// Report each layer as soon as it is done, so the parent
				// can publish it and let other creates waiting on it go on.
				out.encode(workerLine{Layer: &layerProgress{Index: i, unpackResult: resp.Unpack[i]}})
			}()
		}
		wg.Wait()
	}
	for _, p := range req.Remove {
		if err := os.RemoveAll(p); err != nil {
			resp.Remove = append(resp.Remove, err.Error())
		}
	}
	if req.Squash != nil {
		n, err := squash(ctx, req.Squash, opts)
		if err == nil && req.Sync {
			// The squashed layer is published by rename like any other:
			// its contents must be on disk first.
			err = syncFS(req.Squash.Diff)
		}
		resp.Squash = &squashResult{Bytes: n}
		if err != nil {
			resp.Squash.Error, resp.Squash.Code = err.Error(), workerErrorCode(err)
		}
	}
	for _, v := range req.Verify {
		msg := ""
		verify := verifyLayer
		if req.Quick {
			verify = quickVerifyLayer
		}
		if err := verify(ctx, v); err != nil {
			msg = err.Error()
		}
		resp.Verify = append(resp.Verify, msg)
	}
	return out.encode(workerLine{Final: &resp})
}

func squash(ctx context.Context, job *squashJob, opts unpacker.Options) (n int64, err error) {
	diff := job.Diff
	opts.Whiteouts = unpacker.ApplyWhiteouts
	// Squash re-reads layers the store accepted: the image and ratio
	// bounds were theirs when they were unpacked.
	opts.Image, opts.MaxRatio = nil, 0
	for _, l := range job.Layers {
		ts, err := os.Open(filepath.Join(l.Dir, "tar-split.json.gz"))
		if err != nil {
			return 0, err
		}
		pr, pw := io.Pipe()
		go func() {
			// A layer whose tar cannot be rebuilt (ListOnly) is applied
			// from its overlay form instead.
			if l.ListOnly {
				pw.CloseWithError(unpacker.DiffTar(ctx, filepath.Join(l.Dir, "diff"), pw))
				return
			}
			pw.CloseWithError(unpacker.Reassemble(ctx, filepath.Join(l.Dir, "diff"), ts, pw))
		}()
		res, err := unpacker.Unpack(ctx, pr, diff, opts)
		pr.CloseWithError(io.ErrClosedPipe)
		ts.Close()
		if err != nil {
			return 0, fmt.Errorf("squash layer %s: %w", l.DiffID, err)
		}
		n += res.Bytes
	}
	return n, nil
}

func verifyLayer(ctx context.Context, l layerRef) error {
	ts, err := os.Open(filepath.Join(l.Dir, "tar-split.json.gz"))
	if err != nil {
		return err
	}
	defer ts.Close()
	if !l.ListOnly {
		h := l.DiffID.Algorithm().Hash()
		if err := unpacker.Reassemble(ctx, filepath.Join(l.Dir, "diff"), ts, h); err != nil {
			return fmt.Errorf("reassemble: %w", err)
		}
		if got := digest.NewDigest(l.DiffID.Algorithm(), h); got != l.DiffID {
			return fmt.Errorf("content digest %s, want %s: files were modified", got, l.DiffID)
		}
		if _, err := ts.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	extra, err := extraFiles(filepath.Join(l.Dir, "diff"), ts)
	if err != nil {
		return fmt.Errorf("list files: %w", err)
	}
	if len(extra) > 0 {
		return fmt.Errorf("%d files not in the layer, e.g. %s", len(extra), extra[0])
	}
	return nil
}

// runWorker starts a worker in the store's user namespace, feeds it streams
// on its extra fds, hands it the tar-split files (one per unpack job, after
// the streams' fds), and returns its response.
// onLayer, if not nil, is called with each layer's result as soon as the
// worker reports it, from one goroutine, before runWorker returns.
func (s *Store) runWorker(ctx context.Context, req workerRequest, streams []func() (io.ReadCloser, error), tarSplits []*os.File, onLayer func(int, unpackResult)) (resp workerResponse, err error) {
	if len(tarSplits) != len(req.Unpack) || len(streams) != len(req.Unpack) {
		return resp, fmt.Errorf("worker request: %d unpack jobs, %d streams, %d tar-split files", len(req.Unpack), len(streams), len(tarSplits))
	}
	var readEnds, writeEnds []*os.File
	defer func() {
		for _, f := range append(readEnds, writeEnds...) {
			f.Close()
		}
	}()
	for range streams {
		r, w, err := os.Pipe()
		if err != nil {
			return resp, err
		}
		if len(streams) <= maxGrownPipes {
			growPipe(w)
		}
		readEnds, writeEnds = append(readEnds, r), append(writeEnds, w)
	}
	for i := range req.Unpack {
		req.Unpack[i].FD = userns.FirstExtraFD + i
		req.Unpack[i].TarSplitFD = userns.FirstExtraFD + len(streams) + i
	}
	req.MaxBytes = s.opts.MaxLayerBytes
	req.MaxImageBytes = s.opts.MaxImageBytes
	req.MaxEntries = s.opts.MaxEntries
	req.MaxRatio = s.opts.MaxRatio
	req.Sync = s.opts.Sync
	req.Parallel = s.opts.ParallelLayers

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, err := userns.Command(ctx, s.opts.WorkerExe, s.opts.WorkerArgs, userns.Maps{
		UIDs: s.meta.UIDMappings, GIDs: s.meta.GIDMappings,
		NewUIDMap: s.opts.NewUIDMap, NewGIDMap: s.opts.NewGIDMap,
	}, append(slices.Clip(readEnds), tarSplits...))
	if err != nil {
		return resp, err
	}
	reqData, err := json.Marshal(&req)
	if err != nil {
		return resp, err
	}
	var (
		stderr   strings.Builder
		final    *workerResponse
		badLines []string
	)
	ec := cmd.Exec()
	ec.Stdin = strings.NewReader(string(reqData))
	// os/exec copies the worker's stdout into this writer from one
	// goroutine and Wait waits for it: every callback runs before Wait returns.
	ec.Stdout = &lineSplitter{onLine: func(line []byte) {
		var l workerLine
		switch err := json.Unmarshal(line, &l); {
		case err != nil:
			badLines = append(badLines, string(line))
		case l.Layer != nil:
			if onLayer != nil && l.Layer.Index >= 0 && l.Layer.Index < len(req.Unpack) {
				onLayer(l.Layer.Index, l.Layer.unpackResult)
			}
		case l.Final != nil:
			final = l.Final
		}
	}}
	ec.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return resp, err
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
		sem     = make(chan struct{}, s.opts.ParallelLayers)
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
			return resp, fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return resp, err
	}
	if waitErr != nil {
		return resp, fmt.Errorf("user-namespace worker: %w: %s", waitErr, strings.TrimSpace(stderr.String()))
	}
	if final == nil {
		return resp, fmt.Errorf("user-namespace worker gave no response: %s %s", strings.Join(badLines, " "), strings.TrimSpace(stderr.String()))
	}
	resp = *final
	if stderr.Len() > 0 {
		s.log.Debug("worker stderr", "output", strings.TrimSpace(stderr.String()))
	}
	return resp, nil
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
