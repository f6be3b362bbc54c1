// Package gc is the policy of garbage collection: whether to clean a store
// now (its committed layer bytes above a threshold). What is garbage and
// how it is removed without racing the creates and deletes running at the
// same time is the store's (store.Clean, store.Usage).
package gc
