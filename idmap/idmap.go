// Package idmap parses and applies user-namespace ID mappings
// (container ID → host ID ranges), as written in /proc/PID/uid_map,
// /etc/subuid and the --uid-mapping flag.
//
// It is a top-level package, not internal, because its Mapping is part of
// the public signatures of store (Options, Meta), worker (Runner) and spec
// (the fragment's ID mappings): a caller of those packages must be able to
// name the type. It imports no other taproot package (internal/depcheck).
package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// Mapping maps Size consecutive container IDs starting at ContainerID to host
// IDs starting at HostID.
type Mapping struct {
	ContainerID uint32 `json:"container_id"`
	HostID      uint32 `json:"host_id"`
	Size        uint32 `json:"size"`
}

// ErrUnmapped reports an ID that no mapping covers.
var ErrUnmapped = errors.New("id is not covered by the mapping")

// MaximusID is the host ID that container root maps to when taproot runs
// as root, as Cloud Foundry's "maximus" mapping does.
const MaximusID = math.MaxUint32 - 1

// Parse parses "C:H:N" (container ID, host ID, size).
func Parse(s string) (Mapping, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Mapping{}, fmt.Errorf("id mapping %q: want CONTAINER_ID:HOST_ID:SIZE", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Mapping{}, fmt.Errorf("id mapping %q: field %d: %w", s, i+1, err)
		}
		v[i] = uint32(n)
	}
	m := Mapping{ContainerID: v[0], HostID: v[1], Size: v[2]}
	if m.Size == 0 {
		return Mapping{}, fmt.Errorf("id mapping %q: size must be positive", s)
	}
	if uint64(m.ContainerID)+uint64(m.Size) > math.MaxUint32+1 || uint64(m.HostID)+uint64(m.Size) > math.MaxUint32+1 {
		return Mapping{}, fmt.Errorf("id mapping %q: range overflows 32 bits", s)
	}
	return m, nil
}

// ParseList parses several "C:H:N" mappings and checks that neither their
// container ranges nor their host ranges overlap.
func ParseList(specs []string) ([]Mapping, error) {
	var ms []Mapping
	for _, s := range specs {
		m, err := Parse(s)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	if err := Validate(ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// Validate checks that ms is non-empty and that no two mappings overlap on
// either side.
func Validate(ms []Mapping) error {
	if len(ms) == 0 {
		return errors.New("empty id mapping")
	}
	if len(ms) > 340 { // the kernel's limit on uid_map lines
		return fmt.Errorf("%d id mappings: the kernel accepts at most 340", len(ms))
	}
	for i, a := range ms {
		if a.Size == 0 {
			return fmt.Errorf("id mapping %s: size must be positive", a)
		}
		for _, b := range ms[i+1:] {
			if overlaps(a.ContainerID, a.Size, b.ContainerID, b.Size) {
				return fmt.Errorf("id mappings %s and %s overlap in container ids", a, b)
			}
			if overlaps(a.HostID, a.Size, b.HostID, b.Size) {
				return fmt.Errorf("id mappings %s and %s overlap in host ids", a, b)
			}
		}
	}
	return nil
}

func overlaps(a, an, b, bn uint32) bool {
	return uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}

func (m Mapping) String() string {
	return fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
}

// ToHost translates a container ID to its host ID.
func ToHost(ms []Mapping, id uint32) (uint32, error) {
	for _, m := range ms {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), nil
		}
	}
	return 0, fmt.Errorf("container id %d: %w", id, ErrUnmapped)
}

// ToContainer translates a host ID to its container ID.
func ToContainer(ms []Mapping, id uint32) (uint32, error) {
	for _, m := range ms {
		if id >= m.HostID && uint64(id) < uint64(m.HostID)+uint64(m.Size) {
			return m.ContainerID + (id - m.HostID), nil
		}
	}
	return 0, fmt.Errorf("host id %d: %w", id, ErrUnmapped)
}

// Maximus returns the mapping taproot uses when it runs as root: container
// root to MaximusID, container 1..MaximusID-1 to the same host IDs.
func Maximus() []Mapping {
	return []Mapping{
		{ContainerID: 0, HostID: MaximusID, Size: 1},
		{ContainerID: 1, HostID: 1, Size: MaximusID - 1},
	}
}

// ProcFormat renders ms as the kernel's uid_map/gid_map file content.
func ProcFormat(ms []Mapping) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	return b.String()
}

// SubIDRange is one line of /etc/subuid or /etc/subgid.
type SubIDRange struct {
	Start, Count uint32
}

// ReadSubIDs returns the ranges /etc/subuid-style file path grants to the
// user with the given name or numeric ID.
func ReadSubIDs(path, name string, id uint32) ([]SubIDRange, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []SubIDRange
	sc := bufio.NewScanner(f)
	idStr := strconv.FormatUint(uint64(id), 10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 || (parts[0] != name && parts[0] != idStr) {
			continue
		}
		start, err1 := strconv.ParseUint(parts[1], 10, 32)
		count, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		out = append(out, SubIDRange{Start: uint32(start), Count: uint32(count)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// ForUser builds the rootless mapping for a non-root caller: container 0 is
// the caller's own ID, container 1..N are the caller's sub-IDs from
// subIDFile (in file order).
func ForUser(subIDFile string, uid uint32, self uint32) ([]Mapping, error) {
	name := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	ranges, err := ReadSubIDs(subIDFile, name, uid)
	if err != nil {
		return nil, fmt.Errorf("sub-id ranges for %s: %w", name, err)
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("no sub-id range for user %s in %s: add one (usermod --add-subuids/--add-subgids) or pass --uid-mapping/--gid-mapping", name, subIDFile)
	}
	ms := []Mapping{{ContainerID: 0, HostID: self, Size: 1}}
	next := uint64(1)
	for _, r := range ranges {
		if next+uint64(r.Count) > math.MaxUint32 {
			break
		}
		ms = append(ms, Mapping{ContainerID: uint32(next), HostID: r.Start, Size: r.Count})
		next += uint64(r.Count)
	}
	return ms, Validate(ms)
}
