// Package spec renders what taproot prints: the OCI runtime-spec fragment
// of create (root, the mounts it is given as data, process settings from
// the image config) and the JSON of stats, capacity, list and clean. It
// imports no taproot package: the overlay mount is made, persisted and
// converted to a runtime-spec mount by overlayxfs and the store.
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
