package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/overlayxfs"
)

// MetaVersion is the store format version written by this build.
const MetaVersion = 1

// Meta is <store>/meta/store.json.
type Meta struct {
	Version     int             `json:"version"`
	OwnerUID    uint32          `json:"owner_uid"`
	OwnerGID    uint32          `json:"owner_gid"`
	UIDMappings []idmap.Mapping `json:"uid_mappings"`
	GIDMappings []idmap.Mapping `json:"gid_mappings"`
	FSType      string          `json:"fs_type,omitempty"`
	Quota       bool            `json:"quota"`
	Created     time.Time       `json:"created"`
}

// LayerRecord is <store>/layers/<hex>/layer.json.
type LayerRecord struct {
	DiffID          digest.Digest `json:"diff_id"`
	BlobDigest      digest.Digest `json:"blob_digest,omitempty"`
	MediaType       string        `json:"media_type,omitempty"`
	CompressedSize  int64         `json:"compressed_size,omitempty"`
	Size            int64         `json:"size"` // bytes of file content
	Short           string        `json:"short"`
	Squashed        []string      `json:"squashed,omitempty"` // for a squashed layer: the diffIDs merged, base first
	Created         time.Time     `json:"created"`
	UnpackWarnings  []string      `json:"warnings,omitempty"`
	UncompressedTar int64         `json:"uncompressed_tar_size,omitempty"`
	// Unverifiable: the layer's tar repeats a path with content (or whites
	// out content it wrote), so check can compare its file list but not
	// rebuild its bytes, and a squash applies its overlay form.
	Unverifiable bool `json:"unverifiable,omitempty"`
	// Inodes is the layer's tar entries, an upper bound of the inodes it
	// made (a hardlink or a skipped entry counts too); 0 in older records.
	Inodes int64 `json:"inodes,omitempty"`
}

// ImageRecord is <store>/images/<id>/image.json: written last, so its
// presence means the image is complete.
type ImageRecord struct {
	ID             string          `json:"id"`
	Ref            string          `json:"image_ref"`
	ManifestDigest digest.Digest   `json:"manifest_digest,omitempty"`
	Created        time.Time       `json:"created"`
	Layers         []digest.Digest `json:"layers"` // diffIDs, base first
	Lowers         []string        `json:"lowers"` // layer keys mounted, top first (hex of diffID or squash key)
	BaseSize       int64           `json:"base_size"`
	DiskLimit      uint64          `json:"disk_limit,omitempty"`
	ExcludeBase    bool            `json:"exclude_image_from_quota,omitempty"`
	Quota          bool            `json:"quota"`
	Config         imgspecv1.Image `json:"config"`
	// BaseInodes is the image's own inode count, its layers' Inodes, as
	// BaseSize is their bytes; DiskLimitInodes the inode limit asked for
	// (0: derived from the byte limit, see inodeLimit).
	BaseInodes      int64  `json:"base_inodes,omitempty"`
	DiskLimitInodes uint64 `json:"disk_limit_inodes,omitempty"`
	// Mounts are the image's mounts as planned at create: one overlay of
	// the Lowers' short links, diff/ and work/ on rootfs/ (its Target, the
	// fragment's root.path). The fragment, --with-mount and delete's
	// unmount use them; Image checks them against the ones the record's
	// layers give in this store (checkMounts), so they are data, never a
	// path the record chooses. Records written before mounts were persisted
	// have none: Image computes them on read.
	Mounts []overlayxfs.Mount `json:"mounts,omitempty"`
}

// writeJSONAtomic writes a record by rename (see writeAtomic).
func writeJSONAtomic(path string, v any, perm os.FileMode, durable bool) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeAtomic(path, path+".tmp", append(data, '\n'), perm, durable)
}

// writeAtomic writes data to path by rename from tmp, so a reader sees the
// old file or the new one. With durable, the new one is also on disk before
// the function returns: the data is fsynced before the rename (else a cut
// can leave the rename without the data: an empty file) and the parent dir
// after it (else a cut can lose the rename).
func writeAtomic(path, tmp string, data []byte, perm os.FileMode, durable bool) error {
	if err := writeFile(tmp, data, perm, durable); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDirs(durable, filepath.Dir(path))
}

// writeFile is os.WriteFile with an fsync before the close when durable.
func writeFile(path string, data []byte, perm os.FileMode, durable bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// syncDir makes dir's entries durable (the names created, renamed or
// removed in it).
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// syncDirs is syncDir of each dir, when durable.
func syncDirs(durable bool, dirs ...string) error {
	if !durable {
		return nil
	}
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}
