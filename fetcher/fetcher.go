package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containers/image/v5/image"
	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Defaults for Options fields left zero.
const (
	DefaultTimeout    = 60 * time.Second
	DefaultRetries    = 3
	DefaultRetryDelay = 250 * time.Millisecond
	maxRetryDelay     = 10 * time.Second
)

// Options configure a Fetcher. The zero value is usable.
type Options struct {
	// InsecureRegistries lists registries (host[:port], exactly as in the
	// reference, e.g. "127.0.0.1:5000") that may be contacted over plain
	// HTTP or over HTTPS without certificate verification. An entry may
	// carry an http:// or https:// prefix, which is ignored.
	InsecureRegistries []string
	// Username and Password are sent as basic credentials to the registry of
	// a docker reference. When Username is "", credentials come from the
	// user's auth.json / credential helpers as containers/image finds them.
	Username, Password string
	// "" means the containers/image default (~/.config/containers/…,
	// /etc/containers/…).
	RegistriesConfPath, AuthFilePath, PolicyPath string
	// OS, Arch and Variant pick the image from a manifest list or OCI index;
	// "" means this machine (runtime.GOOS, runtime.GOARCH, detected variant).
	OS, Arch, Variant string
	// Timeout bounds each registry operation: opening the image (ping, auth,
	// manifest, config), getting a blob's response, and any single stall
	// while reading a blob. 0 means DefaultTimeout. It does not bound a
	// whole layer download that keeps making progress.
	Timeout time.Duration
	// Retries is how many times a registry operation that failed in a
	// transient way (5xx, 429, connection refused/reset) is tried again,
	// with exponential backoff starting at RetryDelay. 0 means
	// DefaultRetries; a negative value means no retries. Blob bodies that
	// break mid-stream are resumed by containers/image itself.
	Retries    int
	RetryDelay time.Duration // 0 means DefaultRetryDelay
	// UserAgent is sent to registries ("" = containers/image default).
	UserAgent string
	// TempDir holds big temporary files (oci-archive extraction, compressed
	// docker-archive); "" means os.TempDir().
	TempDir string
	// Logger receives debug/warning messages; nil discards them.
	Logger *slog.Logger
	// Cache, if set, keeps the manifests and configs of docker references
	// by digest (see Cache); nil means every Open asks the registry.
	Cache Cache
}

// Fetcher opens images. It holds no global state; it is safe for concurrent use.
type Fetcher struct {
	opts       Options
	timeout    time.Duration
	retries    int
	retryDelay time.Duration
	log        *slog.Logger
	// privileged: running as root, local sources and the paths of oci:,
	// oci-archive: and docker-archive: references must pass the rules of
	// localsafe.go (a path only root can change).
	privileged bool
}

// New returns a Fetcher with the given options.
func New(opts Options) *Fetcher {
	f := &Fetcher{opts: opts, timeout: opts.Timeout, retries: opts.Retries, retryDelay: opts.RetryDelay, log: opts.Logger,
		privileged: os.Geteuid() == 0}
	if f.timeout <= 0 {
		f.timeout = DefaultTimeout
	}
	if f.retries == 0 {
		f.retries = DefaultRetries
	}
	if f.retries < 0 {
		f.retries = 0
	}
	if f.retryDelay <= 0 {
		f.retryDelay = DefaultRetryDelay
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f
}

// Image describes an opened image.
type Image struct {
	Ref Reference
	// ManifestDigest is the digest of the single-platform manifest used
	// (for a manifest list / OCI index: of the chosen instance); "" for
	// local dirs and tarballs.
	ManifestDigest digest.Digest
	// ListDigest is the digest of the manifest list / OCI index the
	// reference named, "" when it named a single manifest.
	ListDigest digest.Digest
	// ManifestMIMEType is the media type of the single-platform manifest.
	ManifestMIMEType string
	// Config is the image config in OCI form (docker configs converted).
	// For local dirs/tarballs it is empty but for OS, Architecture and
	// RootFS.Type.
	Config imgspecv1.Image
	// Layers, base first.
	Layers []Layer
}

// Layer is one layer blob of an Image.
type Layer struct {
	// BlobDigest is the digest of the blob as served (usually compressed);
	// "" for local dirs/tarballs.
	BlobDigest digest.Digest
	// DiffID is the digest of the uncompressed tar, from the config's
	// rootfs.diff_ids; "" when unknown (local dirs/tarballs, or configs
	// whose diff_ids do not match the layer count).
	DiffID digest.Digest
	// MediaType as given by the manifest. Callers should still detect the
	// compression from the stream's first bytes: docker-archive blobs are
	// served uncompressed whatever the type says.
	MediaType string
	// Size of the blob in bytes, -1 if unknown.
	Size int64
}

// Source is an opened image whose layers can be read. Close it when done.
type Source struct {
	f     *Fetcher
	img   Image
	src   types.ImageSource // nil for local kinds
	infos []types.BlobInfo  // parallel to img.Layers, for src

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// Image returns what Open found. The Layers slice is a copy.
func (s *Source) Image() Image {
	img := s.img
	img.Layers = append([]Layer(nil), s.img.Layers...)
	return img
}

// Close releases the source (connections, extracted temp files).
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.src != nil {
			s.closeErr = s.src.Close()
		}
	})
	return s.closeErr
}

