package spec

import "time"

// Stats is the JSON of `taproot stats`.
type Stats struct {
	DiskUsage DiskUsage `json:"disk_usage"`
}

// DiskUsage is the disk_usage object of Stats.
type DiskUsage struct {
	TotalBytesUsed     int64 `json:"total_bytes_used"`
	ExclusiveBytesUsed int64 `json:"exclusive_bytes_used"`
	// Inodes, counted like the bytes: exclusive from the project quota
	// (what the container made), total adds the image's own (its layers'
	// tar entries, 0 for images made before taproot recorded them).
	TotalInodesUsed     int64 `json:"total_inodes_used"`
	ExclusiveInodesUsed int64 `json:"exclusive_inodes_used"`
}

// Capacity is the JSON of `taproot capacity`.
type Capacity struct {
	Capacity uint64 `json:"capacity"`
}

// ListEntry is one image in `taproot list`.
type ListEntry struct {
	ID       string    `json:"id"`
	ImageRef string    `json:"image_ref"`
	Created  time.Time `json:"created"`
	BaseSize int64     `json:"base_size"`
}

// CleanResult is the JSON of `taproot clean`.
type CleanResult struct {
	ReclaimedBytes int64 `json:"reclaimed_bytes"`
	LayersRemoved  int   `json:"layers_removed"`
}
