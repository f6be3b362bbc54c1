// Package gc is the policy of garbage collection: whether to clean a store
// now (its committed layer bytes above a threshold). What is garbage and
// how it is removed without racing the creates and deletes running at the
// same time is the store's (store.Clean, store.Usage).
//
// Collect is the whole package: the builder calls it for `taproot clean`
// (with --threshold-bytes, else [clean] threshold_bytes) and before a
// create with [create] with_clean. It imports only store (never the
// fetcher, the builder, the CLI or containers/image), as internal/depcheck
// pins.
package gc
