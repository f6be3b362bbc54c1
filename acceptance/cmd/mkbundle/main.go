// Command mkbundle reads the runtime-spec fragment printed by
// `taproot create` on stdin and writes a complete rootless config.json for
// runc into a bundle directory:
//
//	taproot --store S create REF ID | mkbundle -bundle DIR -store S -- sh -c 'id'
//
// Mappings missing from the fragment default to 0 → the current user and
// 1..65536 → the user's first /etc/subuid and /etc/subgid ranges of
// 65536 IDs (as getsubids(1) lists them).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/taproot-dev/taproot/acceptance/internal/bundle"
	"github.com/taproot-dev/taproot/acceptance/internal/subids"
)

func main() {
	dir := flag.String("bundle", "", "bundle directory to write config.json into")
	store := flag.String("store", "", "store dir, to resolve a relative root.path")
	flag.Parse()
	if err := run(*dir, *store, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}

func run(dir, store string, args []string) error {
	if dir == "" {
		return fmt.Errorf("-bundle is required")
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	frag, err := bundle.Parse(data)
	if err != nil {
		return err
	}
	u, err := user.Current()
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	opts := bundle.Options{Args: args, StoreDir: store}
	if r, err := subids.First(u.Username, false, 65536); err == nil {
		opts.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(uid), Size: 1}, {ContainerID: 1, HostID: r, Size: 65536}}
	}
	if r, err := subids.First(u.Username, true, 65536); err == nil {
		opts.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(gid), Size: 1}, {ContainerID: 1, HostID: r, Size: 65536}}
	}
	cfg, err := bundle.Config(frag, opts)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644)
}
