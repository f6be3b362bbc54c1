// Package spec renders what taproot prints: the OCI runtime-spec fragment
// of create (root, the overlay mount, process settings from the image
// config) and the JSON of stats, capacity, list and clean.
//
// Where things go: image Env, WorkingDir and User become process.env,
// process.cwd and process.user; Entrypoint followed by Cmd becomes
// process.args; image labels become annotations, and the image reference
// and manifest digest are added as the annotations
// org.opencontainers.image.ref.name... (see AnnotationRef).
package spec
