package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"

	cmtflags "github.com/cometbft/cometbft/libs/cli/flags"
	"github.com/cometbft/cometbft/libs/log"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	rpclocal "github.com/cometbft/cometbft/rpc/client/local"
	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// Environment variables that override the MinIO credentials of app.toml.
const (
	envMinIOAccessKey = "MINIO_ACCESS_KEY"
	envMinIOSecretKey = "MINIO_SECRET_KEY"
)

// Sidecar backends.
const (
	sidecarBackendFS    = "fs"
	sidecarBackendMinIO = "minio"
)

// sidecarConfig is the [sidecar] table of HOME/config/app.toml.
type sidecarConfig struct {
	// Enable runs the sidecar inside `emrchaind start`.
	Enable bool `toml:"enable"`
	// Listen is the sidecar's HTTP address.
	Listen string `toml:"listen"`
	// Node is the CometBFT RPC address `emrchaind sidecar` asks (start
	// uses the node in its own process).
	Node string `toml:"node"`
	// Backend is "fs" or "minio"; empty picks minio when minio_endpoint is
	// set, fs otherwise.
	Backend string `toml:"backend"`
	// Dir of the fs backend, relative to HOME unless absolute.
	Dir string `toml:"dir"`
	// RefIndexDir holds the sweep's reference index (the blobs committed
	// blocks reference, read from block results), relative to HOME unless
	// absolute; unused while the sweep is off.
	RefIndexDir    string `toml:"ref_index_dir"`
	MinIOEndpoint  string `toml:"minio_endpoint"`
	MinIOBucket    string `toml:"minio_bucket"`
	MinIOAccessKey string `toml:"minio_access_key"`
	MinIOSecretKey string `toml:"minio_secret_key"`
	MinIOSecure    bool   `toml:"minio_secure"`
	MinIORegion    string `toml:"minio_region"`
	MinIOPrefix    string `toml:"minio_prefix"`
	// AccessWindow: how long (block time) a committed access event lets
	// its member download.
	AccessWindow duration `toml:"access_window"`
	// MaxClockSkew between a request's timestamp and the sidecar's clock.
	MaxClockSkew duration `toml:"max_clock_skew"`
	// MaxHeadAge: how old the node's latest block may be for the sidecar
	// to authorize by it (503 beyond). "0s": no bound.
	MaxHeadAge      duration `toml:"max_head_age"`
	ReplayCacheSize int      `toml:"replay_cache_size"`
	// ReplayPerSigner: requests of one signer remembered at once; beyond
	// it the signer gets 429 until its oldest leaves the window. 0: no
	// bound of its own.
	ReplayPerSigner int `toml:"replay_per_signer"`
	// FailedAuthPerMinute: failed authentications (401) a client host may
	// have a minute, and authentications it may have under way at once;
	// beyond, its requests get 429 until one is back. 0: no bound.
	FailedAuthPerMinute int `toml:"failed_auth_per_minute"`
	// PendingBytesPerSigner, PendingBytesPatients and PendingBytesTotal
	// bound the bytes of uploads no committed record or share references
	// yet, of one signer (429), of all patients (507) and of all (507). 0:
	// no bound.
	PendingBytesPerSigner int64 `toml:"pending_bytes_per_signer"`
	PendingBytesPatients  int64 `toml:"pending_bytes_patients"`
	PendingBytesTotal     int64 `toml:"pending_bytes_total"`
	// UploadIdleTimeout bounds the wait for each read of an upload's
	// body, UploadMinRate (bytes a second) the body's pace after a first
	// idle timeout (408 beyond either). "0s" / 0: no bound.
	UploadIdleTimeout duration `toml:"upload_idle_timeout"`
	UploadMinRate     int64    `toml:"upload_min_rate"`
	// MaxUploads bounds the uploads whose body is being read at once
	// (503), MaxUploadsPerSigner those of one signer (429),
	// MaxUploadsPatients those of all patients (503). 0: no bound.
	MaxUploads          int `toml:"max_uploads"`
	MaxUploadsPerSigner int `toml:"max_uploads_per_signer"`
	MaxUploadsPatients  int `toml:"max_uploads_patients"`
	// SweepInterval between garbage-collection passes; "0s" disables them.
	SweepInterval   duration `toml:"sweep_interval"`
	SweepGrace      duration `toml:"sweep_grace"`
	SweepMaxDeletes int      `toml:"sweep_max_deletes"`
	SweepMaxChecks  int      `toml:"sweep_max_checks"`
	// ScrubInterval between passes that read every stored blob and check
	// its SHA-256; "0s" disables them. ScrubBytesPerSecond bounds their
	// reads (0: no bound).
	ScrubInterval       duration `toml:"scrub_interval"`
	ScrubBytesPerSecond int64    `toml:"scrub_bytes_per_second"`
	// Peers are the other hospitals' sidecars (base URLs): a blob this
	// sidecar lacks is asked of them on the member's own signed request,
	// and their answer, sealed to the member, relayed (read-through).
	Peers []string `toml:"peers"`
	// MetricsFrom are the networks (CIDR prefixes, or single addresses)
	// whose hosts may read GET /metrics; empty: nobody.
	MetricsFrom []string `toml:"metrics_from"`
	// EmergencyKey names, in an emrcli keyring, the key of the
	// organization's emergency ("break-glass") service this sidecar acts as
	// (empty: it is none); EmergencyKeyringHome is that keyring's emrcli
	// home (relative to HOME unless absolute), EmergencyKeyringBackend its
	// backend ("file" or "test"), and EmergencyPassphraseFile the file
	// holding a "file" key's passphrase (else
	// EMRCHAIND_EMERGENCY_PASSPHRASE). See emergency.go.
	EmergencyKey            string `toml:"emergency_key"`
	EmergencyKeyringHome    string `toml:"emergency_keyring_home"`
	EmergencyKeyringBackend string `toml:"emergency_keyring_backend"`
	EmergencyPassphraseFile string `toml:"emergency_passphrase_file"`
	// StorageKey names, in an emrcli keyring, the key of the
	// organization's storage service this sidecar signs as towards its
	// peers (empty: none): with it, the sidecar copies every committed
	// blob it lacks from its peers, and repairs a copy it finds damaged.
	// The other three as for the emergency key (servicekey.go).
	StorageKey            string `toml:"storage_key"`
	StorageKeyringHome    string `toml:"storage_keyring_home"`
	StorageKeyringBackend string `toml:"storage_keyring_backend"`
	StoragePassphraseFile string `toml:"storage_passphrase_file"`
	// ReplicaInterval between passes that copy the committed blobs this
	// sidecar lacks (with a storage key); "0s" disables them (new blobs
	// and repairs are still copied as they commit). ReplicaBytesPerSecond
	// bounds the copying (0: no bound).
	ReplicaInterval       duration `toml:"replica_interval"`
	ReplicaBytesPerSecond int64    `toml:"replica_bytes_per_second"`
	// emergency and storage are the services loadServiceKeys loaded; nil
	// when none.
	emergency *sidecar.EmergencyService
	storage   sidecar.StorageIdentity
	// metricsFrom is MetricsFrom parsed (by resolve).
	metricsFrom []netip.Prefix
}