// Open resolves ref, checks it against the signature policy, reads the
// manifest (choosing this platform, or Options.OS/Arch/Variant, from a list
// or index) and the config. Local dirs and tarballs are opened as OpenLayer
// will open them; the policy does not apply to them. As root, a local source
// or the path of an oci:, oci-archive: or docker-archive: reference that
// another user can change is refused with ErrUnsafeSource.
func (f *Fetcher) Open(ctx context.Context, ref Reference) (*Source, error) {
	switch ref.Kind {
	case LocalDir, LocalTarball:
		return f.openLocal(ref)
	case Docker, OCILayout, OCIArchive, DockerArchive:
		if ref.imgRef == nil {
			return nil, fmt.Errorf("fetch %s: %w: reference was not made by ParseRef", ref, ErrBadReference)
		}
		if ref.Kind != Docker && f.privileged {
			if err := checkImagePath(ref); err != nil {
				return nil, f.describe("fetch", ref, err)
			}
		}
	default:
		return nil, fmt.Errorf("fetch %s: %w: unknown kind %v", ref, ErrBadReference, ref.Kind)
	}

	policy, err := f.loadPolicy()
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", ref, err)
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: signature policy: %w", ref, err)
	}
	defer pc.Destroy()

	sys := f.systemContext(ref)
	var s *Source
	op := func(ctx context.Context) error {
		var err error
		s, err = f.openOnce(ctx, sys, pc, ref)
		return err
	}
	if ref.Kind == Docker {
		err = f.retry(ctx, ref, "open", op)
	} else {
		err = op(ctx)
	}
	if err != nil {
		return nil, f.describe("fetch", ref, err)
	}
	return s, nil
}

