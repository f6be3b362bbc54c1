package store

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Records are data, never paths. A record can be damaged by a power cut or
// rewritten by someone who should not (a container that broke out writes
// layer contents; a tampered backup): every name read from one is checked
// against its exact format, or recomputed from what it names, before it
// becomes part of a path, a lock name or a mount option.

// ErrBadRecord reports a record whose content is not what taproot writes.
var ErrBadRecord = errors.New("record is damaged or was tampered with")

// shortLens are the lengths makeShortLink tries, shortest first.
var shortLens = []int{10, 16, 26, 52}

// validLayerKey says whether key has the exact form layerKey or squashKeyOf
// gives: the hex of a sha256 diffID, "<alg>-<hex>" for the other digest
// algorithms, or "squash-<sha256 hex>".
func validLayerKey(key string) bool {
	if hex, ok := strings.CutPrefix(key, "squash-"); ok {
		return isLowerHex(hex, 64)
	}
	if isLowerHex(key, 64) {
		return true
	}
	for _, alg := range []digest.Algorithm{digest.SHA384, digest.SHA512} {
		if hex, ok := strings.CutPrefix(key, alg.String()+"-"); ok {
			return isLowerHex(hex, alg.Size()*2)
		}
	}
	return false
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkLayerKey is validLayerKey as an error.
func checkLayerKey(key string) error {
	if !validLayerKey(key) {
		return fmt.Errorf("layer key %q: %w", key, ErrBadRecord)
	}
	return nil
}

// validShort says whether short is one of the names makeShortLink gives
// key's link: the record can only pick among those, never name a path.
func validShort(key, short string) bool {
	for _, n := range shortLens {
		if len(short) == n {
			return short == shortName(key, n)
		}
	}
	return false
}

// checkImageRecord checks every name in an image's record: it must name
// the dir it was read from, and its layers must be layer keys and digests.
func checkImageRecord(id string, rec *ImageRecord) error {
	if err := ValidateID(id); err != nil {
		return fmt.Errorf("image record: %w: %w", ErrBadRecord, err)
	}
	if rec.ID != id {
		return fmt.Errorf("image %q: record names id %q: %w", id, rec.ID, ErrBadRecord)
	}
	if len(rec.Lowers) == 0 {
		return fmt.Errorf("image %q: record names no layers: %w", id, ErrBadRecord)
	}
	for _, k := range rec.Lowers {
		if !validLayerKey(k) {
			return fmt.Errorf("image %q: record names layer %q: %w", id, k, ErrBadRecord)
		}
	}
	for _, d := range rec.Layers {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("image %q: record names diffID %q: %w", id, d, ErrBadRecord)
		}
	}
	return nil
}
