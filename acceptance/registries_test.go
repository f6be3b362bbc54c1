package acceptance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/crypto/bcrypt"

	"github.com/taproot-dev/taproot/acceptance/internal/bundle"
	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

func parseFragment(s string) (*specs.Spec, error) { return bundle.Parse([]byte(s)) }

// The containers conventions, through containers/image: registries.conf
// (mirrors, blocked registries, short names), auth.json, policy.json and the
// proxy environment variables, each against real registries on loopback.
// taproot's config file passes the paths through ([registry] registries_conf,
// auth_file, policy).

// testRegistry is a docker-registry of a test's own.
type testRegistry struct {
	addr string // 127.0.0.1:PORT
	log  string // access log
	cmd  *exec.Cmd
	once sync.Once
}

// startTestRegistry starts docker-registry with the extra YAML (top-level
// sections such as auth: or proxy:) and, when tls, a self-signed certificate.
func startTestRegistry(t *testing.T, extra string, useTLS bool) *testRegistry {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &testRegistry{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	dir := testDir(t, "registries")
	httpCfg := "http:\n  addr: " + r.addr + "\n"
	if useTLS {
		cert, key := selfSignedCert(t, dir)
		httpCfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", cert, key)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: %s\n%s%s",
		filepath.Join(dir, "data"), httpCfg, extra)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.log = filepath.Join(dir, "registry.log")
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r.cmd = exec.Command("docker-registry", "serve", cfgPath)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	scheme := "http"
	client := http.DefaultClient
	if useTLS {
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(scheme + "://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return r // 200, or 401 with auth
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := os.ReadFile(r.log)
	t.Fatalf("registry on %s did not answer within 15s:\n%s", r.addr, out)
	return nil
}

func (r *testRegistry) stop() {
	r.once.Do(func() { terminate(r.cmd) })
}

// gets counts the access-log lines of successful GETs under /v2/<repo>/<kind>/.
func (r *testRegistry) gets(t *testing.T, repo, kind string) int {
	t.Helper()
	data, err := os.ReadFile(r.log)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"GET /v2/` + regexp.QuoteMeta(repo) + `/` + kind + `/[^ ]+ HTTP/[0-9.]+" (200|206) `)
	return len(re.FindAll(data, -1))
}

// pushTo pushes img to docker://addr/repo:latest (with credentials, if
// given; skipping TLS verification) and returns the docker:// reference.
func pushTo(t *testing.T, addr, repo string, img ib.Image, auth *types.DockerAuthConfig) string {
	t.Helper()
	b, err := ib.WriteLayout(testDir(t, "layouts"), "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref, err := docker.ParseReference("//" + addr + "/" + repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
		AuthFilePath:                "/nonexistent/taproot-acceptance-auth.json",
		DockerAuthConfig:            auth,
	}
	dest, err := ref.NewImageDestination(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	for _, l := range b.Layers {
		info := types.BlobInfo{Digest: l.Digest, Size: int64(len(l.Data)), MediaType: l.MediaType}
		if _, err := dest.PutBlob(ctx, bytes.NewReader(l.Data), info, none.NoCache, false); err != nil {
			t.Fatalf("push layer to %s: %v", addr, err)
		}
	}
	if _, err := dest.PutBlob(ctx, bytes.NewReader(b.ConfigBytes), types.BlobInfo{Digest: b.ConfigDigest, Size: int64(len(b.ConfigBytes))}, none.NoCache, true); err != nil {
		t.Fatalf("push config to %s: %v", addr, err)
	}
	if err := dest.PutManifest(ctx, b.ManifestBytes, nil); err != nil {
		t.Fatalf("push manifest to %s: %v", addr, err)
	}
	if err := dest.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return "docker://" + addr + "/" + repo + ":latest"
}

// writeUserFile writes a file the test user can read, in a dir of its own.
func writeUserFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(testDir(t, "layouts"), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// withConfig returns the global flags for a taproot config whose
// [registry] section holds the given TOML lines.
func withConfig(t *testing.T, registryLines ...string) []string {
	t.Helper()
	cfg := writeUserFile(t, "config.toml", "[registry]\n"+strings.Join(registryLines, "\n")+"\n")
	return []string{"--config", cfg}
}

// tp runs taproot as the test user with global flags before the command
// and extra environment variables.
func tp(t *testing.T, store string, env, global []string, args ...string) result {
	t.Helper()
	argv := append([]string{"env"}, env...)
	argv = append(argv, h.taproot, "--store", store)
	argv = append(append(argv, global...), args...)
	r := execute(t, 3*time.Minute, asUser(argv...))
	t.Logf("taproot %s %s: exit %d in %v", strings.Join(global, " "), strings.Join(args, " "), r.code, r.dur.Round(time.Millisecond))
	return r
}

func mustCreate(t *testing.T, r result, what string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s:\n%s", what, r)
	}
	if _, err := parseFragment(r.stdout); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// mustFail asserts a failed create with one stderr line holding every want.
func mustFail(t *testing.T, r result, what string, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("%s: want failure, got success:\n%s", what, r)
	}
	t.Logf("%s: %s", what, strings.TrimSpace(r.stderr))
	if l := lines(r.stderr); len(l) != 1 {
		t.Errorf("%s: want one error line on stderr, got %d:\n%s", what, len(l), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("%s: stderr lacks %q:\n%s", what, w, r.stderr)
		}
	}
}

// A mirror in registries.conf is used: docker:///REPO#TAG (Docker Hub, as
// Garden and GrootFS write it) is pulled through a pull-through cache
// (docker-registry in proxy mode) in front of an origin registry. The mirror
// logs the pulls; with the origin stopped, a fresh store still gets the image
// from the mirror's cache; and without the mirror the same reference fails.
func TestRegistriesConfMirror(t *testing.T) {
	need(t)
	t.Parallel()
	origin := startTestRegistry(t, "", false)
	mirror := startTestRegistry(t, fmt.Sprintf("proxy:\n  remoteurl: http://%s\n", origin.addr), false)
	pushTo(t, origin.addr, "acceptance/mirrored", busyboxImage(layer(ib.File("m", "via the mirror\n"))), nil)

	conf := writeUserFile(t, "registries.conf", fmt.Sprintf(`
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = %q
insecure = true
`, mirror.addr))
	global := withConfig(t, fmt.Sprintf("registries_conf = %q", conf))
	ref := "docker:///acceptance/mirrored#latest"

	store := newStore(t)
	r := tp(t, store, nil, global, "create", ref, "m1")
	mustCreate(t, r, "create through the mirror")
	if n := mirror.gets(t, "acceptance/mirrored", "manifests"); n == 0 {
		t.Errorf("the mirror's access log shows no manifest GET of acceptance/mirrored")
	}
	if n := mirror.gets(t, "acceptance/mirrored", "blobs"); n < 2 {
		t.Errorf("the mirror's access log shows %d blob GETs of acceptance/mirrored, want ≥ 2 (config and layers)", n)
	}
	if n := origin.gets(t, "acceptance/mirrored", "blobs"); n == 0 {
		t.Errorf("the origin served no blob: the mirror did not pull through")
	}
	frag, err := parseFragment(r.stdout)
	if err != nil {
		t.Fatal(err)
	}
	if got := sh(t, store, frag, "cat /m"); got != "via the mirror\n" {
		t.Errorf("cat /m = %q", got)
	}

	origin.stop()
	store2 := newStore(t)
	mustCreate(t, tp(t, store2, nil, global, "create", ref, "m2"), "create from the mirror's cache with the origin stopped")

	// Without the mirror, docker.io is asked (blocked here, so it fails
	// fast and offline): the mirror really is what served the image.
	noMirror := writeUserFile(t, "registries.conf", "[[registry]]\nlocation = \"docker.io\"\nblocked = true\n")
	r = tp(t, newStore(t), nil, withConfig(t, fmt.Sprintf("registries_conf = %q", noMirror)), "create", ref, "m3")
	mustFail(t, r, "create without the mirror", "docker.io/acceptance/mirrored", "blocked")
}

// Blocked registries are refused with a clear error; short names are never
// resolved through unqualified-search-registries or aliases: taproot's
// docker:///REPO and docker://REPO mean Docker Hub, as in GrootFS.
func TestRegistriesConfBlockedAndShortNames(t *testing.T) {
	need(t)
	t.Parallel()
	okRef, _ := pushImage(t, "not-blocked", busyboxImage())
	blockedRef, _ := pushImage(t, "blocked", busyboxImage())
	pushImage(t, "short", busyboxImage())
	conf := writeUserFile(t, "registries.conf", fmt.Sprintf(`
unqualified-search-registries = [%[1]q]
short-name-mode = "enforcing"

[[registry]]
location = %[1]q
insecure = true

[[registry]]
prefix = "%[1]s/acceptance/blocked"
location = "%[1]s/acceptance/blocked"
blocked = true

[[registry]]
location = "docker.io"
blocked = true

[aliases]
"acceptance/short" = "%[1]s/acceptance/short"
`, h.registry))
	global := withConfig(t, fmt.Sprintf("registries_conf = %q", conf))

	// registries.conf's own insecure = true lets the plain-HTTP registry be used.
	mustCreate(t, tp(t, newStore(t), nil, global, "create", okRef, "ok"), "create of a registry marked insecure in registries.conf")

	r := tp(t, newStore(t), nil, global, "create", blockedRef, "blocked")
	mustFail(t, r, "create from a blocked location", h.registry+"/acceptance/blocked", "blocked")

	for _, short := range []string{"docker:///acceptance/short", "docker://acceptance/short:latest"} {
		r := tp(t, newStore(t), nil, global, "create", short, "short")
		mustFail(t, r, "create of a short name "+short, "docker.io/acceptance/short", "blocked")
	}
}

// auth.json ([registry] auth_file in the config) and Garden's
// --username/--password reach a registry with htpasswd auth; no or wrong
// credentials fail with a clear "unauthorized" error.
func TestRegistryAuth(t *testing.T) {
	need(t)
	t.Parallel()
	dir := testDir(t, "registries")
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := startTestRegistry(t, fmt.Sprintf("auth:\n  htpasswd:\n    realm: taproot-test\n    path: %s\n", htpasswd), false)
	ref := pushTo(t, reg.addr, "acceptance/private", busyboxImage(layer(ib.File("p", "private\n"))),
		&types.DockerAuthConfig{Username: "alice", Password: "s3cret"})

	insecure := []string{"--insecure-registry", reg.addr}
	emptyAuth := writeUserFile(t, "empty-auth.json", `{"auths":{}}`)
	noCreds := withConfig(t, fmt.Sprintf("auth_file = %q", emptyAuth))

	r := tp(t, newStore(t), nil, noCreds, append(append([]string{"create"}, insecure...), ref, "anon")...)
	mustFail(t, r, "create without credentials", "unauthorized", reg.addr)

	authJSON := writeUserFile(t, "auth.json", fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`,
		reg.addr, base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))))
	store := newStore(t)
	r = tp(t, store, nil, withConfig(t, fmt.Sprintf("auth_file = %q", authJSON)), append(append([]string{"create"}, insecure...), ref, "authjson")...)
	mustCreate(t, r, "create with auth.json")
	frag, err := parseFragment(r.stdout)
	if err != nil {
		t.Fatal(err)
	}
	if got := sh(t, store, frag, "cat /p"); got != "private\n" {
		t.Errorf("cat /p = %q", got)
	}

	// Garden passes a private image's credentials as --username/--password.
	cfg := writeConfig(t, fmt.Sprintf("[create]\ninsecure_registries = [%q]\n[registry]\nauth_file = %q\n", reg.addr, emptyAuth))
	plugin := gardenPlugin{extraArgs: []string{"--config", cfg, "--store", newStore(t)}}
	rs := gardenCreate(t, plugin, "garden-private", gardenRootfsSpec{
		rootFS: "docker://" + reg.addr + "/acceptance/private#latest", username: "alice", password: "s3cret",
	})
	if rs.Root.Path == "" {
		t.Errorf("Garden-style create with --username/--password gave no root.path")
	}
	r = runPlugin(t, false, plugin.createArgv("garden-wrong", gardenRootfsSpec{rootFS: ref, username: "alice", password: "wrong"}))
	mustFail(t, r, "create with a wrong password", "unauthorized")
	if strings.Contains(r.stderr, "wrong") || strings.Contains(r.stderr, "s3cret") {
		t.Errorf("the error shows the password:\n%s", r.stderr)
	}
}

