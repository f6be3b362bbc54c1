package spec

import (
	"fmt"
	"strconv"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/taproot-dev/taproot/idmap"
)

// Annotations taproot adds to the fragment.
const (
	AnnotationRef            = "io.taproot.image.ref"
	AnnotationManifestDigest = "io.taproot.image.manifest-digest"
	AnnotationImageID        = "io.taproot.image.id"
	// AnnotationStopSignal carries the image config's StopSignal, under
	// the key the OCI image spec's conversion rules give it.
	AnnotationStopSignal = "org.opencontainers.image.stopSignal"
	// LabelPrefix is put before each image label's key to make its
	// annotation key: label "team" becomes "io.taproot.image.label.team".
	//
	// Labels are the image author's, and runtimes act on annotation keys:
	// crun on run.oci.* (run.oci.seccomp_bpf_data replaces the seccomp
	// filter, run.oci.keep_original_groups keeps the caller's groups,
	// run.oci.handler picks another executor, run.oci.hooks.stdout names a
	// file crun writes), runc and crun on org.systemd.property.* (unit
	// properties of the container's scope with the systemd cgroup driver),
	// runc on org.criu.config (a CRIU config file for checkpoints), and
	// CRI runtimes on io.kubernetes.*. Under the prefix no label can set
	// any of them, nor one of taproot's own keys above; nothing is dropped.
	LabelPrefix = "io.taproot.image.label."
)

// DefaultPath is set when the image config has no PATH, as docker does.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// FragmentInput is what a fragment is made from.
type FragmentInput struct {
	ID             string
	Ref            string
	ManifestDigest string
	RootPath       string
	// Mounts are the mounts the runtime performs before its own (the
	// overlay at "/", from the image record: overlayxfs.Mount.SpecMount);
	// none when taproot mounted the rootfs itself (--with-mount) and the
	// runtime must not mount again. spec takes them as data, made elsewhere.
	Mounts []specs.Mount
	Config imgspecv1.ImageConfig
	// UID and GID are the resolved image user (container IDs).
	UID, GID       uint32
	AdditionalGids []uint32
	UIDMappings    []idmap.Mapping
	GIDMappings    []idmap.Mapping
}

// Fragment builds the runtime-spec fragment a runtime merges into its
// config: it prepends Mounts and takes Root, Process and Linux mappings.
func Fragment(in FragmentInput) *specs.Spec {
	env := append([]string(nil), in.Config.Env...)
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append([]string{DefaultPath}, env...)
	}
	cwd := in.Config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	args := append(append([]string(nil), in.Config.Entrypoint...), in.Config.Cmd...)
	ann := map[string]string{}
	for k, v := range in.Config.Labels {
		ann[LabelPrefix+k] = v
	}
	ann[AnnotationImageID] = in.ID
	if in.Ref != "" {
		ann[AnnotationRef] = in.Ref
	}
	if in.ManifestDigest != "" {
		ann[AnnotationManifestDigest] = in.ManifestDigest
	}
	if in.Config.StopSignal != "" {
		ann[AnnotationStopSignal] = in.Config.StopSignal
	}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: in.RootPath},
		Process: &specs.Process{
			Args: args,
			Env:  env,
			Cwd:  cwd,
			User: specs.User{UID: in.UID, GID: in.GID, AdditionalGids: in.AdditionalGids},
		},
		Mounts:      append([]specs.Mount{}, in.Mounts...),
		Annotations: ann,
		Linux: &specs.Linux{
			UIDMappings: toSpec(in.UIDMappings),
			GIDMappings: toSpec(in.GIDMappings),
		},
	}
	return s
}

func toSpec(ms []idmap.Mapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, 0, len(ms))
	for _, m := range ms {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size})
	}
	return out
}

// ParseUser splits an image config User ("", "u", "u:g", numeric or names).
// Numeric parts are returned as numbers; names are returned for lookup.
type UserSpec struct {
	User, Group    string
	UID, GID       uint32
	UIDSet, GIDSet bool
}

// ParseUser parses an image config's User field.
func ParseUser(s string) (UserSpec, error) {
	var u UserSpec
	if s == "" {
		u.UIDSet, u.GIDSet = true, false
		return u, nil
	}
	user, group, hasGroup := strings.Cut(s, ":")
	if user == "" || (hasGroup && group == "") {
		return u, fmt.Errorf("image user %q: empty user or group", s)
	}
	u.User, u.Group = user, group
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		u.UID, u.UIDSet = uint32(n), true
	}
	if hasGroup {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			u.GID, u.GIDSet = uint32(n), true
		}
	}
	return u, nil
}
