package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/emrchain/emrchain/offchain/sidecar"
	"github.com/emrchain/emrchain/store"
	"github.com/emrchain/emrchain/store/cometdb"
)

// appTomlHome is a home whose config/app.toml holds body.
func appTomlHome(t testing.TB, body []byte) string {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), body, 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// writtenAppToml is app.toml as writeAppConfig (init, testnet) writes c.
func writtenAppToml(t testing.TB, c appConfig) []byte {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeAppConfig(home, c); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(home, "config", appConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// sampleAppConfigs are configs of the shapes init and testnet write.
func sampleAppConfigs() []appConfig {
	def := defaultAppConfig()
	pebble := def
	pebble.Store.Backend = store.BackendPebble
	pebble.Store.PruningKeepRecent, pebble.Store.PruningInterval = 1000, 100
	pebble.Store.CometBFTMemTableMiB, pebble.Store.ValueCacheSize = 0, 0
	pebble.App.AllowedPeers = []string{strings.Repeat("9a", 20), strings.Repeat("0", 39) + "1"}
	pebble.GRPC = grpcConfig{Enable: false, Address: "", BroadcastTimeout: time.Hour}
	pebble.API = apiConfig{Enable: true, Address: "[::1]:11317", CORSAllowedOrigins: []string{"https://app.example.org", "*"}}
	pebble.App.AllowedHosts = []string{"*"}
	minio := def
	minio.Sidecar.Backend, minio.Sidecar.MinIOEndpoint, minio.Sidecar.MinIOBucket = sidecarBackendMinIO, "127.0.0.1:9000", "emrchain-testnet"
	minio.Sidecar.MinIOPrefix, minio.Sidecar.MinIORegion, minio.Sidecar.MinIOSecure = "node0/", "eu-west-1", true
	minio.Sidecar.SweepInterval, minio.Sidecar.AccessWindow = 0, duration(90*time.Second)
	minio.Sidecar.PendingBytesPerSigner, minio.Sidecar.PendingBytesPatients, minio.Sidecar.PendingBytesTotal = 0, 3<<40, 5<<40
	minio.Sidecar.MaxUploads, minio.Sidecar.MaxUploadsPatients = 10, 3
	fs := def
	fs.Sidecar.Listen, fs.Sidecar.Dir, fs.Sidecar.RefIndexDir = "127.0.0.1:26660", "/var/lib/emrchain/blobs", "refs"
	fs.Sidecar.Peers = []string{"http://127.0.0.1:26670", "http://127.0.0.1:26680"}
	fs.App.AllowedPeers = []string{strings.Repeat("ab", 20)}
	fs.Sidecar.EmergencyKey, fs.Sidecar.EmergencyKeyringHome, fs.Sidecar.EmergencyPassphraseFile = "er-service", "/etc/emrchain/er", "er/passphrase"
	return []appConfig{def, pebble, minio, fs}
}

// appTomlSeeds: the writer's files, and edits of them at every bound.
func appTomlSeeds(f *testing.F) {
	for _, c := range sampleAppConfigs() {
		f.Add(writtenAppToml(f, c))
	}
	for _, seed := range []string{
		"",
		"[store]\nbackend = \"memdb\"\n",
		"[store]\npruning_keep_recent = 100\npruning_interval = 1\n",
		"[store]\npruning_keep_recent = 99\npruning_interval = 10\n",
		"[store]\npruning_keep_recent = -1\npruning_interval = 10\n",
		"[store]\npruning_keep_recent = 1000\npruning_interval = -1\n",
		"[store]\ncache_size = -1\nvalue_cache_size = 9223372036854775807\n",
		"[store]\ncometbft_memtable_mib = 4095\n",
		"[store]\nsnapshot_interval = -1\n",
		"[store]\nsnapshot_interval = 100\nsnapshot_keep_recent = 0\n",
		"[store]\ncometbft_memtable_mib = 4096\n",
		"[store]\ncache_size = 1.5\n",
		"[app]\nsig_cache_size = 10000000\n",
		"[app]\nsig_cache_size = 0\n",
		"[app]\nsig_cache_size = 10000001\n",
		"[app]\nallowed_peers = [\"" + strings.Repeat("A", 40) + "\", \"zz\"]\n",
		"[grpc]\nbroadcast_timeout = \"1h0m0.000000001s\"\n",
		"[grpc]\nbroadcast_timeout = 1000000000\n",
		"[grpc]\nbroadcast_timeout = \"-1s\"\n",
		"[grpc]\nmax_head_age = \"-1ns\"\n",
		"[grpc]\nmax_head_age = \"0s\"\n[sidecar]\nmax_head_age = \"5m\"\n",
		"[sidecar]\nmax_head_age = \"2h0m10s\"\n",
		"[grpc]\nenable = false\naddress = \"\"\n[api]\nenable = false\naddress = \"127.0.0.1:0\"\n",
		"[grpc]\naddress = \"tcp://127.0.0.1:9090\"\n",
		"[api]\naddress = \":65535\"\n",
		"[api]\naddress = \"127.0.0.1:65536\"\n",
		"[api]\naddress = \"[::1%25eth0]:1\"\n",
		"[api]\ncors_allowed_origins = [\"a,b\"]\n",
		"[app]\nallowed_hosts = [\"http://node0\"]\n",
		"[api]\ncors_allowed_origins = [\"\\u00a0\"]\n",
		"[sidecar]\nlisten = \"\"\nenable = false\n",
		"[sidecar]\npending_bytes_total = 1\n",
		"[sidecar]\npending_bytes_total = 1000\npending_bytes_patients = 1000\n",
		"[sidecar]\npending_bytes_total = -1\npending_bytes_patients = -1\n",
		"[sidecar]\nupload_idle_timeout = \"0s\"\nupload_min_rate = 0\nmax_uploads = 0\nmax_uploads_per_signer = 0\n",
		"[sidecar]\nupload_idle_timeout = \"-1s\"\nupload_min_rate = -1\n",
		"[sidecar]\nmax_uploads = 4\nmax_uploads_per_signer = 5\n",
		"[sidecar]\nmax_uploads = 4\nmax_uploads_patients = 4\n",
		"[sidecar]\nmax_uploads = 9\n",
		"[sidecar]\nmax_uploads = -1\nmax_uploads_per_signer = -1\n",
		"[sidecar]\naccess_window = \"0s\"\nmax_clock_skew = \"-1m\"\nsweep_interval = \"-1s\"\n",
		"[sidecar]\nscrub_interval = \"0s\"\nscrub_bytes_per_second = 0\n",
		"[sidecar]\nscrub_interval = \"-1h\"\nscrub_bytes_per_second = -5\n",
		"[sidecar]\nbackend = \"minio\"\nminio_bucket = \"\"\n",
		"[sidecar]\nminio_endpoint = \"x\"\nminio_access_key = \"a\"\nminio_secret_key = \"s\"\n",
		"[sidecar]\nnode = \"\\u007f\\u0000\"\n",
		"[sidecar]\nminio_secret_key = 'a\"b\\\\c'\n",
		"[sidecar]\nno_such_key = 1\n",
		"[testsection]\nanything = 1\n",
		"[store\n",
	} {
		f.Add([]byte(seed))
	}
}

// checkListenAddress: an enabled server's address is host:port with a
// port from 1 to 65535, a disabled one's is empty or host:port.
func checkListenAddress(t *testing.T, key, addr string, enabled bool) {
	t.Helper()
	if addr == "" && !enabled {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil || (enabled && n == 0) || strings.Contains(host, "/") {
		t.Fatalf("%s %q accepted (enabled %v)", key, addr, enabled)
	}
}

// FuzzLoadAppConfig: app.toml is refused with an error naming the file,
// or every bound config.go documents holds of what it reads (backend,
// non-negative caches, pruning of both or neither and at least 100
// versions, memtable MiB, sig cache, node ids, broadcast timeout, health's
// max_head_age, listen addresses, CORS origins), and an unset
// pending_bytes_patients follows the total, an unset max_uploads_patients
// half of max_uploads, an unset [grpc] max_head_age the sidecar's. Written again by writeAppConfig (what init and testnet
// write), it reads back as the same settings, and the writer's own
// files read back as what it wrote.
func FuzzLoadAppConfig(f *testing.F) {
	samples := sampleAppConfigs()
	written := make([][]byte, len(samples)) // the writer's files, once
	for i, c := range samples {
		written[i] = writtenAppToml(f, c)
	}
	appTomlSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		home := appTomlHome(t, body)
		c, err := loadAppConfig(home)
		if err != nil {
			if !strings.Contains(err.Error(), filepath.Join(home, "config", appConfigFile)) {
				t.Fatalf("%q refused with %v, which does not name the file", body, err)
			}
			return
		}
		s := c.Store
		switch {
		case s.Backend != store.BackendGoLevelDB && s.Backend != store.BackendPebble,
			s.CacheSize < 0, s.ValueCacheSize < 0, s.ValueCacheSize > maxValueCacheSize,
			s.PruningKeepRecent < 0, s.PruningInterval < 0,
			(s.PruningKeepRecent == 0) != (s.PruningInterval == 0),
			s.PruningKeepRecent != 0 && s.PruningKeepRecent < minPruningKeepRecent,
			s.CometBFTMemTableMiB < 0, s.CometBFTMemTableMiB > cometdb.MaxMemTableMiB,
			s.SnapshotInterval < 0, s.SnapshotKeepRecent < 1, s.SnapshotKeepRecent > maxSnapshotKeepRecent,
			c.App.SigCacheSize < 1, c.App.SigCacheSize > maxSigCacheSize,
			c.GRPC.BroadcastTimeout <= 0, c.GRPC.BroadcastTimeout > maxBroadcastTimeout, c.GRPC.MaxHeadAge < 0:
			t.Fatalf("%q accepted as %+v", body, c)
		}
		if o := c.storeOptions(); o.Backend != s.Backend || o.CacheSize != s.CacheSize || o.KeepRecent != uint64(s.PruningKeepRecent) ||
			o.PruneInterval != uint64(s.PruningInterval) || (s.ValueCacheSize == 0) != (o.ValueCacheSize < 0) {
			t.Fatalf("store options %+v of %+v", o, s)
		}
		for _, id := range c.App.AllowedPeers {
			if len(id) != 40 || strings.Trim(id, "0123456789abcdefABCDEF") != "" {
				t.Fatalf("allowed peer %q accepted", id)
			}
		}
		for _, o := range c.API.CORSAllowedOrigins {
			if o == "" || strings.ContainsAny(o, " \t\r\n,") {
				t.Fatalf("CORS origin %q accepted", o)
			}
		}
		for _, h := range c.App.AllowedHosts {
			if h != allowAnyHost && (h == "" || strings.ContainsAny(h, " :/*")) {
				t.Fatalf("allowed host %q accepted", h)
			}
		}
		checkListenAddress(t, "grpc.address", c.GRPC.Address, c.GRPC.Enable)
		checkListenAddress(t, "api.address", c.API.Address, c.API.Enable)
		checkListenAddress(t, "sidecar.listen", c.Sidecar.Listen, c.Sidecar.Enable)
		var tree map[string]any
		md, err := toml.NewDecoder(bytes.NewReader(body)).Decode(&tree)
		if err != nil {
			t.Fatalf("%q accepted, but is not TOML: %v", body, err)
		}
		if !md.IsDefined("sidecar", "pending_bytes_patients") && c.Sidecar.PendingBytesPatients != sidecar.PatientsShare(c.Sidecar.PendingBytesTotal) {
			t.Fatalf("pending_bytes_patients unset: %d, want the share %d of the total %d",
				c.Sidecar.PendingBytesPatients, sidecar.PatientsShare(c.Sidecar.PendingBytesTotal), c.Sidecar.PendingBytesTotal)
		}
		if !md.IsDefined("grpc", "max_head_age") && c.GRPC.MaxHeadAge != time.Duration(c.Sidecar.MaxHeadAge) {
			t.Fatalf("[grpc] max_head_age unset: %s, want the sidecar's %s", c.GRPC.MaxHeadAge, time.Duration(c.Sidecar.MaxHeadAge))
		}
		if !md.IsDefined("sidecar", "max_uploads_patients") && c.Sidecar.MaxUploadsPatients != sidecar.UploadsPatientsShare(c.Sidecar.MaxUploads) {
			t.Fatalf("max_uploads_patients unset: %d, want the share %d of max_uploads %d",
				c.Sidecar.MaxUploadsPatients, sidecar.UploadsPatientsShare(c.Sidecar.MaxUploads), c.Sidecar.MaxUploads)
		}
		for i, want := range samples {
			if bytes.Equal(body, written[i]) && !reflect.DeepEqual(c, want) {
				t.Fatalf("the writer's %+v reads back as %+v", want, c)
			}
		}

		again := writtenAppToml(t, c)
		back, err := loadAppConfig(appTomlHome(t, again))
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("%+v written as\n%s\nreads back as %+v, %v", c, again, back, err)
		}
	})
}