// policy.json ([registry] policy in the config) rejects what it rejects,
// with a clear error, and accepts the rest.
func TestPolicyJSON(t *testing.T) {
	need(t)
	t.Parallel()
	okRef, _ := pushImage(t, "policy-ok", busyboxImage())
	badRef, _ := pushImage(t, "policy-rejected", busyboxImage())
	policy := writeUserFile(t, "policy.json", fmt.Sprintf(`{
  "default": [{"type": "insecureAcceptAnything"}],
  "transports": {"docker": {"%s/acceptance/policy-rejected": [{"type": "reject"}]}}
}`, h.registry))
	global := withConfig(t, fmt.Sprintf("policy = %q", policy))
	insecure := []string{"--insecure-registry", h.registry}

	mustCreate(t, tp(t, newStore(t), nil, global, append(append([]string{"create"}, insecure...), okRef, "ok")...), "create of an accepted image")
	store := newStore(t)
	r := tp(t, store, nil, global, append(append([]string{"create"}, insecure...), badRef, "rejected")...)
	mustFail(t, r, "create of a rejected image", "rejected by signature policy", "acceptance/policy-rejected")
	if exists(imageDir(store, "rejected")) {
		t.Errorf("a rejected create left images/rejected")
	}

	// A policy path that does not exist is an error, not "accept anything".
	r = tp(t, newStore(t), nil, withConfig(t, `policy = "/nonexistent/policy.json"`), append(append([]string{"create"}, insecure...), okRef, "nopolicy")...)
	mustFail(t, r, "create with a missing policy file", "/nonexistent/policy.json")
}

