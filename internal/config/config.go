// Package config reads taproot's TOML configuration file (Load, Default,
// DefaultPath) and names the default store (DefaultStore). Flags given on
// the command line override it: package builder applies flag over config
// over default, once, for every use case. A leaf: it imports no other
// taproot package (internal/depcheck pins that).
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole file.
type Config struct {
	Store     string   `toml:"store"`
	LogLevel  string   `toml:"log_level"`
	LogFormat string   `toml:"log_format"`
	Create    Create   `toml:"create"`
	Clean     Clean    `toml:"clean"`
	Registry  Registry `toml:"registry"`
	Quota     Quota    `toml:"quota"`
}

// Create holds defaults for create.
type Create struct {
	UIDMappings        []string `toml:"uid_mappings"`
	GIDMappings        []string `toml:"gid_mappings"`
	InsecureRegistries []string `toml:"insecure_registries"`
	ParallelLayers     int      `toml:"parallel_layers"`
	// Bounds on what a create unpacks (defaults below; 0 = no bound).
	MaxLayerBytes       int64 `toml:"max_layer_bytes"`
	MaxImageBytes       int64 `toml:"max_image_bytes"`
	MaxLayerEntries     int64 `toml:"max_layer_entries"`
	MaxCompressionRatio int64 `toml:"max_compression_ratio"`
	// Sync (default true) makes every image durable before create prints
	// it. false is for throwaway stores: a power cut may then lose images
	// whose create had succeeded, or leave them damaged until check --repair.
	Sync                  bool  `toml:"sync"`
	DiskLimitSizeBytes    int64 `toml:"disk_limit_size_bytes"`
	ExcludeImageFromQuota bool  `toml:"exclude_image_from_quota"`
	// WithClean makes every create run clean first, with [clean]
	// threshold_bytes as its threshold (as GrootFS's create.with_clean);
	// create's --with-clean/--without-clean override it. Default false.
	WithClean bool `toml:"with_clean"`
}

// Default bounds of create, applied unless the file sets a key (0 there
// means no bound). Fixed figures, not a share of the store's filesystem:
// they must refuse the same image on every host, and a refused image
// leaves nothing behind, so they only need to stop a hostile layer long
// before it fills a disk while passing every real image. The largest
// public layers (CUDA and ML stacks) unpack to 5-10 GiB, images to
// ~25 GiB; the largest real layers hold a few hundred thousand entries;
// real layers compress 2-10x, and a layer that inflates 100x after 64 MiB
// is a bomb (gzip of zeros: 1000x). See docs/admin.md.
const (
	DefaultMaxLayerBytes       = 16 << 30
	DefaultMaxImageBytes       = 64 << 30
	DefaultMaxLayerEntries     = 1_000_000
	DefaultMaxCompressionRatio = 100
)

// Clean holds garbage-collection settings.
type Clean struct {
	// ThresholdBytes is clean's default --threshold-bytes: do nothing
	// while the store's committed size is at most this (0 = always clean).
	// It is also the threshold of the clean before a create with
	// [create] with_clean; on its own it does not make create clean.
	ThresholdBytes int64 `toml:"threshold_bytes"`
}

// Registry holds network settings for fetching.
type Registry struct {
	Timeout        Duration `toml:"timeout"`
	Retries        int      `toml:"retries"`
	RegistriesConf string   `toml:"registries_conf"`
	AuthFile       string   `toml:"auth_file"`
	Policy         string   `toml:"policy"`
}

// Quota holds the quota helper's settings.
type Quota struct {
	Helper string `toml:"helper"`
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// DefaultPath is where taproot looks for its config when --config is not
// given: /etc/taproot/config.toml for root, else
// $XDG_CONFIG_HOME/taproot/config.toml.
func DefaultPath() string {
	if os.Geteuid() == 0 {
		return "/etc/taproot/config.toml"
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "taproot", "config.toml")
}

// Default is the config when no file sets anything.
func Default() Config {
	return Config{Create: Create{
		MaxLayerBytes:       DefaultMaxLayerBytes,
		MaxImageBytes:       DefaultMaxImageBytes,
		MaxLayerEntries:     DefaultMaxLayerEntries,
		MaxCompressionRatio: DefaultMaxCompressionRatio,
		Sync:                true,
	}}
}

// Load reads path over Default. A missing file is the default unless
// required.
func Load(path string, required bool) (Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	md, err := toml.DecodeFile(path, &c)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return c, fmt.Errorf("config %s: unknown key %q", path, und[0].String())
	}
	for k, v := range map[string]int64{"max_layer_bytes": c.Create.MaxLayerBytes, "max_image_bytes": c.Create.MaxImageBytes,
		"max_layer_entries": c.Create.MaxLayerEntries, "max_compression_ratio": c.Create.MaxCompressionRatio} {
		if v < 0 {
			return c, fmt.Errorf("config %s: [create] %s = %d: use 0 for no bound", path, k, v)
		}
	}
	return c, nil
}

// DefaultStoreHelp describes DefaultStore for --help.
const DefaultStoreHelp = "/var/lib/taproot as root, else $XDG_DATA_HOME/taproot or ~/.local/share/taproot"

// DefaultStore is the store path when neither flag nor config gives one:
// /var/lib/taproot for root, else $XDG_DATA_HOME/taproot (or
// ~/.local/share/taproot, with the home dir from $HOME or else the
// account's entry in /etc/passwd). There is no fallback in /tmp: another
// user could create that path first and own the store.
func DefaultStore() (string, error) {
	if os.Geteuid() == 0 {
		return "/var/lib/taproot", nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "taproot"), nil
	}
	home := os.Getenv("HOME")
	if !filepath.IsAbs(home) {
		u, err := user.LookupId(strconv.Itoa(os.Getuid()))
		if err != nil || !filepath.IsAbs(u.HomeDir) {
			return "", fmt.Errorf("no default store: HOME is not set and uid %d has no home directory in /etc/passwd; pass --store DIR (a dir of your own, not in /tmp)", os.Getuid())
		}
		home = u.HomeDir
	}
	return filepath.Join(home, ".local", "share", "taproot"), nil
}