// FuzzLoadSidecarConfig: the [sidecar] table is read with the rest of
// app.toml (refused with an error naming the file, as FuzzLoadAppConfig
// checks). Resolved for a home, it is refused with an
// error naming the sidecar, or it has every bound resolve documents: an
// fs or minio backend (minio with an endpoint, a bucket and credentials),
// directories under the home unless absolute, a listen address, positive
// access window and clock skew, no negative duration, count or byte bound
// and a patients' bound below a set total; and the sidecar's options keep
// the settings, 0 as no bound.
func FuzzLoadSidecarConfig(f *testing.F) {
	appTomlSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		home := appTomlHome(t, body)
		c, err := loadSidecarConfig(home)
		if err != nil {
			return
		}
		read := c
		if err := c.resolve(home); err != nil {
			if !strings.HasPrefix(err.Error(), "sidecar: ") {
				t.Fatalf("resolve refused %+v with %v", read, err)
			}
			return
		}
		switch {
		case c.Backend == sidecarBackendMinIO && (c.MinIOEndpoint == "" || c.MinIOBucket == "" || c.MinIOAccessKey == "" || c.MinIOSecretKey == ""),
			c.Backend != sidecarBackendMinIO && c.Backend != sidecarBackendFS,
			read.Backend == "" && (c.Backend == sidecarBackendMinIO) != (c.MinIOEndpoint != ""),
			read.Backend != "" && c.Backend != read.Backend,
			!filepath.IsAbs(c.Dir), !filepath.IsAbs(c.RefIndexDir),
			c.Listen == "",
			c.AccessWindow <= 0, c.MaxClockSkew <= 0, c.SweepInterval < 0, c.SweepGrace < 0, c.MaxHeadAge < 0,
			c.ScrubInterval < 0, c.ScrubBytesPerSecond < 0,
			c.ReplayCacheSize < 0, c.ReplayPerSigner < 0, c.FailedAuthPerMinute < 0, c.SweepMaxDeletes < 0, c.SweepMaxChecks < 0,
			c.PendingBytesPerSigner < 0, c.PendingBytesPatients < 0, c.PendingBytesTotal < 0,
			c.PendingBytesTotal > 0 && c.PendingBytesPatients >= c.PendingBytesTotal,
			c.MaxUploads > 0 && c.MaxUploadsPerSigner > c.MaxUploads,
			c.MaxUploads > 0 && c.MaxUploadsPatients >= c.MaxUploads,
			c.UploadIdleTimeout < 0, c.UploadMinRate < 0, c.MaxUploads < 0, c.MaxUploadsPerSigner < 0, c.MaxUploadsPatients < 0:
			t.Fatalf("%q resolved as %+v", body, c)
		}
		o := c.options()
		noBound := func(set, opt int64) bool { return (set == 0 && opt < 0) || (set > 0 && opt == set) }
		if o.AccessWindow != time.Duration(c.AccessWindow) || o.MaxClockSkew != time.Duration(c.MaxClockSkew) ||
			o.ReplayCacheSize != c.ReplayCacheSize || !noBound(int64(c.ReplayPerSigner), int64(o.ReplayPerSigner)) ||
			!noBound(int64(c.FailedAuthPerMinute), int64(o.FailedAuthPerMinute)) ||
			!noBound(c.PendingBytesPerSigner, o.PendingBytesPerSigner) || !noBound(c.PendingBytesPatients, o.PendingBytesPatients) ||
			!noBound(c.PendingBytesTotal, o.PendingBytesTotal) ||
			!noBound(int64(c.UploadIdleTimeout), int64(o.UploadIdleTimeout)) || !noBound(c.UploadMinRate, o.UploadMinRate) ||
			!noBound(int64(c.MaxUploads), int64(o.MaxUploads)) || !noBound(int64(c.MaxUploadsPerSigner), int64(o.MaxUploadsPerSigner)) ||
			!noBound(int64(c.MaxUploadsPatients), int64(o.MaxUploadsPatients)) ||
			!noBound(int64(c.MaxHeadAge), int64(o.MaxHeadAge)) ||
			(c.SweepInterval == 0) != (o.SweepInterval < 0 && o.RefIndexDir == "") ||
			(c.SweepInterval > 0 && (o.SweepInterval != time.Duration(c.SweepInterval) || o.RefIndexDir != c.RefIndexDir)) ||
			(c.ScrubInterval == 0) != (o.ScrubInterval < 0) || (c.ScrubInterval > 0 && o.ScrubInterval != time.Duration(c.ScrubInterval)) ||
			!noBound(c.ScrubBytesPerSecond, o.ScrubBytesPerSecond) ||
			!reflect.DeepEqual(o.Peers, c.Peers) {
			t.Fatalf("options %+v of %+v", o, c)
		}
	})
}