// HTTPS_PROXY and NO_PROXY are honoured: a TLS registry with a name only the
// proxy can resolve is reached through a CONNECT proxy; with the name in
// NO_PROXY it is not.
func TestProxyEnv(t *testing.T) {
	need(t)
	t.Parallel()
	reg := startTestRegistry(t, "", true)
	pushTo(t, reg.addr, "acceptance/proxied", busyboxImage(layer(ib.File("x", "proxied\n"))), nil)
	_, port, _ := net.SplitHostPort(reg.addr)
	const fakeHost = "registry.taproot-proxy.test"
	name := fakeHost + ":" + port
	proxy := startConnectProxy(t, map[string]string{name: reg.addr})

	ref := "docker://" + name + "/acceptance/proxied:latest"
	args := []string{"create", "--insecure-registry", name, ref}
	env := []string{"HTTPS_PROXY=http://" + proxy.addr, "NO_PROXY=127.0.0.1,localhost"}
	store := newStore(t)
	r := tp(t, store, env, nil, append(args, "viaproxy")...)
	mustCreate(t, r, "create through HTTPS_PROXY")
	if n := proxy.count(name); n == 0 {
		t.Errorf("the proxy saw no CONNECT to %s", name)
	}

	before := proxy.count(name)
	r = tp(t, newStore(t), append(env[:1:1], "NO_PROXY="+fakeHost), nil, append(args, "noproxy")...)
	if r.code == 0 {
		t.Fatalf("with %s in NO_PROXY the name cannot resolve, yet create succeeded:\n%s", fakeHost, r)
	}
	if proxy.count(name) != before {
		t.Errorf("NO_PROXY=%s was not honoured: the proxy saw more CONNECTs", fakeHost)
	}
}

type connectProxy struct {
	addr string
	mu   sync.Mutex
	seen map[string]int
}

func (p *connectProxy) count(host string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[host]
}

// startConnectProxy is a minimal HTTP CONNECT proxy on loopback that
// resolves the names in hosts itself and refuses every other target.
func startConnectProxy(t *testing.T, hosts map[string]string) *connectProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{addr: l.Addr().String(), seen: map[string]int{}}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c, hosts)
		}
	}()
	return p
}

func (p *connectProxy) serve(c net.Conn, hosts map[string]string) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	target, ok := hosts[req.Host]
	if req.Method != http.MethodConnect || !ok {
		fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.mu.Lock()
	p.seen[req.Host]++
	p.mu.Unlock()
	up, err := net.Dial("tcp", target)
	if err != nil {
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	fmt.Fprintf(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, br); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func selfSignedCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "taproot-acceptance"},
		DNSNames:     []string{"registry.taproot-proxy.test", "localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}
