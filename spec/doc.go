// Package spec renders what taproot prints: the OCI runtime-spec fragment
// of create (Fragment: root, the mounts it is given as data, process
// settings from the image config, the store's ID mappings) and the JSON of
// stats, capacity, list and clean (json.go). ParseUser splits an image
// config's User ("name", "uid:gid", ...), which the builder then looks up
// in the image's own /etc/passwd and /etc/group.
//
// A leaf: of taproot's packages it imports only idmap (the
// mappings of FragmentInput), as internal/depcheck pins. It computes no
// mount: the overlay mount is planned by overlayxfs (Plan.Mount),
// persisted with the image by the store, and converted to runtime-spec
// mounts (Mount.SpecMount) by the builder, which hands them in.
//
// Where things go: image Env, WorkingDir and User become process.env,
// process.cwd and process.user; Entrypoint followed by Cmd becomes
// process.args; image labels become annotations under LabelPrefix
// ("io.taproot.image.label.<key>"), and the image id, reference and
// manifest digest are added as io.taproot.image.{id,ref,manifest-digest}
// (see AnnotationRef), the StopSignal as org.opencontainers.image.stopSignal.
//
// Threat model: the image author controls the config (labels, env, user,
// entrypoint). Runtimes act on some annotation keys (crun: run.oci.*; runc
// and crun: org.systemd.property.*; runc: org.criu.config; CRI runtimes:
// io.kubernetes.*), so a label copied verbatim would let the author change
// the runtime's seccomp filter, groups, cgroup unit or executor. Labels are
// therefore only ever written under LabelPrefix, a key family no runtime
// reads; the keys taproot sets itself are fixed, only their values come
// from the image.
package spec