// openOnce is one attempt at Open for a containers/image reference.
func (f *Fetcher) openOnce(ctx context.Context, sys *types.SystemContext, pc *signature.PolicyContext, ref Reference) (s *Source, err error) {
	actx := ctx
	if ref.Kind == Docker {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
		defer func() {
			if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
				err = &timeoutError{what: "registry " + ref.Registry, after: f.timeout, err: err}
			}
		}()
	}

	var src types.ImageSource
	var cs *cachedSource
	if ref.Kind == Docker && f.opts.Cache != nil {
		if cs, err = f.newCachedSource(actx, sys, ref); err != nil {
			return nil, err
		}
		src = cs
	} else {
		src, err = ref.imgRef.NewImageSource(actx, sys)
		if err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			src.Close()
		}
	}()

	top := image.UnparsedInstance(src, nil)
	topBlob, topMIME, err := top.Manifest(actx)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	allowed, err := pc.IsRunningImageAllowed(actx, top)
	if !allowed || err != nil {
		if err == nil {
			err = errors.New("not allowed")
		}
		return nil, fmt.Errorf("%w: %w", ErrPolicyDenied, err)
	}

	unparsed := top
	var listDigest digest.Digest
	if manifest.MIMETypeIsMultiImage(topMIME) {
		list, err := manifest.ListFromBlob(topBlob, topMIME)
		if err != nil {
			return nil, fmt.Errorf("parsing manifest list: %w", err)
		}
		instance, err := list.ChooseInstance(sys)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		listDigest, err = manifest.Digest(topBlob)
		if err != nil {
			return nil, err
		}
		f.log.Debug("picked image from manifest list", "ref", ref.String(), "list", listDigest, "instance", instance, "platform", f.platformString())
		unparsed = image.UnparsedInstance(src, &instance)
	}

	img, err := image.FromUnparsedImage(actx, sys, unparsed)
	if err != nil {
		return nil, fmt.Errorf("reading image: %w", err)
	}
	mBlob, mMIME, err := img.Manifest(actx)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	mDigest, err := manifest.Digest(mBlob)
	if err != nil {
		return nil, err
	}
	cfg, err := img.OCIConfig(actx)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	infos := img.LayerInfos()
	if cs != nil {
		// Each is kept under its own hash, so a later lookup by digest
		// gets only bytes that hash to it (containers/image checked the
		// instance against the list and the config against the manifest).
		cs.put(topBlob)
		if listDigest != "" {
			cs.put(mBlob)
		}
		if raw, err := img.ConfigBlob(actx); err == nil {
			cs.put(raw)
		}
	}

	result := Image{
		Ref:              ref,
		ManifestDigest:   mDigest,
		ListDigest:       listDigest,
		ManifestMIMEType: mMIME,
		Config:           *cfg,
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(infos) {
		f.log.Warn("config diff_ids do not match the layers; diffIDs unknown", "ref", ref.String(), "layers", len(infos), "diff_ids", len(diffIDs))
		diffIDs = nil
	}
	for i, info := range infos {
		l := Layer{BlobDigest: info.Digest, MediaType: info.MediaType, Size: info.Size}
		if diffIDs != nil {
			l.DiffID = diffIDs[i]
		}
		result.Layers = append(result.Layers, l)
	}
	if listDigest == "" {
		f.checkPlatform(ref, cfg)
	}
	return &Source{f: f, img: result, src: src, infos: infos}, nil
}

// OpenLayer streams blob i (0 = base layer) as stored: usually compressed.
// The caller verifies the digest and decompresses. It is safe to call
// concurrently with different i. For a LocalDir it streams an uncompressed
// tar of the directory built on the fly; for a LocalTarball, the file.
func (s *Source) OpenLayer(ctx context.Context, i int) (io.ReadCloser, error) {
	ref := s.img.Ref
	if i < 0 || i >= len(s.img.Layers) {
		return nil, fmt.Errorf("fetch %s: layer %d: no such layer (image has %d)", ref, i, len(s.img.Layers))
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("fetch %s: layer %d: source is closed", ref, i)
	}
	switch ref.Kind {
	case LocalDir:
		fd, err := openSourceDir(ref.Path, s.f.privileged)
		if err != nil {
			return nil, s.f.describe("fetch", ref, err)
		}
		return openDirTar(ctx, fd, ref.Path, s.f.log), nil
	case LocalTarball:
		fh, err := openSourceFile(ref.Path, s.f.privileged)
		if err != nil {
			return nil, s.f.describe("fetch", ref, err)
		}
		return fh, nil
	}
	info := s.infos[i]
	what := fmt.Sprintf("layer %d (%s)", i, info.Digest)
	if ref.Kind != Docker {
		rc, _, err := s.src.GetBlob(ctx, info, none.NoCache)
		if err != nil {
			return nil, s.f.describe("fetch", ref, fmt.Errorf("%s: %w", what, err))
		}
		return rc, nil
	}

	var rc io.ReadCloser
	err := s.f.retry(ctx, ref, what, func(ctx context.Context) error {
		var err error
		rc, err = s.getBlobOnce(ctx, info)
		return err
	})
	if err != nil {
		return nil, s.f.describe("fetch", ref, fmt.Errorf("%s: %w", what, err))
	}
	return rc, nil
}