// duration is a time.Duration written "10m" in TOML.
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Default sidecar settings.
const (
	defaultSidecarListen = "127.0.0.1:7070"
	defaultSidecarDir    = "data/blobs"
	defaultRefIndexDir   = "data/sidecar-refs"
	defaultMinIOBucket   = "emrchain-blobs"
)

func defaultSidecarConfig() sidecarConfig {
	return sidecarConfig{
		Enable:          true,
		Listen:          defaultSidecarListen,
		Dir:             defaultSidecarDir,
		RefIndexDir:     defaultRefIndexDir,
		MinIOBucket:     defaultMinIOBucket,
		AccessWindow:    duration(sidecar.DefaultAccessWindow),
		MaxClockSkew:    duration(sidecar.DefaultMaxClockSkew),
		MaxHeadAge:      duration(sidecar.DefaultMaxHeadAge),
		ReplayCacheSize: sidecar.DefaultReplayCacheSize,
		ReplayPerSigner: sidecar.DefaultReplayPerSigner,
		SweepInterval:   duration(sidecar.DefaultSweepInterval),
		SweepGrace:      duration(sidecar.DefaultSweepGrace),
		SweepMaxDeletes: sidecar.DefaultSweepMaxDeletes,
		SweepMaxChecks:  sidecar.DefaultSweepMaxChecks,
		Peers:           []string{},
		MetricsFrom:     prefixStrings(sidecar.DefaultMetricsFrom()),

		EmergencyKeyringBackend: defaultServiceKeyringBackend,
		StorageKeyringBackend:   defaultServiceKeyringBackend,
		ReplicaInterval:         duration(sidecar.DefaultReplicaInterval),
		ReplicaBytesPerSecond:   sidecar.DefaultReplicaBytesPerSecond,

		ScrubInterval:       duration(sidecar.DefaultScrubInterval),
		ScrubBytesPerSecond: sidecar.DefaultScrubBytesPerSecond,

		FailedAuthPerMinute:   sidecar.DefaultFailedAuthPerMinute,
		PendingBytesPerSigner: sidecar.DefaultPendingBytesPerSigner,
		PendingBytesPatients:  sidecar.DefaultPendingBytesPatients,
		PendingBytesTotal:     sidecar.DefaultPendingBytesTotal,

		UploadIdleTimeout:   duration(sidecar.DefaultUploadIdleTimeout),
		UploadMinRate:       sidecar.DefaultUploadMinRate,
		MaxUploads:          sidecar.DefaultMaxUploads,
		MaxUploadsPerSigner: sidecar.DefaultMaxUploadsPerSigner,
		MaxUploadsPatients:  sidecar.UploadsPatientsShare(sidecar.DefaultMaxUploads),
	}
}

