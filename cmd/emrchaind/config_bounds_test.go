package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSigCacheSizeZeroRefused: sig_cache_size = 0 reads as "no cache", but
// the app took 0 as its default (50,000 entries); it is refused instead.
func TestSigCacheSizeZeroRefused(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), []byte("[app]\nsig_cache_size = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadAppConfig(home)
	if err == nil || !strings.Contains(err.Error(), "sig_cache_size 0: want 1 to") {
		t.Fatalf("loadAppConfig with sig_cache_size = 0: %+v, %v", c.App, err)
	}
}

// TestAppConfigUpperBounds: app.toml numbers past any sane value are
// refused at load, before they do harm: sig_cache_size is allocated in
// full when the app opens, value_cache_size when the store does (32 bytes of order alone per entry, so 1<<40
// asks for 32 TiB and kills the node at start), and a broadcast_timeout
// near the largest Duration overflows the REST server's write timeout
// (broadcast_timeout + 30s) to a negative one, which net/http reads as no
// write timeout at all.
func TestAppConfigUpperBounds(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"huge sig cache":         "[app]\nsig_cache_size = 1099511627776\n",
		"huge value cache":       "[store]\nvalue_cache_size = 1099511627776\n",
		"huge broadcast timeout": "[grpc]\nbroadcast_timeout = \"2562047h47m\"\n",
	} {
		if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := loadAppConfig(home)
		if err == nil {
			t.Errorf("%s: loadAppConfig accepted %q (REST write timeout would be %v)", name, body, c.GRPC.BroadcastTimeout+30*time.Second)
		}
	}
}