// getBlobOnce asks the registry for one blob, giving up if the response
// does not start within the timeout, and returns a body that fails if a
// single read stalls longer than the timeout.
func (s *Source) getBlobOnce(ctx context.Context, info types.BlobInfo) (io.ReadCloser, error) {
	timeout := s.f.timeout
	bctx, cancel := context.WithCancel(ctx)
	var fired atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		fired.Store(true)
		cancel()
	})
	rc, _, err := s.src.GetBlob(bctx, info, none.NoCache)
	timer.Stop()
	if err != nil {
		cancel()
		if fired.Load() && ctx.Err() == nil {
			return nil, &timeoutError{what: "registry " + s.img.Ref.Registry, after: timeout, err: err}
		}
		return nil, err
	}
	if fired.Load() {
		rc.Close()
		cancel()
		return nil, &timeoutError{what: "registry " + s.img.Ref.Registry, after: timeout, err: context.DeadlineExceeded}
	}
	return &stallReader{rc: rc, cancel: cancel, timeout: timeout, registry: s.img.Ref.Registry}, nil
}

// stallReader fails a read that blocks longer than timeout by cancelling
// the request's context. Time spent by the caller between reads does not count.
type stallReader struct {
	rc       io.ReadCloser
	cancel   context.CancelFunc
	timeout  time.Duration
	registry string
	fired    atomic.Bool
	timer    *time.Timer
}

func (r *stallReader) Read(p []byte) (int, error) {
	if r.timer == nil {
		r.timer = time.AfterFunc(r.timeout, r.expire)
	} else {
		r.timer.Reset(r.timeout)
	}
	n, err := r.rc.Read(p)
	r.timer.Stop()
	if err != nil && err != io.EOF && r.fired.Load() {
		err = &timeoutError{what: "registry " + r.registry, after: r.timeout, err: err, stalled: true}
	}
	return n, err
}

func (r *stallReader) expire() {
	r.fired.Store(true)
	r.cancel()
}

func (r *stallReader) Close() error {
	if r.timer != nil {
		r.timer.Stop()
	}
	err := r.rc.Close()
	r.cancel()
	return err
}

// timeoutError is an operation that got no answer within Options.Timeout.
// It is not retried (the registry had its full time already).
type timeoutError struct {
	what    string
	after   time.Duration
	err     error
	stalled bool
}

func (e *timeoutError) Error() string {
	if e.stalled {
		return fmt.Sprintf("%s: download stalled for %s: %v", e.what, e.after, e.err)
	}
	return fmt.Sprintf("%s did not answer within %s: %v", e.what, e.after, e.err)
}

func (e *timeoutError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// retry runs op until it succeeds, fails in a non-transient way, or the
// retries are used up, sleeping with exponential backoff in between.
func (f *Fetcher) retry(ctx context.Context, ref Reference, what string, op func(context.Context) error) error {
	delay := f.retryDelay
	for attempt := 0; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		var te *timeoutError
		if attempt >= f.retries || ctx.Err() != nil || errors.As(err, &te) || !retryable(err) {
			return err
		}
		f.log.Debug("transient registry error, retrying", "ref", ref.String(), "op", what, "attempt", attempt+1, "delay", delay, "err", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return err
		}
		delay *= 2
		if delay > maxRetryDelay {
			delay = maxRetryDelay
		}
	}
}

// describe makes the one-line error for a failed operation on ref.
func (f *Fetcher) describe(op string, ref Reference, err error) error {
	if ref.Kind == Docker && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		err = fmt.Errorf("%w (plain-HTTP registry: allow it with --insecure-registry %s)", err, ref.Registry)
	}
	if ref.Kind != Docker {
		err = fileNotFound(err)
	}
	return wrapErr(op, ref.String(), err)
}

// systemContext builds the containers/image settings for ref.
func (f *Fetcher) systemContext(ref Reference) *types.SystemContext {
	o := f.opts
	sys := &types.SystemContext{
		SystemRegistriesConfPath: o.RegistriesConfPath,
		AuthFilePath:             o.AuthFilePath,
		SignaturePolicyPath:      o.PolicyPath,
		OSChoice:                 o.OS,
		ArchitectureChoice:       o.Arch,
		VariantChoice:            o.Variant,
		DockerRegistryUserAgent:  o.UserAgent,
		BigFilesTemporaryDir:     o.TempDir,
	}
	if o.Username != "" {
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: o.Username, Password: o.Password}
	}
	if ref.Kind == Docker && f.isInsecure(ref.Registry) {
		// Global in SystemContext, but set only for this registry's refs.
		// containers/image then skips TLS verification and falls back to
		// plain HTTP when HTTPS fails.
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	return sys
}