// renderSidecarConfig is the [sidecar] table of app.toml holding c, with
// comments; writeAppConfig appends it.
func renderSidecarConfig(c sidecarConfig) string {
	return fmt.Sprintf(`
[sidecar]
# Run the blob sidecar (HTTP) inside "emrchaind start". "emrchaind sidecar"
# runs it on its own with the same settings (and ignores enable).
enable = %t
# HTTP listen address. Keep it on loopback unless a TLS proxy fronts it.
listen = %q
# CometBFT RPC the standalone sidecar asks (empty: rpc.laddr of config.toml).
node = %q
# "fs" (embedded store under dir) or "minio"; empty: minio when
# minio_endpoint is set, else fs.
backend = %q
# Directory of the fs backend, relative to the home directory.
dir = %q
# Directory of the sweep's reference index, relative to the home directory:
# the blobs committed blocks reference, read from the node's block results.
ref_index_dir = %q
# MinIO / S3: "host:port" or "http(s)://host:port"; the bucket is created if
# missing, and refused if it has versioning enabled (deleted blobs would stay
# readable as old versions). MINIO_ACCESS_KEY and MINIO_SECRET_KEY in the
# environment override the keys below.
minio_endpoint = %q
minio_bucket = %q
minio_access_key = %q
minio_secret_key = %q
minio_secure = %t
minio_region = %q
# Prefix of every object name, to share a bucket between nodes ("node0/").
minio_prefix = %q
# How long, in block time, a committed access event lets its member download
# the record's ciphertext.
access_window = %q
# Largest difference between a request's timestamp and this machine's clock;
# a request seen before within it is refused as a replay.
max_clock_skew = %q
# How old, by this machine's clock, the node's latest block may be for the
# sidecar to authorize by it. A node cut off from the other validators keeps
# answering with its last block without saying it is behind; grants revoked
# and windows closed since would still count, so beyond this age every
# request is refused (503 chain_stale). The chain makes a block at least
# every consensus.create_empty_blocks_interval (10s by default). "0s": no
# bound, for a chain configured to make no empty blocks.
max_head_age = %q
# Signed requests remembered for replay protection. When they are all
# within the window, every new request is refused (503) until one leaves it.
replay_cache_size = %d
# Of those, how many one signer (member key) may hold: beyond, its requests
# are refused (429, Retry-After: the seconds until its oldest leaves the
# window) and the other signers are served. 0: no bound of its own.
replay_per_signer = %d
# Failed authentications (401: unsigned, stale, replayed, not a member, bad
# signature) one client host (IPv4 address, IPv6 /64) may have a minute,
# with a burst of as many: beyond, every request from it is refused (429,
# Retry-After) before the node is asked, until one is back. Each request
# holds one while it is authenticated, so this also bounds a host's
# authentications under way at once. The host is the connection's address,
# never X-Forwarded-For: behind a reverse proxy every client shares the
# proxy's, so raise this or set 0 and limit in the proxy. 0: no bound.
failed_auth_per_minute = %d
# Bytes of uploaded blobs that no committed record or share references yet
# (pending until referenced, or removed by the sweep): of the uploads one
# signer made, of all patients' uploads (patients enroll themselves, so a
# few accounts could otherwise take the whole total from the members a
# registrar registered), and of all. An upload that would pass them is
# refused before its body is read (429 for the signer's, 507 for the
# others). Counted again from the store and the reference index at each
# start. With the sweep off, unreferenced blobs are never removed, so these
# fill up for good. 0: no bound. Defaults: 16 GiB (four blobs of the
# default max_blob_bytes), half the total (at most 32 GiB; when this key is
# left out, half of whatever total is set) and 64 GiB. The patients' bound
# must be below the total.
pending_bytes_per_signer = %d
pending_bytes_patients = %d
pending_bytes_total = %d
# Uploads in flight. Each read of an upload's body must come within
# upload_idle_timeout, and after a first idle timeout the body must keep
# up upload_min_rate bytes a second on average; an upload that does not is
# refused (408) and its connection closed. At most max_uploads uploads
# have their body read at once (beyond: 503),
# max_uploads_per_signer of them by one signer (beyond: 429; not above
# max_uploads, which it follows down when left out) and max_uploads_patients by all patients together (beyond:
# 503; below max_uploads: patients enroll themselves, so a few accounts
# sending slowly could otherwise hold every slot), all with Retry-After
# and before the body is sent. Each
# upload in flight holds a buffer: 5 MiB with MinIO (blobs up to 48.8 GiB;
# larger ones, size/10,000), 256 KiB with fs, so the sidecar's upload
# memory is at most max_uploads of those (64 x 5 MiB = 320 MiB by
# default). "0s" / 0: no bound, which lets a client that sends no body
# hold its buffer for as long as it keeps the connection; upload_min_rate
# is enforced through the same read deadline, so upload_idle_timeout =
# "0s" turns it off too. Defaults: 30s, 65536 (64 KiB/s), 64, 8 and half
# of max_uploads (when this key is left out, half of whatever is set).
upload_idle_timeout = %q
upload_min_rate = %d
max_uploads = %d
max_uploads_per_signer = %d
max_uploads_patients = %d
# Garbage collection of blobs no committed record or share references: how
# often ("0s" disables it), how old a blob must be, and bounds per pass.
# A blob's age counts against the earlier of this sidecar's clock and the
# node's latest block: a node cut off from the chain keeps what was
# uploaded since the grace period before its last block. A
# pass deletes nothing until the reference index has read every block from
# height 1 (on a node restored from a snapshot: the state's records and
# shares, then every block after them): the node must keep the blocks and
# ABCI responses it has not read yet (storage.discard_abci_responses =
# false; emrchain never lets CometBFT prune blocks, and [store] pruning
# removes old versions of the state only). Leftovers of
# interrupted uploads older than sweep_grace are removed at start and at
# every pass, even one that cannot check blobs, and every 10m when the
# sweep is disabled.
sweep_interval = %q
sweep_grace = %q
sweep_max_deletes = %d
sweep_max_checks = %d
# The scrub: how often ("0s" disables it) every stored blob is read whole and
# checked against its SHA-256, and how fast (bytes per second; 0: no bound).
# A damaged copy (a flipped bit, a truncation) is logged, counted in
# emrchain_sidecar_damaged_copies_total and dropped, so that the next GET
# is answered from a peer, a storage service copies it back, or its uploader
# puts it again. The
# first pass comes 10 minutes after start; a pass a restart cut short goes on
# where it stopped (its progress is kept with the reference index).
scrub_interval = %q
scrub_bytes_per_second = %d
# The other sidecars of the consortium ("http://host:port"): a blob this one
# does not hold is asked of them with the member's own signed request, and
# the first answer, sealed to the member's key, is relayed to the member (not
# kept: a storage service copies blobs, below). Empty: serve only local blobs.
peers = %s
# Who may read GET /metrics (Prometheus): the hosts of these networks (CIDR
# prefixes or single addresses; others get 403). The counters tell when
# break-glass keys are released and reads are served. Behind a reverse proxy
# on this host every request comes from loopback: keep /metrics from it at
# the proxy. Empty: nobody.
metrics_from = %s
# Break-glass: make this sidecar its organization's emergency service, the
# member registered with role emergency service whose encryption key the
# patients' opt-ins are sealed to. It then releases a record's data key
# (GET /v1/emergency-key), sealed to a clinician of the organization whose
# emergency read of the record is committed and still stands, and logs each
# release; it never hands out a patient's key. emergency_key names the
# service's key in the emrcli keyring of emergency_keyring_home (relative to
# the home directory; created with "emrcli keys add"), whose backend is
# emergency_keyring_backend ("file", encrypted, or "test", UNENCRYPTED). The
# passphrase of a "file" key is the first line of emergency_passphrase_file
# (relative to the home directory; refused unless only its owner may read it,
# mode 0600 or 0400), else
# EMRCHAIND_EMERGENCY_PASSPHRASE. Empty emergency_key: not an emergency
# service (the route answers 404 no_emergency_service).
emergency_key = %q
emergency_keyring_home = %q
emergency_keyring_backend = %q
emergency_passphrase_file = %q
# Replication: make this sidecar sign as its organization's storage service,
# the member registered with role storage service ("emrcli member register
# --role storage-service", for an organization the consortium names in
# params.storage_organizations), towards its peers. It then keeps a copy of the
# ciphertext of every committed record and share (of those placed at its
# organization when params.storage_copies is set), copied from its peers as
# blocks commit and checked against its SHA-256, and copies back a copy its
# scrub or a GET dropped as damaged; emrchain_sidecar_blobs_replicated_total
# counts them. The peers serve these copies only to an active storage
# service of a named organization. A sidecar is not also the emergency
# service, and a storage key needs peers. storage_key, storage_keyring_home, storage_keyring_backend and
# storage_passphrase_file (else EMRCHAIND_STORAGE_PASSPHRASE) are as for the
# emergency key. Empty storage_key: this sidecar holds what is uploaded to it,
# and relays the rest from its peers. replica_interval: how often a pass looks
# for every committed blob this sidecar lacks (the first one 30 s after
# start; "0s": none, the blobs are still copied as they commit);
# replica_bytes_per_second bounds the copying (0: no bound).
storage_key = %q
storage_keyring_home = %q
storage_keyring_backend = %q
storage_passphrase_file = %q
replica_interval = %q
replica_bytes_per_second = %d
`, c.Enable, c.Listen, c.Node, c.Backend, c.Dir, c.RefIndexDir, c.MinIOEndpoint, c.MinIOBucket, c.MinIOAccessKey, c.MinIOSecretKey,
		c.MinIOSecure, c.MinIORegion, c.MinIOPrefix, time.Duration(c.AccessWindow).String(), time.Duration(c.MaxClockSkew).String(), time.Duration(c.MaxHeadAge).String(),
		c.ReplayCacheSize, c.ReplayPerSigner, c.FailedAuthPerMinute, c.PendingBytesPerSigner, c.PendingBytesPatients, c.PendingBytesTotal,
		time.Duration(c.UploadIdleTimeout).String(), c.UploadMinRate, c.MaxUploads, c.MaxUploadsPerSigner, c.MaxUploadsPatients, time.Duration(c.SweepInterval).String(), time.Duration(c.SweepGrace).String(), c.SweepMaxDeletes, c.SweepMaxChecks,
		time.Duration(c.ScrubInterval).String(), c.ScrubBytesPerSecond, tomlStrings(c.Peers), tomlStrings(c.MetricsFrom),
		c.EmergencyKey, c.EmergencyKeyringHome, c.EmergencyKeyringBackend, c.EmergencyPassphraseFile,
		c.StorageKey, c.StorageKeyringHome, c.StorageKeyringBackend, c.StoragePassphraseFile,
		time.Duration(c.ReplicaInterval).String(), c.ReplicaBytesPerSecond)
}

