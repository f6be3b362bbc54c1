package store

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/taproot-dev/taproot/internal/idmap"
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
}

func writeJSONAtomic(path string, v any, perm os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
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

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