func (f *Fetcher) isInsecure(registry string) bool {
	for _, r := range f.opts.InsecureRegistries {
		r = strings.TrimPrefix(strings.TrimPrefix(r, "http://"), "https://")
		r = strings.TrimSuffix(r, "/")
		if strings.EqualFold(r, registry) {
			return true
		}
	}
	return false
}

// loadPolicy reads policy.json: Options.PolicyPath if set (it must exist),
// else the user's or the system's as containers/image looks for them. If
// there is none anywhere, any image is accepted.
func (f *Fetcher) loadPolicy() (*signature.Policy, error) {
	if f.opts.PolicyPath != "" {
		p, err := signature.NewPolicyFromFile(f.opts.PolicyPath)
		if err != nil {
			return nil, fmt.Errorf("signature policy: %w", err)
		}
		return p, nil
	}
	var candidates []string
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".config", "containers", "policy.json"))
	}
	candidates = append(candidates, "/etc/containers/policy.json")
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			p, err := signature.NewPolicyFromFile(c)
			if err != nil {
				return nil, fmt.Errorf("signature policy: %w", err)
			}
			f.log.Debug("using signature policy", "path", c)
			return p, nil
		}
	}
	f.log.Debug("no policy.json found; accepting any image", "looked_at", candidates)
	return &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}, nil
}

func (f *Fetcher) platform() (osName, arch, variant string) {
	osName, arch, variant = f.opts.OS, f.opts.Arch, f.opts.Variant
	if osName == "" {
		osName = runtime.GOOS
	}
	if arch == "" {
		arch = runtime.GOARCH
	}
	return osName, arch, variant
}

func (f *Fetcher) platformString() string {
	o, a, v := f.platform()
	if v != "" {
		return o + "/" + a + "/" + v
	}
	return o + "/" + a
}

// checkPlatform warns when a single-platform image is not for the wanted platform.
func (f *Fetcher) checkPlatform(ref Reference, cfg *imgspecv1.Image) {
	o, a, _ := f.platform()
	if (cfg.OS != "" && cfg.OS != o) || (cfg.Architecture != "" && cfg.Architecture != a) {
		f.log.Warn("image is for another platform", "ref", ref.String(), "image", cfg.OS+"/"+cfg.Architecture, "want", o+"/"+a)
	}
}

// openLocal opens a LocalDir or LocalTarball reference. It opens the
// source as OpenLayer will (so that, as root, a source another user can
// change is refused here, whether or not its layer is cached) and sniffs a
// tarball's compression through that fd.
func (f *Fetcher) openLocal(ref Reference) (*Source, error) {
	o, a, v := f.platform()
	img := Image{Ref: ref}
	img.Config.OS = o
	img.Config.Architecture = a
	img.Config.Variant = v
	img.Config.RootFS.Type = "layers"
	switch ref.Kind {
	case LocalDir:
		fd, err := openSourceDir(ref.Path, f.privileged)
		if err != nil {
			return nil, f.describe("fetch", ref, err)
		}
		unix.Close(fd)
		img.Layers = []Layer{{MediaType: imgspecv1.MediaTypeImageLayer, Size: -1}}
	case LocalTarball:
		fh, err := openSourceFile(ref.Path, f.privileged)
		if err != nil {
			return nil, f.describe("fetch", ref, err)
		}
		defer fh.Close()
		fi, err := fh.Stat()
		if err != nil {
			return nil, f.describe("fetch", ref, err)
		}
		comp, err := sniffReader(fh)
		if err != nil {
			return nil, f.describe("fetch", ref, err)
		}
		mt := ""
		switch comp {
		case compNone:
			mt = imgspecv1.MediaTypeImageLayer
		case compGzip:
			mt = imgspecv1.MediaTypeImageLayerGzip
		case compZstd:
			mt = imgspecv1.MediaTypeImageLayerZstd
		default:
			return nil, fmt.Errorf("fetch %s: %w: not a plain, gzip or zstd tar archive", ref, ErrBadReference)
		}
		img.Layers = []Layer{{MediaType: mt, Size: fi.Size()}}
	}
	return &Source{f: f, img: img}, nil
}