// loadSidecarConfig reads the [sidecar] table of HOME/config/app.toml over
// the defaults (a missing file or table means the defaults), with the rest
// of app.toml: one parser, so an unknown key anywhere is an error.
func loadSidecarConfig(home string) (sidecarConfig, error) {
	c, err := loadAppConfig(home)
	return c.Sidecar, err
}

// underHome is dir (def when empty), relative to home unless absolute.
func underHome(home, dir, def string) string {
	if dir == "" {
		dir = def
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(home, dir)
	}
	return dir
}

// resolve applies the environment, picks the backend and checks the
// settings; home roots a relative dir.
func (c *sidecarConfig) resolve(home string) error {
	if v := os.Getenv(envMinIOAccessKey); v != "" {
		c.MinIOAccessKey = v
	}
	if v := os.Getenv(envMinIOSecretKey); v != "" {
		c.MinIOSecretKey = v
	}
	if c.Backend == "" {
		c.Backend = sidecarBackendFS
		if c.MinIOEndpoint != "" {
			c.Backend = sidecarBackendMinIO
		}
	}
	c.Dir = underHome(home, c.Dir, defaultSidecarDir)
	c.RefIndexDir = underHome(home, c.RefIndexDir, defaultRefIndexDir)
	switch c.Backend {
	case sidecarBackendFS:
	case sidecarBackendMinIO:
		if c.MinIOEndpoint == "" || c.MinIOBucket == "" {
			return errors.New("sidecar: the minio backend needs minio_endpoint and minio_bucket")
		}
		if err := blobstore.CheckMinIOEndpoint(c.MinIOEndpoint); err != nil {
			return fmt.Errorf("sidecar: minio_endpoint: %w", err)
		}
		if c.MinIOAccessKey == "" || c.MinIOSecretKey == "" {
			return fmt.Errorf("sidecar: the minio backend needs credentials: set %s and %s (or minio_access_key and minio_secret_key in app.toml)",
				envMinIOAccessKey, envMinIOSecretKey)
		}
	default:
		return fmt.Errorf("sidecar: unknown backend %q (want %s or %s)", c.Backend, sidecarBackendFS, sidecarBackendMinIO)
	}
	switch {
	case c.Listen == "":
		return errors.New("sidecar: listen address is empty")
	case c.AccessWindow <= 0:
		return errors.New("sidecar: access_window must be positive")
	case c.MaxClockSkew <= 0:
		return errors.New("sidecar: max_clock_skew must be positive")
	case c.SweepInterval < 0 || c.SweepGrace < 0 || c.MaxHeadAge < 0 || c.ScrubInterval < 0 || c.ScrubBytesPerSecond < 0 || c.ReplicaInterval < 0 || c.ReplicaBytesPerSecond < 0:
		return errors.New("sidecar: sweep_interval, sweep_grace, max_head_age, scrub_interval, scrub_bytes_per_second, replica_interval and replica_bytes_per_second must not be negative")
	case c.ReplayCacheSize < 0 || c.SweepMaxDeletes < 0 || c.SweepMaxChecks < 0:
		return errors.New("sidecar: replay_cache_size, sweep_max_deletes and sweep_max_checks must not be negative")
	case c.ReplayPerSigner < 0 || c.FailedAuthPerMinute < 0 || c.PendingBytesPerSigner < 0 || c.PendingBytesPatients < 0 || c.PendingBytesTotal < 0:
		return errors.New("sidecar: replay_per_signer, failed_auth_per_minute and pending_bytes_per_signer, _patients and _total must not be negative (0: no bound)")
	case c.UploadIdleTimeout < 0 || c.UploadMinRate < 0 || c.MaxUploads < 0 || c.MaxUploadsPerSigner < 0 || c.MaxUploadsPatients < 0:
		return errors.New("sidecar: upload_idle_timeout, upload_min_rate, max_uploads, max_uploads_per_signer and max_uploads_patients must not be negative (0: no bound)")
	case c.MaxUploads > 0 && c.MaxUploadsPerSigner > c.MaxUploads:
		return fmt.Errorf("sidecar: max_uploads_per_signer (%d) must not be above max_uploads (%d), or it bounds nothing the total does not; 0 for no bound of its own",
			c.MaxUploadsPerSigner, c.MaxUploads)
	case c.MaxUploads > 0 && c.MaxUploadsPatients >= c.MaxUploads:
		return fmt.Errorf("sidecar: max_uploads_patients (%d) must be below max_uploads (%d), or it bounds nothing the total does not; 0 for no bound of its own",
			c.MaxUploadsPatients, c.MaxUploads)
	case c.PendingBytesTotal > 0 && c.PendingBytesPatients >= c.PendingBytesTotal:
		return fmt.Errorf("sidecar: pending_bytes_patients (%d) must be below pending_bytes_total (%d), or it bounds nothing the total does not; 0 for no bound of its own",
			c.PendingBytesPatients, c.PendingBytesTotal)
	}
	c.metricsFrom = make([]netip.Prefix, 0, len(c.MetricsFrom))
	for _, s := range c.MetricsFrom {
		p, err := parsePrefix(s)
		if err != nil {
			return fmt.Errorf("sidecar: metrics_from: %w", err)
		}
		c.metricsFrom = append(c.metricsFrom, p)
	}
	return c.resolveServiceKeys(home)
}

