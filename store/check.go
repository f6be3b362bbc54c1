package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/taproot-dev/taproot/worker"
)

// CheckOptions say how much Check looks at and whether it mends.
type CheckOptions struct {
	// Repair removes damaged layers and images (the next create makes
	// them again), fixes links and removes debris.
	Repair bool
	// Quick compares each layer file's size with its tar-split entry
	// instead of reassembling the layer and hashing it: it finds what a
	// power cut leaves (files shorter than written, records empty) at the
	// cost of a stat per file, so a platform can run it at every boot. It
	// does not find content changed in place at the same size.
	Quick bool
}

// CheckReport is what Check found (and, with repair, fixed).
type CheckReport struct {
	Healthy       bool           `json:"healthy"`
	Repaired      bool           `json:"repaired"`
	Quick         bool           `json:"quick"`
	LayersChecked int            `json:"layers_checked"`
	Layers        []LayerProblem `json:"damaged_layers"`
	Images        []ImageProblem `json:"damaged_images"`
	DanglingLinks []string       `json:"dangling_links"`
	MissingLinks  []string       `json:"missing_links"`
	Debris        []string       `json:"debris"`
}

// LayerProblem is one damaged layer.
type LayerProblem struct {
	Key     string `json:"key"`
	Problem string `json:"problem"`
}

// ImageProblem is one image whose record is broken or whose layers are gone.
type ImageProblem struct {
	ID      string `json:"id"`
	Problem string `json:"problem"`
}

// Check verifies every layer against its tar-split metadata (the
// reassembled tar must hash to the diffID, or with Quick each file must
// have its recorded size, and the dir may hold no file the tar does not
// name), and the records, image dirs, links and scratch space around them.
// With Repair it removes damaged layers and the images that use them or
// whose record or dirs are damaged, so the next create makes them again,
// fixes links and removes debris.
func (s *Store) Check(ctx context.Context, opts CheckOptions) (CheckReport, error) {
	repair := opts.Repair
	rep := CheckReport{Quick: opts.Quick, Layers: []LayerProblem{}, Images: []ImageProblem{}, DanglingLinks: []string{}, MissingLinks: []string{}, Debris: []string{}}
	keys, err := s.layerKeys()
	if err != nil {
		return rep, err
	}
	var verify []worker.LayerRef
	var verifyKeys []string
	for _, key := range keys {
		if !validLayerKey(key) {
			rep.Layers = append(rep.Layers, LayerProblem{key, "not a layer taproot made (the name is no layer key)"})
			continue
		}
		rec, err := s.readLayer(key)
		if err != nil {
			rep.Layers = append(rep.Layers, LayerProblem{key, "no readable layer.json: " + err.Error()})
			continue
		}
		if !validShort(key, rec.Short) {
			rep.Layers = append(rep.Layers, LayerProblem{key, fmt.Sprintf("record names short link %q, which is not one of this layer's: %v", rec.Short, ErrBadRecord)})
			continue
		}
		target, err := os.Readlink(s.linkPath(rec.Short))
		if err != nil || target != linkTarget(key) {
			rep.MissingLinks = append(rep.MissingLinks, rec.Short)
		}
		if len(rec.Squashed) > 0 || rec.DiffID == "" {
			// A squashed layer has no tar of its own to check against;
			// its sources are checked, and it is rebuilt if removed.
			if _, err := os.Stat(s.layerDiff(key)); err != nil {
				rep.Layers = append(rep.Layers, LayerProblem{key, "squashed layer has no diff dir"})
			}
			continue
		}
		if k, err := layerKey(rec.DiffID); err != nil || k != key {
			rep.Layers = append(rep.Layers, LayerProblem{key, fmt.Sprintf("record names diffID %s", rec.DiffID)})
			continue
		}
		verify = append(verify, worker.LayerRef{Dir: s.layerDir(key), DiffID: rec.DiffID, ListOnly: rec.Unverifiable})
		verifyKeys = append(verifyKeys, key)
	}
	rep.LayersChecked = len(keys)
	if len(verify) > 0 {
		problems, err := s.worker().Verify(ctx, verify, opts.Quick)
		if err != nil {
			return rep, fmt.Errorf("verify layers: %w", err)
		}
		for i, p := range problems {
			if p != nil {
				rep.Layers = append(rep.Layers, LayerProblem{verifyKeys[i], p.Error()})
			}
		}
	}
	// Links that lead nowhere.
	links, _ := os.ReadDir(s.linksDir())
	for _, e := range links {
		target, err := os.Readlink(s.linkPath(e.Name()))
		if err != nil {
			rep.DanglingLinks = append(rep.DanglingLinks, e.Name())
			continue
		}
		// A link taproot did not make leads nowhere taproot mounts.
		if key, ok := keyOfLinkTarget(target); !ok || !s.layerExists(key) {
			rep.DanglingLinks = append(rep.DanglingLinks, e.Name())
		}
	}
	// Images whose record is unreadable or whose layers are gone.
	damaged := map[string]bool{}
	for _, p := range rep.Layers {
		damaged[p.Key] = true
	}
	entries, _ := os.ReadDir(s.imagesDir())
	for _, e := range entries {
		id := e.Name()
		if ValidateID(id) != nil {
			continue // debris, below
		}
		rec, err := s.Image(ctx, id)
		if errors.Is(err, ErrImageNotFound) {
			continue // unfinished: debris unless its create is in flight
		}
		if err != nil {
			rep.Images = append(rep.Images, ImageProblem{id, err.Error()})
			continue
		}
		if msg := s.imageDirsProblem(id); msg != "" {
			rep.Images = append(rep.Images, ImageProblem{id, msg})
			continue
		}
		for _, k := range rec.Lowers {
			if !s.layerExists(k) || damaged[k] {
				rep.Images = append(rep.Images, ImageProblem{rec.ID, "layer " + k + " is missing or damaged"})
				break
			}
		}
	}
	// What killed processes left, as recover finds it: scratch dirs,
	// unfinished images and lock files of live processes are not debris
	// (a create in flight must not make check fail).
	found, err := s.sweepDebris(ctx, debrisSweep{stray: true})
	if err != nil {
		return rep, err
	}
	for _, d := range found {
		rep.Debris = append(rep.Debris, d.rel)
	}
	rep.Healthy = len(rep.Layers) == 0 && len(rep.Images) == 0 && len(rep.DanglingLinks) == 0 && len(rep.MissingLinks) == 0 && len(rep.Debris) == 0
	if !repair || rep.Healthy {
		return rep, nil
	}
	if err := s.repair(ctx, &rep); err != nil {
		return rep, err
	}
	rep.Repaired = true
	return rep, nil
}

