// Package gc finds what no image references — layers, squashed layers,
// short links, scratch debris, unfinished images — and removes it without
// racing the creates and deletes that run at the same time: a layer is
// removed only while its lock is held exclusively, which a create in
// flight prevents by holding it shared.
package gc