// checkHeadAge refuses a sidecar bound on the head's age (max_head_age)
// that an idle chain would pass: with no empty blocks, or empty blocks
// further apart than the bound, every sidecar request (an upload, which
// comes before the transaction that would make a block, too) would be
// refused as stale whenever the chain is quiet.
func checkHeadAge(c sidecarConfig, consensus *cmtcfg.ConsensusConfig) error {
	return checkIdleHeadAge("sidecar: max_head_age", time.Duration(c.MaxHeadAge), "the sidecar would refuse every request as stale", consensus)
}

// checkIdleHeadAge refuses age, the bound on the head's age that the
// setting key holds, when an idle chain's head would pass it; effect says
// what would follow.
func checkIdleHeadAge(key string, age time.Duration, effect string, consensus *cmtcfg.ConsensusConfig) error {
	switch {
	case age == 0:
		return nil
	case !consensus.CreateEmptyBlocks:
		return fmt.Errorf("%s %s with consensus.create_empty_blocks = false: an idle chain makes no blocks, and %s; set max_head_age = \"0s\" (no bound) or make empty blocks", key, age, effect)
	case consensus.CreateEmptyBlocksInterval >= age:
		return fmt.Errorf("%s %s is not above consensus.create_empty_blocks_interval %s: an idle chain's newest block would be older, and %s; raise max_head_age or lower the interval", key, age, consensus.CreateEmptyBlocksInterval, effect)
	}
	return nil
}

// openBlobStore opens the configured backend.
func (c *sidecarConfig) openBlobStore(ctx context.Context) (blobstore.Store, error) {
	if c.Backend == sidecarBackendMinIO {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return blobstore.OpenMinIO(ctx, blobstore.MinIOConfig{
			Endpoint: c.MinIOEndpoint, Bucket: c.MinIOBucket, AccessKey: c.MinIOAccessKey, SecretKey: c.MinIOSecretKey,
			Secure: c.MinIOSecure, Region: c.MinIORegion, Prefix: c.MinIOPrefix,
		})
	}
	return blobstore.OpenFS(c.Dir)
}

// newSidecarServer builds (but does not start) a sidecar from c.
func newSidecarServer(ctx context.Context, c sidecarConfig, chain sidecar.ChainView, logger log.Logger) (*sidecar.Server, error) {
	store, err := c.openBlobStore(ctx)
	if err != nil {
		return nil, err
	}
	opts := c.options()
	opts.Store, opts.Chain, opts.Logger = store, chain, logger
	return sidecar.New(opts)
}

// options are the sidecar's Options for c, without the store, the chain
// and the logger.
func (c *sidecarConfig) options() sidecar.Options {
	sweep, refDir := time.Duration(c.SweepInterval), c.RefIndexDir
	if sweep == 0 {
		// Disabled: no pass will read the reference index, so it opens
		// no database on disk.
		sweep, refDir = -1, ""
	}
	// 0 in app.toml is no bound; for the sidecar, a negative value is.
	noBound := func(v int64) int64 {
		if v == 0 {
			return -1
		}
		return v
	}
	disabledAt0 := func(d duration) time.Duration {
		if d == 0 {
			return -1 // disabled
		}
		return time.Duration(d)
	}
	scrub, replica := disabledAt0(c.ScrubInterval), disabledAt0(c.ReplicaInterval)
	return sidecar.Options{
		AccessWindow:          time.Duration(c.AccessWindow),
		MaxClockSkew:          time.Duration(c.MaxClockSkew),
		MaxHeadAge:            time.Duration(noBound(int64(c.MaxHeadAge))),
		ReplayCacheSize:       c.ReplayCacheSize,
		ReplayPerSigner:       int(noBound(int64(c.ReplayPerSigner))),
		FailedAuthPerMinute:   int(noBound(int64(c.FailedAuthPerMinute))),
		PendingBytesPerSigner: noBound(c.PendingBytesPerSigner),
		PendingBytesPatients:  noBound(c.PendingBytesPatients),
		PendingBytesTotal:     noBound(c.PendingBytesTotal),
		UploadIdleTimeout:     time.Duration(noBound(int64(c.UploadIdleTimeout))),
		UploadMinRate:         noBound(c.UploadMinRate),
		MaxUploads:            int(noBound(int64(c.MaxUploads))),
		MaxUploadsPerSigner:   int(noBound(int64(c.MaxUploadsPerSigner))),
		MaxUploadsPatients:    int(noBound(int64(c.MaxUploadsPatients))),
		SweepInterval:         sweep,
		SweepGrace:            time.Duration(c.SweepGrace),
		SweepMaxDeletes:       c.SweepMaxDeletes,
		SweepMaxChecks:        c.SweepMaxChecks,
		RefIndexDir:           refDir,
		Peers:                 c.Peers,
		MetricsFrom:           c.metricsFrom,
		ScrubInterval:         scrub,
		ScrubBytesPerSecond:   noBound(c.ScrubBytesPerSecond),
		Emergency:             c.emergency,
		Storage:               c.storage,
		ReplicaInterval:       replica,
		ReplicaBytesPerSecond: noBound(c.ReplicaBytesPerSecond),
	}
}

