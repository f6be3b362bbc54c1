package worker

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/unpacker"
)

// arg is the argument that makes the binary a worker (os.Args[1]). Both
// ends read it from here: Runner puts it on the command line, Main looks
// for it.
const arg = "__worker"

// op names the one operation of a request.
type op string

const (
	opUnpack op = "unpack"
	opSquash op = "squash"
	opVerify op = "verify"
	opRemove op = "remove"
)

// request is the one JSON object on the worker's stdin: an op and that
// op's own body (unpackRequest, squashRequest, verifyRequest or
// removeRequest), decoded once the op is known.
type request struct {
	Op   op              `json:"op"`
	Body json.RawMessage `json:"body"`
}

// Bounds limit what a worker unpacks; 0 = no bound (see unpacker.Options).
type Bounds struct {
	// MaxLayerBytes bounds a layer's unpacked content (and its tar).
	MaxLayerBytes int64 `json:"max_layer_bytes,omitempty"`
	// MaxImageBytes is shared by the layers of one Unpack.
	MaxImageBytes int64 `json:"max_image_bytes,omitempty"`
	// MaxEntries bounds a layer's entries, MaxRatio its
	// uncompressed/compressed ratio.
	MaxEntries int64 `json:"max_entries,omitempty"`
	MaxRatio   int64 `json:"max_ratio,omitempty"`
}

// unpackRequest unpacks layer streams, each into its own diff dir.
type unpackRequest struct {
	Layers []unpackLayer `json:"layers"`
	Bounds Bounds        `json:"bounds"`
	// Parallel bounds the layers unpacked at once. The parent feeds as
	// many streams at once, both in index order: see Runner.call for why
	// that cannot deadlock.
	Parallel int `json:"parallel"`
	// Sync makes each layer's contents durable before it is reported.
	Sync bool `json:"sync,omitempty"`
}

// unpackLayer unpacks one layer stream (fd FD) into Diff, an empty dir
// container root owns, and writes its tar-split metadata to TarSplitFD, a
// file the parent made: the worker writes layer contents, never a record or
// a dir the parent publishes.
type unpackLayer struct {
	FD         int           `json:"fd"`
	TarSplitFD int           `json:"tar_split_fd"`
	Diff       string        `json:"diff"`
	BlobDigest digest.Digest `json:"blob_digest,omitempty"`
	DiffID     digest.Digest `json:"diff_id,omitempty"`
	MediaType  string        `json:"media_type,omitempty"`
}

// squashRequest merges layers (base first) into Diff, an empty dir
// container root owns, in apply form.
type squashRequest struct {
	Diff   string     `json:"diff"`
	Layers []LayerRef `json:"layers"`
	// Bounds: only MaxLayerBytes and MaxEntries apply (the image and ratio
	// bounds were the layers' own when they were unpacked).
	Bounds Bounds `json:"bounds"`
	Sync   bool   `json:"sync,omitempty"`
}

// verifyRequest checks published layers against their tar-split metadata.
type verifyRequest struct {
	Layers []LayerRef `json:"layers"`
	// Quick compares file sizes with the tar-split metadata instead of
	// reassembling each layer (check --quick).
	Quick bool `json:"quick,omitempty"`
}

// removeRequest removes paths the parent could not (files of sub-IDs).
type removeRequest struct {
	Paths []string `json:"paths"`
}

// LayerRef names a published layer for Squash and Verify.
type LayerRef struct {
	// Dir is the layer's dir (layers/<key>): its diff/ and tar-split file.
	Dir    string        `json:"dir"`
	DiffID digest.Digest `json:"diff_id"`
	// ListOnly: the layer repeats a path with content (or whites out its
	// own content), so only its file list can be checked, not its bytes,
	// and a squash applies its overlay form (see unpacker.LayerResult).
	ListOnly bool `json:"list_only,omitempty"`
}

// line is one line of the worker's output: a layer's result as soon as it
// is done (Unpack), then the op's reply, or the request's failure, last.
type line struct {
	Layer *layerReply     `json:"layer,omitempty"`
	Done  json.RawMessage `json:"done,omitempty"`
	Error *wireError      `json:"error,omitempty"`
}

// layerReply is one unpacked layer: its result or its failure.
type layerReply struct {
	Index  int                   `json:"index"`
	Error  *wireError            `json:"error,omitempty"`
	Result *unpacker.LayerResult `json:"result,omitempty"`
}

// The replies of the ops, in the last line's Done.
type (
	unpackReply struct{} // the layers were reported one by one
	squashReply struct {
		Bytes int64 `json:"bytes"`
	}
	verifyReply struct {
		// Problems has one entry per layer: nil = sound.
		Problems []*wireError `json:"problems"`
	}
	removeReply struct {
		Errors []*wireError `json:"errors,omitempty"`
	}
)

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
