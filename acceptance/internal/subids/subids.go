// Package subids reads a user's subordinate ID ranges with shadow's
// getsubids(1) (package uidmap, next to newuidmap). The tests learn the
// ranges from the library newuidmap itself consults, not from taproot's
// parser (idmap): a bug in that parser cannot then be shared by
// the code and the test that checks it, and the acceptance tests use only
// the binaries.
package subids

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// First returns the start of the user's first subordinate range of at
// least n IDs: uids, or gids when group is set.
func First(user string, group bool, n uint32) (uint32, error) {
	args := []string{user}
	file := "/etc/subuid"
	if group {
		args = []string{"-g", user}
		file = "/etc/subgid"
	}
	var stderr bytes.Buffer
	cmd := exec.Command("getsubids", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("getsubids %s (%s): %w: %s", strings.Join(args, " "), file, err, strings.TrimSpace(stderr.String()))
	}
	return parse(out, user, n, file)
}

// parse reads getsubids' lines, "INDEX: USER START COUNT".
func parse(out []byte, user string, n uint32, file string) (uint32, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || !strings.HasSuffix(f[0], ":") {
			return 0, fmt.Errorf("getsubids %s: unexpected line %q", user, line)
		}
		start, err1 := strconv.ParseUint(f[2], 10, 32)
		count, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("getsubids %s: unexpected line %q", user, line)
		}
		if uint32(count) >= n {
			return uint32(start), nil
		}
	}
	return 0, fmt.Errorf("%s has no range of %d IDs for %s", file, n, user)
}