// sidecarService runs the sidecar beside the node in `emrchaind start`.
//
// Blob storage must not gate consensus: a validator whose MinIO is down,
// or whose reference index is locked by a standalone sidecar, still
// signs blocks. So start takes the sidecar's address at once (a port in
// use stops start, as for the API servers), and if the sidecar cannot be
// built then, the address answers 503 with the reason
// (sidecar.NotOpenHandler) while the service tries again in the
// background, with backoff, logging each failure. Settings are checked
// before the node starts (loadNodeSettings), so retrying never hides a
// typo.
type sidecarService struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the background opener returns

	mu  sync.Mutex
	srv *sidecar.Server // nil until opened
}

func (s *sidecarService) Name() string { return "sidecar" }

func (s *sidecarService) Stop(ctx context.Context) error {
	s.cancel()
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// startSidecarService starts the blob sidecar inside `emrchaind start` when
// [sidecar] enable is true (its settings resolved by loadNodeSettings), and
// returns nil (no service) when it is not. It asks the node in this
// process through CometBFT's local RPC client: no network hop, the same
// ABCI query path (committed versions, beside a block in progress) as a
// remote client would take.
func startSidecarService(ctx context.Context, env serviceEnv) (service, error) {
	c := env.appConfig.Sidecar
	if !c.Enable {
		return nil, nil
	}
	logger := env.logger.With("module", "sidecar")
	ln := take(&env.listeners.sidecar)
	chain := sidecar.NewNodeChainView(rpclocal.New(env.node))
	open := func(ctx context.Context) (*sidecar.Server, error) { return newSidecarServer(ctx, c, chain, logger) }
	srv, err := open(ctx)
	if err == nil {
		if err := srv.Serve(ln); err != nil {
			return nil, errors.Join(err, ln.Close(), srv.Shutdown(context.Background()))
		}
		go checkEmergencyService(ctx, srv, c, logger)
		done := make(chan struct{})
		close(done)
		return &sidecarService{cancel: func() {}, done: done, srv: srv}, nil
	}
	// Not now: answer 503 at the address, and try again.
	waiting := &notOpenServer{backend: c.Backend}
	waiting.setWhy(err)
	waiting.serve(ln)
	retryCtx, cancel := context.WithCancel(ctx)
	s := &sidecarService{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer waiting.close()
		for wait := retryMin; err != nil; wait = nextRetry(wait) {
			logger.Error("the sidecar cannot start; the node runs on, and the sidecar's address answers 503 until it starts",
				"err", err, "retry_in", wait)
			select {
			case <-retryCtx.Done():
				return
			case <-time.After(wait):
			}
			if srv, err = open(retryCtx); err != nil {
				waiting.setWhy(err)
			}
		}
		if retryCtx.Err() != nil {
			_ = srv.Shutdown(context.Background())
			return
		}
		// The waiting server hands its socket over: the address is never
		// free, and stays the same with a port of 0.
		ln, err := waiting.release()
		if err == nil {
			if err = srv.Serve(ln); err != nil {
				_ = ln.Close()
			}
		}
		if err != nil {
			_ = srv.Shutdown(context.Background())
			logger.Error("the sidecar could not take its address; restart the node to start it", "err", err)
			return
		}
		s.mu.Lock()
		s.srv = srv
		s.mu.Unlock()
		logger.Info("the sidecar has started", "listen", c.Listen)
		checkEmergencyService(retryCtx, srv, c, logger)
	}()
	return s, nil
}

// notOpenServer answers 503 at the sidecar's address, saying why
// (sidecar.NotOpenHandler), while the sidecar cannot be built. Its methods
// are called by one goroutine at a time.
type notOpenServer struct {
	backend string
	why     atomic.Pointer[string]
	srv     *http.Server  // nil when not serving
	ln      *handoff      // what srv serves on
	served  chan struct{} // closed when srv.Serve returns
}

func (n *notOpenServer) setWhy(err error) {
	msg := err.Error()
	n.why.Store(&msg)
}

func (n *notOpenServer) serve(ln net.Listener) {
	n.ln = &handoff{Listener: ln}
	n.srv = &http.Server{Handler: sidecar.NotOpenHandler(n.backend, func() string { return *n.why.Load() }),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	n.served = make(chan struct{})
	go func(srv *http.Server, ln net.Listener, served chan struct{}) {
		defer close(served)
		_ = srv.Serve(ln)
	}(n.srv, n.ln, n.served)
}

// release stops serving and returns the socket, open, for the sidecar to
// serve on. It fails (and then closes it) only for a listener that cannot
// be woken from Accept without being closed, which a TCP one can.
func (n *notOpenServer) release() (net.Listener, error) {
	ln, srv, served := n.ln, n.srv, n.served
	n.ln, n.srv = nil, nil
	if ln == nil {
		return nil, errors.New("sidecar: not serving")
	}
	dl, ok := ln.Listener.(interface{ SetDeadline(time.Time) error })
	if !ok {
		_ = srv.Close()
		_ = ln.Listener.Close()
		return nil, fmt.Errorf("sidecar: cannot hand over a %T", ln.Listener)
	}
	ln.released.Store(true)
	if err := dl.SetDeadline(time.Now()); err != nil { // wakes Accept
		_ = srv.Close()
		_ = ln.Listener.Close()
		return nil, err
	}
	_ = srv.Close() // the connections it holds; the socket stays open
	<-served
	if err := dl.SetDeadline(time.Time{}); err != nil {
		_ = ln.Listener.Close()
		return nil, err
	}
	return ln.Listener, nil
}

func (n *notOpenServer) close() {
	if n.srv != nil {
		_ = n.srv.Close()
		<-n.served
		_ = n.ln.Listener.Close()
		n.ln, n.srv = nil, nil
	}
}

// handoff is the 503 server's view of the sidecar's socket: closing it
// leaves the socket open, and once released its Accept fails for good (not
// with the timeout error http.Server would retry), so that release can
// take the socket back without closing it.
type handoff struct {
	net.Listener
	released atomic.Bool
}

func (h *handoff) Accept() (net.Conn, error) {
	c, err := h.Listener.Accept()
	if h.released.Load() {
		if c != nil {
			_ = c.Close() // accepted as the socket changed hands
		}
		return nil, net.ErrClosed
	}
	return c, err
}

func (h *handoff) Close() error { return nil }

func newSidecarCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sidecar",
		Short: "Run the blob sidecar on its own, beside a node",
		Long: `sidecar runs the blob sidecar: an HTTP server that stores ciphertext under its
SHA-256 (PUT /v1/blobs/{sha256}; a record re-encrypted for a study: PUT
/v1/shared-blobs/{sha256}) and serves it (GET /v1/blobs/{sha256}?record=
<patient>/<seq> or ?share=<patient>/<seq>, with ranges) only to members the
chain allows: for a record, the patient's owner or a member whose
RecordAccess for that record is committed and younger than the access window;
for a share, the study's principal investigator and researchers. The record
or share must have exactly that blob.
Requests are signed with the member's ed25519 key (X-Emr-Address,
X-Emr-Timestamp, X-Emr-Body-SHA256, X-Emr-Signature); stale or replayed
requests are refused. GET /healthz and GET /metrics
(Prometheus; to the hosts of app.toml metrics_from only, loopback by
default) need no signature.

Quotas: one signer may have replay_per_signer requests within the
timestamp window (beyond: 429 with Retry-After), one client host (IPv4
address or IPv6 /64) failed_auth_per_minute failed authentications a
minute (beyond: 429 with Retry-After, whatever it sends), and the uploads
no committed record or share references yet may hold
pending_bytes_per_signer bytes per signer (beyond: 429),
pending_bytes_patients for all patients together and pending_bytes_total
in all (beyond either: 507). An upload's body must come within
upload_idle_timeout per read and at upload_min_rate (beyond: 408);
max_uploads uploads may be read at once (beyond: 503),
max_uploads_per_signer of one signer (beyond: 429) and
max_uploads_patients of all patients together (beyond: 503).

Settings come from the [sidecar] table of HOME/config/app.toml (defaults if
there is none); the flags override them. The backend is the embedded
filesystem store (HOME/data/blobs) unless a MinIO endpoint is configured;
MinIO credentials come from MINIO_ACCESS_KEY and MINIO_SECRET_KEY or from
app.toml. The sidecar asks the node at --node (default: [sidecar] node of
app.toml, else rpc.laddr of HOME/config/config.toml, else
tcp://127.0.0.1:26657) over CometBFT RPC and trusts it: run it beside your
own node, over loopback or a link no one else can change. "emrchaind start" runs the same
sidecar in-process when [sidecar] enable = true.

The sweep deletes blobs older than the grace period that no committed
record or share references. It learns the references from the node's block
results (the event attribute emrchain.blob) and keeps them in a reference
index (HOME/data/sidecar-refs, or ref_index_dir); a pass deletes nothing
unless the index is complete up to the head, so the node must keep the ABCI
responses of the blocks it has not read yet. On a node that holds no blocks
from height 1 (restored from a state-sync snapshot, or pruned), and for an
index whose next blocks the node no longer holds, the index is read from the
records and shares in the state instead. Two sidecars cannot
share a reference index: give a second one on the same home its own
--ref-index-dir.

Break-glass: with --emergency-key (app.toml emergency_key) the sidecar is
its organization's emergency service. The key is a member's key in an emrcli
keyring (--emergency-keyring-home, --emergency-keyring-backend; created with
"emrcli keys add" and registered with role emergency service); a "file"
key's passphrase is the first line of --emergency-passphrase-file, else
` + envEmergencyPassphrase + `. The sidecar then answers GET
/v1/emergency-key?record=<patient>/<seq>, signed by a clinician of the
organization whose latest committed access event of the record is an
emergency read through this service, still standing (at most the chain's
emergency_access_seconds and the access window old, the patient's opt-in
to the service not revoked and covering the record's category, the service
active): it opens the opt-in with the service's key, unwraps the record's
data key, and answers it sealed to the clinician's registered encryption
key and signed with the service's key (clients take no unsigned key). It
never hands out a patient's key, and logs every release. At start it
checks that the chain has the keys it holds for the service, and says so
in the log; each release checks them again.

Replication: with --storage-key (app.toml storage_key; the other
--storage-* flags as for the emergency key, a "file" key's passphrase else in
` + envStoragePassphrase + `) the sidecar signs as its organization's
storage service, a member registered with role storage service (only an
organization named in params.storage_organizations has one). It then
copies from its peers (app.toml peers) the ciphertext of every committed
record and share it does not hold (with params.storage_copies k, of those
the placement gives its organization among k), as blocks commit and in a pass every
replica_interval, checked against its SHA-256, and copies back a copy its
scrub or a GET dropped as damaged. Every sidecar serves such copies
(GET /v1/replicas/<owner>/<sha256>) to active storage services of named
organizations only, and only of blobs a committed record or share
references, sealed to the encryption key the chain has for the service
(nothing is copied, and the log says why, while that is not the storage
key's own).
A sidecar is not both the emergency and the storage service.`,
		Example: `  emrchaind sidecar --home ./node0
  emrchaind sidecar --home ./node0 --listen 127.0.0.1:7071 --node tcp://127.0.0.1:26657
  MINIO_ACCESS_KEY=... MINIO_SECRET_KEY=... emrchaind sidecar --home ./node0 \
    --backend minio --minio-endpoint http://127.0.0.1:9000 --minio-bucket emr
  emrchaind sidecar --home ./node0 --emergency-key er-service \
    --emergency-keyring-home /etc/emrchain/er --emergency-passphrase-file /etc/emrchain/er/passphrase`,
		Args: cobra.NoArgs,
		RunE: runSidecar,
	}
	addHomeFlag(cmd)
	addLogLevelFlag(cmd, "info")
	f := cmd.Flags()
	f.String("listen", "", "HTTP listen address (default: app.toml, else "+defaultSidecarListen+")")
	f.String("node", "", "CometBFT RPC address of the node to ask (default: app.toml, else config.toml's rpc.laddr, else tcp://127.0.0.1:26657)")
	f.String("backend", "", "blob store: fs or minio (default: app.toml, else minio if an endpoint is set, else fs)")
	f.String("dir", "", "directory of the fs backend (default: app.toml, else HOME/"+defaultSidecarDir+")")
	f.String("ref-index-dir", "", "directory of the sweep's reference index (default: app.toml, else HOME/"+defaultRefIndexDir+")")
	f.String("minio-endpoint", "", "MinIO endpoint, host:port or http(s)://host:port")
	f.String("minio-bucket", "", "MinIO bucket, created if missing (default: app.toml, else "+defaultMinIOBucket+")")
	f.Bool("minio-secure", false, "use TLS to MinIO (for a host:port endpoint)")
	f.Duration("access-window", 0, "how long a committed access event allows a download, in block time (default: app.toml, else 10m)")
	f.Duration("max-clock-skew", 0, "accepted request timestamp skew (default: app.toml, else 60s)")
	f.Duration("max-head-age", 0, "refuse requests (503) while the node's latest block is older than this; 0: no bound (default: app.toml, else 1m)")
	f.Duration("sweep-interval", 0, "garbage-collection interval (default: app.toml, else 10m)")
	f.Duration("sweep-grace", 0, "never sweep blobs younger than this (default: app.toml, else 1h)")
	var zero sidecarConfig
	zero.emergencyKey().addFlags(cmd, "act as the organization's emergency (break-glass) service")
	zero.storageKey().addFlags(cmd, "sign as the organization's storage service towards the peers (copy every committed blob, repair damaged copies)")
	return cmd
}

