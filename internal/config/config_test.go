package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(p, []byte(`store = "/s"
[create]
uid_mappings = ["0:1000:1"]
parallel_layers = 4
with_clean = true
[registry]
timeout = "5s"
[clean]
threshold_bytes = 100
`), 0o644)
	c, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != "/s" || c.Create.ParallelLayers != 4 || c.Registry.Timeout.Duration != 5*time.Second || c.Clean.ThresholdBytes != 100 || c.Create.UIDMappings[0] != "0:1000:1" || !c.Create.WithClean {
		t.Fatalf("got %+v", c)
	}
	if c.Create.MaxLayerBytes != DefaultMaxLayerBytes || c.Create.MaxImageBytes != DefaultMaxImageBytes ||
		c.Create.MaxLayerEntries != DefaultMaxLayerEntries || c.Create.MaxCompressionRatio != DefaultMaxCompressionRatio {
		t.Fatalf("bounds not defaulted: %+v", c.Create)
	}
	os.WriteFile(p, []byte("[create]\nmax_layer_bytes = 0\nmax_compression_ratio = 7\n"), 0o644)
	if c, err = Load(p, true); err != nil || c.Create.MaxLayerBytes != 0 || c.Create.MaxCompressionRatio != 7 || c.Create.MaxLayerEntries != DefaultMaxLayerEntries {
		t.Fatalf("explicit bounds: %+v %v", c.Create, err)
	}
	if c, err := Load("", false); err != nil || c.Create.MaxImageBytes != DefaultMaxImageBytes || c.Create.WithClean {
		t.Fatalf("no file: %+v %v", c.Create, err)
	}
	os.WriteFile(p, []byte("[create]\nmax_layer_entries = -1\n"), 0o644)
	if _, err := Load(p, true); err == nil {
		t.Fatal("negative bound accepted")
	}
	os.WriteFile(p, []byte("stor = 1\n"), 0o644)
	if _, err := Load(p, true); err == nil {
		t.Fatal("unknown key accepted")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none"), false); err != nil {
		t.Fatal("missing optional config:", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none"), true); err == nil {
		t.Fatal("missing required config accepted")
	}
}

// Durability is the default: only an explicit sync = false turns it off.
func TestSyncDefault(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		body string
		want bool
	}{
		{"", true},
		{"[create]\nparallel_layers = 2\n", true},
		{"[create]\nsync = false\n", false},
		{"[create]\nsync = true\n", true},
	} {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, true)
		if err != nil {
			t.Fatal(err)
		}
		if c.Create.Sync != tc.want {
			t.Errorf("config %q: sync = %v, want %v", tc.body, c.Create.Sync, tc.want)
		}
	}
	for _, path := range []string{"", filepath.Join(dir, "missing.toml")} {
		if c, err := Load(path, false); err != nil || !c.Create.Sync {
			t.Errorf("no config file (%q): sync = %v, %v; want true", path, c.Create.Sync, err)
		}
	}
}
