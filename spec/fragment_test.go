package spec

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/taproot-dev/taproot/idmap"
)

func TestFragment(t *testing.T) {
	in := FragmentInput{
		ID:       "c1",
		Ref:      "docker://r/x:1",
		RootPath: "/s/images/c1/rootfs",
		Mounts: []specs.Mount{{Destination: "/", Type: "overlay", Source: "overlay",
			Options: []string{"userxattr", "lowerdir=/s/l/a", "upperdir=/s/images/c1/diff", "workdir=/s/images/c1/work"}}},
		Config: imgspecv1.ImageConfig{
			Env:        []string{"A=1"},
			Entrypoint: []string{"/bin/app"},
			Cmd:        []string{"--flag"},
			WorkingDir: "/srv",
			Labels:     map[string]string{"team": "x"},
		},
		UID: 1000, GID: 1001,
		UIDMappings: []idmap.Mapping{{ContainerID: 0, HostID: 1000, Size: 1}},
		GIDMappings: []idmap.Mapping{{ContainerID: 0, HostID: 1000, Size: 1}},
	}
	f := Fragment(in)
	if f.Root.Path != in.RootPath {
		t.Errorf("root.path = %q", f.Root.Path)
	}
	// The mounts are printed as given, in order.
	if len(f.Mounts) != 1 || !reflect.DeepEqual(f.Mounts, in.Mounts) {
		t.Errorf("mounts = %+v", f.Mounts)
	}
	if got := strings.Join(f.Process.Args, " "); got != "/bin/app --flag" {
		t.Errorf("args = %q", got)
	}
	if f.Process.Env[0] != DefaultPath || f.Process.Env[1] != "A=1" {
		t.Errorf("env = %v", f.Process.Env)
	}
	if f.Process.Cwd != "/srv" || f.Process.User.UID != 1000 || f.Process.User.GID != 1001 {
		t.Errorf("process = %+v", f.Process)
	}
	if f.Annotations[LabelPrefix+"team"] != "x" || f.Annotations["team"] != "" || f.Annotations[AnnotationRef] != in.Ref || f.Annotations[AnnotationImageID] != "c1" {
		t.Errorf("annotations = %v", f.Annotations)
	}
	if len(f.Linux.UIDMappings) != 1 || f.Linux.UIDMappings[0].HostID != 1000 {
		t.Errorf("uid mappings = %v", f.Linux.UIDMappings)
	}
	// An image with its own PATH keeps it; --with-mount prints no mounts.
	in.Config.Env = []string{"PATH=/x"}
	in.Mounts = nil
	in.Config.WorkingDir = ""
	f = Fragment(in)
	if len(f.Process.Env) != 1 || f.Process.Env[0] != "PATH=/x" {
		t.Errorf("env = %v", f.Process.Env)
	}
	if len(f.Mounts) != 0 || f.Process.Cwd != "/" {
		t.Errorf("mounts = %v cwd = %q", f.Mounts, f.Process.Cwd)
	}
	data, err := json.Marshal(f)
	if err != nil || strings.Contains(string(data), `"overlay"`) {
		t.Errorf("json = %s, %v", data, err)
	}
}

// Image labels never become annotation keys a runtime acts on, nor
// taproot's own keys: every label is under LabelPrefix, and the keys
// taproot sets keep their values.
func TestFragmentLabelsCannotSetRuntimeAnnotations(t *testing.T) {
	hostile := map[string]string{
		"run.oci.seccomp_bpf_data":             "AAAA",
		"run.oci.keep_original_groups":         "1",
		"run.oci.handler":                      "krun",
		"run.oci.hooks.stdout":                 "/etc/passwd",
		"org.systemd.property.ExecStopPost":    "/bin/sh -c evil",
		"org.criu.config":                      "/tmp/evil.conf",
		"io.kubernetes.cri-o.Devices":          "/dev/sda",
		"io.kubernetes.cri-o.userns-mode":      "host",
		AnnotationImageID:                      "spoofed-id",
		AnnotationRef:                          "docker://spoofed/ref",
		AnnotationManifestDigest:               "sha256:spoofed",
		AnnotationStopSignal:                   "SIGKILL",
		"":                                     "empty key",
		"org.opencontainers.image.title":       "fine",
		LabelPrefix + "nested":                 "stays nested",
		"com.example.with spaces=and\nnewline": "odd",
	}
	f := Fragment(FragmentInput{
		ID: "c1", Ref: "docker://r/x:1", ManifestDigest: "sha256:aa", RootPath: "/r",
		Config: imgspecv1.ImageConfig{Labels: hostile, StopSignal: "SIGTERM"},
	})
	own := map[string]string{
		AnnotationImageID: "c1", AnnotationRef: "docker://r/x:1", AnnotationManifestDigest: "sha256:aa", AnnotationStopSignal: "SIGTERM",
	}
	for k, want := range own {
		if f.Annotations[k] != want {
			t.Errorf("annotation %s = %q, want %q (a label must not override it)", k, f.Annotations[k], want)
		}
	}
	for k, v := range f.Annotations {
		if _, ok := own[k]; ok {
			continue
		}
		if !strings.HasPrefix(k, LabelPrefix) {
			t.Errorf("annotation %q=%q is not taproot's and not under %s", k, v, LabelPrefix)
			continue
		}
		if hostile[strings.TrimPrefix(k, LabelPrefix)] != v {
			t.Errorf("annotation %q=%q is not the label %q", k, v, strings.TrimPrefix(k, LabelPrefix))
		}
		for _, reserved := range []string{"run.oci.", "org.systemd.property.", "org.criu.", "io.kubernetes.", "org.opencontainers."} {
			if strings.HasPrefix(k, reserved) {
				t.Errorf("annotation %q is in the runtime-reserved family %s", k, reserved)
			}
		}
	}
	if got, want := len(f.Annotations), len(own)+len(hostile); got != want {
		t.Errorf("%d annotations, want %d (every label, prefixed, plus taproot's): %v", got, want, f.Annotations)
	}
}

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want UserSpec
		bad  bool
	}{
		{in: "", want: UserSpec{UIDSet: true}},
		{in: "1000", want: UserSpec{User: "1000", UID: 1000, UIDSet: true}},
		{in: "1000:50", want: UserSpec{User: "1000", Group: "50", UID: 1000, GID: 50, UIDSet: true, GIDSet: true}},
		{in: "app", want: UserSpec{User: "app"}},
		{in: "app:staff", want: UserSpec{User: "app", Group: "staff"}},
		{in: ":1", bad: true},
		{in: "1:", bad: true},
	} {
		got, err := ParseUser(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
			t.Errorf("ParseUser(%q) = %+v, %v; want %+v bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}