// sidecarFromFlags loads app.toml and applies the command's flags.
func sidecarFromFlags(cmd *cobra.Command, home string) (sidecarConfig, error) {
	c, err := loadSidecarConfig(home)
	if err != nil {
		return c, err
	}
	f := cmd.Flags()
	flags := map[string]*string{
		"listen": &c.Listen, "node": &c.Node, "backend": &c.Backend, "dir": &c.Dir, "ref-index-dir": &c.RefIndexDir,
		"minio-endpoint": &c.MinIOEndpoint, "minio-bucket": &c.MinIOBucket,
	}
	pathFlags := []string{"dir", "ref-index-dir"}
	for _, k := range []serviceKey{c.emergencyKey(), c.storageKey()} {
		all, paths := k.flags()
		maps.Copy(flags, all)
		pathFlags = append(pathFlags, paths...)
	}
	for name, dst := range flags {
		if f.Changed(name) {
			*dst, _ = f.GetString(name)
		}
	}
	for _, name := range pathFlags {
		if dst := flags[name]; f.Changed(name) && !filepath.IsAbs(*dst) {
			// A flag is relative to the working directory, like every path flag.
			*dst, _ = filepath.Abs(*dst)
		}
	}
	if f.Changed("minio-secure") {
		c.MinIOSecure, _ = f.GetBool("minio-secure")
	}
	for name, dst := range map[string]*duration{
		"access-window": &c.AccessWindow, "max-clock-skew": &c.MaxClockSkew, "max-head-age": &c.MaxHeadAge,
		"sweep-interval": &c.SweepInterval, "sweep-grace": &c.SweepGrace,
	} {
		if f.Changed(name) {
			v, _ := f.GetDuration(name)
			*dst = duration(v)
		}
	}
	if c.Node == "" {
		c.Node = "tcp://127.0.0.1:26657"
		if conf, err := loadCometConfig(home); err == nil {
			c.Node = conf.RPC.ListenAddress
		}
	}
	return c, c.resolve(home)
}