func (s *Store) repair(ctx context.Context, rep *CheckReport) error {
	for _, p := range rep.Layers {
		if !validLayerKey(p.Key) {
			if err := s.removeStray(ctx, "layers", p.Key); err != nil {
				return fmt.Errorf("remove %s: %w", p.Key, err)
			}
			continue
		}
		if _, _, err := s.removeLayerIfUnused(ctx, p.Key, func() (bool, error) { return true, nil }); err != nil {
			return fmt.Errorf("remove damaged layer %s: %w", p.Key, err)
		}
	}
	// An image whose record is damaged or whose layers are gone cannot be
	// mounted: removing it lets the platform create it again.
	for _, p := range rep.Images {
		if err := s.Delete(ctx, p.ID); err != nil && !errors.Is(err, ErrImageNotFound) {
			return fmt.Errorf("remove damaged image %s: %w", p.ID, err)
		}
	}
	keys, _ := s.layerKeys()
	for _, key := range keys {
		if rec, err := s.readLayer(key); err == nil && validShort(key, rec.Short) {
			target := linkTarget(key)
			if got, err := os.Readlink(s.linkPath(rec.Short)); err != nil || got != target {
				os.Remove(s.linkPath(rec.Short))
				if err := os.Symlink(target, s.linkPath(rec.Short)); err != nil {
					return fmt.Errorf("recreate link %s: %w", rec.Short, err)
				}
			}
		}
	}
	if _, err := s.removeDanglingLinks(); err != nil {
		return err
	}
	if _, err := s.sweepDebris(ctx, debrisSweep{remove: true, stray: true}); err != nil {
		return err
	}
	// What repair made or unmade is durable before check reports it.
	return syncDirs(s.opts.Sync, s.linksDir(), s.layersDir(), s.imagesDir())
}

// imageDirsProblem says which of an image's dirs is missing ("" if none):
// a cut can keep a record whose dirs never reached the disk (sync off).
func (s *Store) imageDirsProblem(id string) string {
	for _, sub := range imageSubdirs {
		fi, err := os.Lstat(s.imageSub(id, sub))
		if err != nil || !fi.IsDir() {
			return fmt.Sprintf("image dir %s is missing", sub)
		}
	}
	return ""
}

// removeStray moves aside and removes parent/name, an entry of the store's
// own dir that taproot did not make (its name is no key or id).
func (s *Store) removeStray(ctx context.Context, parent, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("bad name %q", name)
	}
	t, err := s.newTmp(ctx, "trash")
	if err != nil {
		return err
	}
	defer s.removeTmp(ctx, t)
	return os.Rename(s.path(parent, name), filepath.Join(t.path, "stray"))
}
