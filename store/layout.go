package store

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/unpacker"
)

// layout spells every path and lock name of a store once (doc.go draws
// the tree). Everything else asks it; nothing else joins a store path.
// Store embeds it, so s.layerDir(key) and the like read as before.
type layout struct {
	root string
}

// The fixed dirs of a store, in the order they are made (the root first).
const (
	metaDirName   = "meta"
	layersDirName = "layers"
	linksDirName  = "l"
	imagesDirName = "images"
	locksDirName  = "locks"
	tmpDirName    = "tmp"
)

// Files a store writes.
const (
	metaFile        = "store.json"
	layerRecordFile = "layer.json"
	imageRecordFile = "image.json"
	noQuotaFile     = "no-quota-warned"
	localPrefix     = "local-"
	lockSuffix      = ".lock"
	tmpSuffix       = ".tmp"
)

// The dirs of an image: the mount point, the overlay's upper and work dirs.
const (
	rootfsDir = "rootfs"
	upperDir  = "diff"
	workDir   = "work"
)

var imageSubdirs = []string{rootfsDir, upperDir, workDir}

// recordFiles are the owner's records inside a layer or image dir (the
// rest of those dirs is container data).
var recordFiles = []string{layerRecordFile, imageRecordFile, unpacker.TarSplitName}

// Kinds of scratch dir under tmp/ (the name is <kind>-<16 hex>).
const (
	tmpLayer  = "layer"  // a layer being unpacked
	tmpSquash = "squash" // a squashed layer being built
	tmpTrash  = "trash"  // what a delete or clean moved aside
)

// Kinds of lock file under locks/ (the name is <kind>-<what>.lock, or
// init.lock).
const (
	lockInit  = "init"  // making the store
	lockLayer = "layer" // a layer's reference lock (shared by creates)
	lockFetch = "fetch" // fetching or building a missing layer
	lockImage = "image" // an image id
	lockTmp   = "tmp"   // a scratch dir
)

func (l layout) path(elem ...string) string {
	return filepath.Join(append([]string{l.root}, elem...)...)
}

func (l layout) metaDir() string   { return l.path(metaDirName) }
func (l layout) metaPath() string  { return l.path(metaDirName, metaFile) }
func (l layout) layersDir() string { return l.path(layersDirName) }
func (l layout) linksDir() string  { return l.path(linksDirName) }
func (l layout) imagesDir() string { return l.path(imagesDirName) }
func (l layout) locksDir() string  { return l.path(locksDirName) }
func (l layout) tmpDir() string    { return l.path(tmpDirName) }

func (l layout) layerDir(key string) string    { return l.path(layersDirName, key) }
func (l layout) layerRecord(key string) string { return l.path(layersDirName, key, layerRecordFile) }
func (l layout) layerDiff(key string) string   { return l.path(layersDirName, key, "diff") }
func (l layout) linkPath(short string) string  { return l.path(linksDirName, short) }
func (l layout) imageDir(id string) string     { return l.path(imagesDirName, id) }
func (l layout) imageRecord(id string) string  { return l.path(imagesDirName, id, imageRecordFile) }
func (l layout) imageSub(id, sub string) string {
	return l.path(imagesDirName, id, sub)
}
func (l layout) tmpPath(name string) string { return l.path(tmpDirName, name) }
func (l layout) noQuotaMarker() string      { return l.path(metaDirName, noQuotaFile) }

// blobDir holds the metadata cache: manifests and configs by digest.
func (l layout) blobDir() string { return l.path(metaDirName, "blobs", "sha256") }

// blobTmp is the name a cache write of path uses before its rename: one per
// process, so the pid tells a dead writer's file from a live one's.
func blobTmp(path string, pid int) string { return path + "." + strconv.Itoa(pid) + tmpSuffix }

// blobTmpPID is the pid in a blob tmp file's name (ok false: not one).
func blobTmpPID(name string) (pid int, ok bool) {
	rest, ok := strings.CutSuffix(name, tmpSuffix)
	if !ok {
		return 0, false
	}
	_, pidStr, _ := strings.Cut(rest, ".")
	pid, err := strconv.Atoi(pidStr)
	return pid, err == nil && pid > 0
}

// localCachePath is where the diffID of a local rootfs version is kept.
func (l layout) localCachePath(key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.path(metaDirName, localPrefix+hex.EncodeToString(sum[:])+".json")
}

// lockPath is the file of lock name (kind-what, or init).
func (l layout) lockPath(name string) string { return l.path(locksDirName, name+lockSuffix) }

func (l layout) initLock() string            { return l.lockPath(lockInit) }
func (l layout) layerLock(key string) string { return l.lockPath(lockLayer + "-" + key) }
func (l layout) fetchLock(key string) string { return l.lockPath(lockFetch + "-" + key) }
func (l layout) imageLock(id string) string  { return l.lockPath(lockImage + "-" + id) }
func (l layout) tmpLock(name string) string  { return l.lockPath(lockTmp + "-" + name) }

// parseLockName splits a lock file's name into its kind and what it
// guards (ok false: not a lock file).
func parseLockName(file string) (kind, what string, ok bool) {
	name, ok := strings.CutSuffix(file, lockSuffix)
	if !ok {
		return "", "", false
	}
	kind, what, _ = strings.Cut(name, "-")
	return kind, what, true
}

// linkTarget is what a layer's short link points to (relative, so the
// store can move).
func linkTarget(key string) string { return filepath.Join("..", layersDirName, key, "diff") }

// keyOfLinkTarget is the layer key of a short link's target, if it has
// exactly the form linkTarget gives.
func keyOfLinkTarget(target string) (string, bool) {
	key := filepath.Base(filepath.Dir(target))
	if !validLayerKey(key) || target != linkTarget(key) {
		return "", false
	}
	return key, true
}

// layoutDir is one fixed directory of the store: traverse says whether the
// overlay mounter and the worker pass through it (see perm.go).
type layoutDir struct {
	name     string
	traverse bool
}

var layoutDirs = []layoutDir{
	{"", true}, {metaDirName, false}, {layersDirName, true}, {linksDirName, true},
	{imagesDirName, true}, {locksDirName, false}, {tmpDirName, true},
}

// blobKey is the digest a cache file's name stands for.
func blobKey(name string) digest.Digest { return digest.NewDigestFromEncoded(digest.SHA256, name) }