func runSidecar(cmd *cobra.Command, _ []string) error {
	home, err := homeFlag(cmd)
	if err != nil {
		return err
	}
	c, err := sidecarFromFlags(cmd, home)
	if err != nil {
		return err
	}
	level, _ := cmd.Flags().GetString(flagLogLevel)
	if level == "" {
		level = "info"
	}
	logger, err := cmtflags.ParseLogLevel(level, log.NewTMLogger(log.NewSyncWriter(os.Stdout)), "info")
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger = logger.With("module", "sidecar")
	warnIfNoAppConfig(logger, home)
	if !loopbackNode(c.Node) {
		logger.Info("the sidecar takes the node's answers on trust (who may read, which blobs are referenced): "+
			"the link to it must be one no one else can change (loopback, a private network, TLS)", "node", c.Node)
	}

	if err := c.loadServiceKeys(logger); err != nil {
		return err
	}
	rpc, err := rpchttp.NewWithTimeout(c.Node, 30)
	if err != nil {
		return fmt.Errorf("node %s: %w", c.Node, err)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := newSidecarServer(ctx, c, sidecar.NewNodeChainView(rpc), logger)
	if err != nil {
		return err
	}
	if err := srv.Start(c.Listen); err != nil {
		return err
	}
	backend := c.Backend
	if backend == sidecarBackendFS {
		backend += " " + c.Dir
	} else {
		backend += " " + strings.TrimSuffix(c.MinIOEndpoint, "/") + "/" + c.MinIOBucket
	}
	logger.Info("sidecar started", "listen", srv.Addr().String(), "node", c.Node, "backend", backend)
	checkEmergencyService(ctx, srv, c, logger)
	<-ctx.Done()
	stop()
	logger.Info("signal received, shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// loopbackNode reports whether the RPC address node (tcp://, http://,
// unix:// or a bare host:port) is on this machine: a unix socket, a
// loopback address, localhost, or the unspecified address a node's
// rpc.laddr listens on when it serves every interface.
func loopbackNode(node string) bool {
	u, err := url.Parse(node)
	host := ""
	switch {
	case err == nil && u.Scheme == "unix":
		return true
	case err == nil && u.Host != "":
		host = u.Hostname()
	default:
		if h, _, err := net.SplitHostPort(node); err == nil {
			host = h
		}
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// parsePrefix reads a network of metrics_from: a CIDR prefix
// ("10.1.0.0/16") or a single address ("10.1.2.3", "::1"). IPv4-mapped
// IPv6 ones ("::ffff:10.1.0.0/112") are read as the IPv4 ones they map, as
// the sidecar judges a client's address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set: %s is the network", s, p.Masked())
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q spans more than the IPv4-mapped addresses (::ffff:0:0/96)", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// prefixStrings writes prefixes as metrics_from takes them.
func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
