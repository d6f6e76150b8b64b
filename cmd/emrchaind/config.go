package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/p2p"
	"github.com/mitchellh/mapstructure"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/durable"
	"github.com/emrchain/emrchain/offchain/sidecar"
	"github.com/emrchain/emrchain/store"
	"github.com/emrchain/emrchain/store/cometdb"
)

// appConfigFile is config/app.toml: the emrchain settings CometBFT's
// config.toml has no place for.
const appConfigFile = "app.toml"

// appDBDir is the application store's directory under the data directory.
const appDBDir = "app.db"

// errNotInitialized is returned when HOME has no config.toml.
var errNotInitialized = errors.New("home directory is not initialized")

// cometRPCNotes are what emrchaind adds to the [rpc] comments of
// CometBFT's config.toml template: the checks rpcService makes that
// CometBFT's own server does not. Each goes after the first line that is
// its key.
var cometRPCNotes = []struct{ after, note string }{
	{"# TCP or UNIX socket address for the RPC server to listen on\n",
		"# (emrchaind serves it itself: a request whose Host header is neither an IP\n" +
			"# address nor a name in app.toml [app] allowed_hosts is refused, 403.)\n"},
	{"# Use '[\"*\"]' to allow any origin\n",
		"# (emrchaind: also the only origins a browser may open /websocket from.)\n"},
}

// writeCometConfig writes conf as HOME/config/config.toml with CometBFT's
// template, and cometRPCNotes in its comments, in one durable replace: the
// template is rendered into a scratch directory beside it first, because
// CometBFT renders it only into a file, in place, and exits the process
// when that write fails.
func writeCometConfig(home string, conf *cmtcfg.Config) error {
	path := filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultConfigFileName)
	scratch, err := os.MkdirTemp(filepath.Dir(path), ".config-render-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.RemoveAll(scratch)
	rendered := filepath.Join(scratch, cmtcfg.DefaultConfigFileName)
	cmtcfg.WriteConfigFile(rendered, conf)
	raw, err := os.ReadFile(rendered)
	if err != nil {
		return err
	}
	body := string(raw)
	for _, n := range cometRPCNotes {
		if i := strings.Index(body, n.after); i >= 0 {
			at := i + len(n.after)
			body = body[:at] + n.note + body[at:]
		}
	}
	return durable.ReplaceFile(path, []byte(body), 0o644)
}

// loadCometConfig reads HOME/config/config.toml over CometBFT's defaults,
// exactly as CometBFT's own CLI does (same keys, same duration and list
// syntax), and roots every path at home.
func loadCometConfig(home string) (*cmtcfg.Config, error) {
	path := filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultConfigFileName)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s not found (run: emrchaind init --home %s --chain-id ID)", errNotInitialized, path, home)
	}
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(raw)).Decode(&tree); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	conf := cmtcfg.DefaultConfig()
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		// The hooks viper uses for CometBFT: "500ms" durations, "a,b" lists.
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
		WeaklyTypedInput: true,
		// A misspelt key would otherwise leave its setting at the default
		// without a word ([statesync] "enabled" for "enable").
		ErrorUnused: true,
		Result:      conf,
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(tree); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	conf.SetRoot(home)
	if err := checkStateSync(conf.StateSync); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := conf.ValidateBasic(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return conf, nil
}

// errStateSync is returned for [statesync] enable = true with settings
// state sync cannot start with.
var errStateSync = errors.New("[statesync] enable = true, but state sync cannot start")

// checkStateSync explains what a node joining by state sync needs when
// its [statesync] settings cannot work: CometBFT's own check only names
// the first missing field.
func checkStateSync(c *cmtcfg.StateSyncConfig) error {
	if !c.Enable {
		return nil
	}
	if err := c.ValidateBasic(); err != nil {
		return fmt.Errorf("%w: %w; it needs rpc_servers (two or more RPC addresses of the consortium's nodes, "+
			"for the light client), trust_height and trust_hash (a header you obtained and checked out of band) "+
			"and trust_period (see README.md, \"Joining a running chain\")", errStateSync, err)
	}
	return nil
}

// appConfig is config/app.toml.
type appConfig struct {
	Store   storeConfig   `toml:"store"`
	App     appSettings   `toml:"app"`
	GRPC    grpcConfig    `toml:"grpc"`
	API     apiConfig     `toml:"api"`
	Sidecar sidecarConfig `toml:"sidecar"`
}

type storeConfig struct {
	// Backend of data/app.db: goleveldb or pebble.
	Backend string `toml:"backend"`
	// IAVL node cache size, in nodes.
	CacheSize int `toml:"cache_size"`
	// Values of the latest version kept in memory for reads; 0 keeps none.
	ValueCacheSize int `toml:"value_cache_size"`
	// Versions kept by pruning; 0 keeps every version.
	PruningKeepRecent int64 `toml:"pruning_keep_recent"`
	// Blocks between pruning runs; 0 never prunes.
	PruningInterval int64 `toml:"pruning_interval"`
	// Memtable of each of CometBFT's pebble databases, in MiB (cometdb).
	CometBFTMemTableMiB int `toml:"cometbft_memtable_mib"`
	// Blocks between state-sync snapshots; 0 makes none.
	SnapshotInterval int64 `toml:"snapshot_interval"`
	// Snapshots kept on disk (the most recent).
	SnapshotKeepRecent int64 `toml:"snapshot_keep_recent"`
}

type appSettings struct {
	// Entries of the cache of decoded, signature-verified transactions
	// shared by CheckTx, rechecks and block execution (about 1 KiB each for
	// the load's mix; at most 256 MiB in all, whatever their size).
	SigCacheSize int `toml:"sig_cache_size"`
	// Node ids of the consortium's nodes: with config.toml's persistent and
	// unconditional peers, the only nodes that may connect over P2P (start
	// always turns CometBFT's filter_peers on; acceptedPeers). None listed
	// anywhere: no peer may connect.
	AllowedPeers []string `toml:"allowed_peers"`
	// Host names a request to the node's HTTP servers (CometBFT's RPC and
	// the REST gateway) may name in its Host header, without the port; an
	// IP address always passes; "*" lets any through (hostFilter).
	AllowedHosts []string `toml:"allowed_hosts"`
}

// grpcConfig is the [grpc] section: the gRPC Query and TxService server.
type grpcConfig struct {
	// Serve gRPC at all.
	Enable bool `toml:"enable"`
	// host:port to listen on.
	Address string `toml:"address"`
	// How long BroadcastTx (gRPC and REST) waits for a tx to be committed
	// before it answers DEADLINE_EXCEEDED.
	BroadcastTimeout time.Duration `toml:"broadcast_timeout"`
	// MaxHeadAge: how old the node's latest block may be for grpc.health.v1
	// and REST's /healthz to say SERVING. 0: no bound. Left out of app.toml,
	// it is [sidecar] max_head_age (loadAppConfig).
	MaxHeadAge time.Duration `toml:"max_head_age"`
}

// apiConfig is the [api] section: the REST gateway (grpc-gateway) and the
// OpenAPI document.
type apiConfig struct {
	// Serve REST at all.
	Enable bool `toml:"enable"`
	// host:port to listen on.
	Address string `toml:"address"`
	// Origins browsers may call the API from ("https://app.example.org",
	// "*" for any); empty turns CORS off.
	CORSAllowedOrigins []string `toml:"cors_allowed_origins"`
}

// Default listen addresses of the gRPC and REST servers: loopback only, so a
// node exposes nothing beyond CometBFT's P2P port unless told to.
const (
	defaultGRPCAddress      = "127.0.0.1:9090"
	defaultAPIAddress       = "127.0.0.1:1317"
	defaultBroadcastTimeout = 30 * time.Second
)

// Upper bounds of app.toml values that are allocated or added to.
const (
	maxSigCacheSize     = 10_000_000
	maxValueCacheSize   = 10_000_000
	maxBroadcastTimeout = time.Hour
)

// Snapshot settings: snapshots kept by default, and the most a node may
// keep (each is a full copy of the state).
const (
	defaultSnapshotKeepRecent = 2
	maxSnapshotKeepRecent     = 100
)

// snapshotDir is the snapshot directory under the data directory.
const snapshotDir = "snapshots"

// minPruningKeepRecent is the fewest state versions a pruning node keeps:
// minutes of blocks, for reads verified at a recent height.
const minPruningKeepRecent = 100

func defaultAppConfig() appConfig {
	so := store.DefaultOptions()
	return appConfig{
		Store: storeConfig{
			Backend:             store.DefaultBackend,
			CacheSize:           so.CacheSize,
			ValueCacheSize:      so.ValueCacheSize,
			PruningKeepRecent:   int64(so.KeepRecent),
			PruningInterval:     int64(so.PruneInterval),
			CometBFTMemTableMiB: cometdb.DefaultMemTableMiB,
			SnapshotKeepRecent:  defaultSnapshotKeepRecent,
		},
		App:     appSettings{SigCacheSize: app.DefaultOptions().SigCacheSize, AllowedPeers: []string{}, AllowedHosts: slices.Clone(defaultAllowedHosts)},
		GRPC:    grpcConfig{Enable: true, Address: defaultGRPCAddress, BroadcastTimeout: defaultBroadcastTimeout, MaxHeadAge: sidecar.DefaultMaxHeadAge},
		API:     apiConfig{Enable: true, Address: defaultAPIAddress, CORSAllowedOrigins: []string{}},
		Sidecar: defaultSidecarConfig(),
	}
}

// storeOptions converts the store section into store.Options.
func (c appConfig) storeOptions() store.Options {
	o := store.DefaultOptions()
	o.Backend = c.Store.Backend
	o.CacheSize = c.Store.CacheSize
	o.ValueCacheSize = c.Store.ValueCacheSize
	if o.ValueCacheSize == 0 {
		o.ValueCacheSize = -1 // none (for the store, 0 means its default)
	}
	o.KeepRecent = uint64(c.Store.PruningKeepRecent) // validate refused negatives
	o.PruneInterval = uint64(c.Store.PruningInterval)
	return o
}

func (c appConfig) validate() error {
	if err := validateBackend(c.Store.Backend); err != nil {
		return err
	}
	switch {
	case c.Store.CacheSize < 0:
		return errors.New("store.cache_size must not be negative")
	case c.Store.ValueCacheSize < 0:
		return errors.New("store.value_cache_size must not be negative")
	case c.Store.ValueCacheSize > maxValueCacheSize:
		// Its map and order are allocated in full when the store opens.
		return fmt.Errorf("store.value_cache_size %d is above %d (a few hundred bytes an entry)", c.Store.ValueCacheSize, maxValueCacheSize)
	case c.Store.PruningKeepRecent < 0:
		return errors.New("store.pruning_keep_recent must not be negative")
	case c.Store.PruningInterval < 0:
		return errors.New("store.pruning_interval must not be negative")
	case (c.Store.PruningKeepRecent == 0) != (c.Store.PruningInterval == 0):
		return errors.New("pruning needs both store.pruning_keep_recent and store.pruning_interval (or neither)")
	case c.Store.PruningKeepRecent > 0 && c.Store.PruningKeepRecent < minPruningKeepRecent:
		// A verified read is made at a recent height and answered with
		// the node's proofs, which the node must still hold while the
		// client checks the header: with a few versions kept, reads fail
		// as their versions are pruned underway.
		return fmt.Errorf("store.pruning_keep_recent %d is below %d: clients' verified reads of recent heights would fail as they are pruned",
			c.Store.PruningKeepRecent, minPruningKeepRecent)
	case c.Store.SnapshotInterval < 0:
		return errors.New("store.snapshot_interval must not be negative")
	case c.Store.SnapshotKeepRecent < 1 || c.Store.SnapshotKeepRecent > maxSnapshotKeepRecent:
		return fmt.Errorf("store.snapshot_keep_recent %d: want 1 to %d", c.Store.SnapshotKeepRecent, maxSnapshotKeepRecent)
	case c.Store.CometBFTMemTableMiB < 0 || c.Store.CometBFTMemTableMiB > cometdb.MaxMemTableMiB:
		return fmt.Errorf("store.cometbft_memtable_mib %d: want 0 (pebble's default) to %d", c.Store.CometBFTMemTableMiB, cometdb.MaxMemTableMiB)
	case c.App.SigCacheSize < 1:
		// 0 would not turn the cache off: the app reads it as its default.
		return fmt.Errorf("app.sig_cache_size %d: want 1 to %d (the cache cannot be turned off: block execution reuses CheckTx's decoding and verification through it)",
			c.App.SigCacheSize, maxSigCacheSize)
	case c.App.SigCacheSize > maxSigCacheSize:
		// The cache is allocated in full when the app opens.
		return fmt.Errorf("app.sig_cache_size %d is above %d (about 1 KiB an entry)", c.App.SigCacheSize, maxSigCacheSize)
	case slices.ContainsFunc(c.App.AllowedPeers, func(id string) bool { return !abci.IsNodeID(id) }):
		return fmt.Errorf("app.allowed_peers: want node ids of 40 hex characters, got %q", c.App.AllowedPeers)
	case c.GRPC.BroadcastTimeout <= 0:
		return errors.New("grpc.broadcast_timeout must be positive")
	case c.GRPC.BroadcastTimeout > maxBroadcastTimeout:
		// The REST server's write timeout is derived from it.
		return fmt.Errorf("grpc.broadcast_timeout %s is above %s", c.GRPC.BroadcastTimeout, maxBroadcastTimeout)
	case c.GRPC.MaxHeadAge < 0:
		return errors.New("grpc.max_head_age must not be negative (\"0s\": no bound)")
	}
	if err := validateListenAddress("grpc.address", c.GRPC.Address, c.GRPC.Enable); err != nil {
		return err
	}
	if err := validateListenAddress("api.address", c.API.Address, c.API.Enable); err != nil {
		return err
	}
	if err := validateListenAddress("sidecar.listen", c.Sidecar.Listen, c.Sidecar.Enable); err != nil {
		return err
	}
	for _, o := range c.API.CORSAllowedOrigins {
		if o == "" || strings.ContainsAny(o, " \t\r\n,") {
			return fmt.Errorf("api.cors_allowed_origins: bad origin %q (want e.g. \"https://app.example.org\" or \"*\")", o)
		}
	}
	return checkAllowedHosts(c.App.AllowedHosts)
}

// validateListenAddress accepts host:port with a numeric port; an empty
// address only when the server is disabled.
func validateListenAddress(key, addr string, enabled bool) error {
	if addr == "" && !enabled {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || (n == 0 && enabled) {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err != nil || strings.Contains(host, "/") {
		return fmt.Errorf("%s %q: want host:port, e.g. %q", key, addr, "127.0.0.1:9090")
	}
	return nil
}

// maxMonikerLen bounds the moniker. CometBFT sets no bound at start, but
// the moniker travels in the node info every peer receives in the P2P
// handshake, and peers refuse a node info above p2p.MaxNodeInfoSize (10
// KB): a node with a huge moniker would start and never connect.
const maxMonikerLen = 1024

// checkMoniker refuses a moniker CometBFT refuses when the node starts:
// it runs CometBFT's own check of the node info (p2p.DefaultNodeInfo's
// Validate, which node.NewNode runs) on a node info valid but for the
// moniker, and bounds its length (maxMonikerLen). start and init both call
// it, so init refuses what start would.
func checkMoniker(moniker string) error {
	info := p2p.DefaultNodeInfo{
		DefaultNodeID: p2p.ID(strings.Repeat("0", 2*p2p.IDByteLength)),
		ListenAddr:    "127.0.0.1:26656",
		Moniker:       moniker,
	}
	if len(moniker) > maxMonikerLen || info.Validate() != nil {
		return fmt.Errorf("want 1 to %d printable ASCII characters (no tab, newline or other control character), not only spaces", maxMonikerLen)
	}
	return nil
}

// validateBackend accepts the persistent backends a node may use.
func validateBackend(b string) error {
	switch b {
	case store.BackendGoLevelDB, store.BackendPebble:
		return nil
	}
	return fmt.Errorf("unknown backend %q (want %s or %s)", b, store.BackendGoLevelDB, store.BackendPebble)
}

// cometBackend is CometBFT's name for the same database engine, so the block
// store and the app store use one engine.
func cometBackend(b string) string {
	if b == store.BackendPebble {
		return "pebbledb"
	}
	return "goleveldb"
}

const appConfigHeader = `# emrchain application settings. CometBFT itself is configured in config.toml.

`

const appConfigTemplate = `[store]
# Database engine of data/app.db: "goleveldb" or "pebble". It must stay the one
# the data was created with.
backend = %q
# IAVL node cache, in nodes: the largest lever on write speed. Size it to the
# working set of the state.
cache_size = %d
# Values of the latest version kept in memory (a few hundred bytes each): what
# CheckTx and block execution read. 0 keeps none; at most 10000000.
value_cache_size = %d
# Versions of the state kept for historical queries and proofs; 0 keeps all,
# else at least 100.
pruning_keep_recent = %d
# Blocks between pruning runs; 0 never prunes.
pruning_interval = %d
# Memtable of each of CometBFT's own pebble databases (block store, state and
# results, tx index, evidence), in MiB: larger ones flush less often and save
# most of their compaction under load. Up to two per database are held in
# memory, and their logs are preallocated on disk at about this size. 0 leaves
# pebble's default (4 MiB).
cometbft_memtable_mib = %d
# State-sync snapshots, which let a new node join from the state of a recent
# block instead of replaying every block (README.md, "Joining a running
# chain"). Every snapshot_interval blocks the node writes the state of the
# block just committed to data/snapshots, in the background, and serves it
# to joining nodes; 0 makes none. A few nodes of the consortium are enough.
snapshot_interval = %d
# Snapshots kept on disk, newest first (each is a full copy of the state):
# 1 to 100. Up to as many more are kept while peers download them.
snapshot_keep_recent = %d

[app]
# Decoded, signature-verified transactions kept between CheckTx, rechecks and
# block execution (about 1 KiB each for ordinary ones; at most 256 MiB in all,
# whatever their size): each is decoded and verified once. 1 to 10000000.
sig_cache_size = %d
# Node ids of the consortium's nodes (emrchaind init prints each) that may
# connect to this node over P2P. The nodes of config.toml's p2p.persistent_peers
# and p2p.unconditional_peer_ids may too; no other node may. With none listed
# in any of the three, this node refuses every peer (a single validator needs
# none).
allowed_peers = %s
# Host names a request to this node's HTTP servers (CometBFT's RPC, config.toml
# [rpc] laddr, and the REST gateway, [api] below) may call it by: the Host
# header, without the port. A request naming any other host is refused (403),
# so that a web page cannot reach a node behind a firewall through a browser
# inside it, by pointing a DNS name of its own at the node's address (DNS
# rebinding). A Host that is an IP address is always answered. Add the names
# clients and other nodes (state sync's rpc_servers) use once the node is
# exposed, e.g. ["localhost", "node0.hospital.example"]; ["*"] answers any.
# Read when the node starts.
allowed_hosts = %s

[grpc]
# The gRPC server: emrchain.v1.Query, emrchain.v1.TxService, server
# reflection and grpc.health.v1.
enable = %t
# host:port to listen on. Loopback by default: put a TLS-terminating proxy in
# front of it (or bind another address) to expose it.
address = %q
# How long BroadcastTx (gRPC and REST) waits for a tx to be committed before
# it answers DEADLINE_EXCEEDED (the tx may still be committed later).
broadcast_timeout = %q
# How old, by this machine's clock, the node's latest block may be for
# grpc.health.v1 and the REST gateway's /healthz (both servers) to say
# SERVING; beyond it they say NOT_SERVING (503 with the reason over REST). A
# node cut off from the other validators, or on a chain that lost its
# quorum, keeps answering reads from its last block without saying it is
# behind. The chain makes a block at least every
# consensus.create_empty_blocks_interval, and start refuses a bound not
# above it. "0s": no bound, for a chain configured to make no empty blocks.
# Left out, it is [sidecar] max_head_age.
max_head_age = %q

[api]
# The REST gateway over the same services (grpc-gateway), with the OpenAPI
# document at /openapi.json.
enable = %t
# host:port to listen on; loopback by default.
address = %q
# Origins a browser may call the REST API from, e.g. ["https://app.example.org"];
# ["*"] allows any. Empty turns CORS off. The name the app calls the node by
# must also be in [app] allowed_hosts.
cors_allowed_origins = %s
`

// writeAppConfig writes HOME/config/app.toml.
func writeAppConfig(home string, c appConfig) error {
	body := fmt.Sprintf(appConfigHeader+appConfigTemplate, c.Store.Backend, c.Store.CacheSize, c.Store.ValueCacheSize,
		c.Store.PruningKeepRecent, c.Store.PruningInterval, c.Store.CometBFTMemTableMiB,
		c.Store.SnapshotInterval, c.Store.SnapshotKeepRecent, c.App.SigCacheSize, tomlStrings(c.App.AllowedPeers), tomlStrings(c.App.AllowedHosts),
		c.GRPC.Enable, c.GRPC.Address, c.GRPC.BroadcastTimeout.String(), c.GRPC.MaxHeadAge.String(),
		c.API.Enable, c.API.Address, tomlStrings(c.API.CORSAllowedOrigins)) + renderSidecarConfig(c.Sidecar)
	// 0600: it may hold minio_secret_key.
	return durable.ReplaceFile(filepath.Join(home, cmtcfg.DefaultConfigDir, appConfigFile), []byte(body), 0o600)
}

// tomlStrings formats a TOML array of strings.
func tomlStrings(list []string) string {
	quoted := make([]string, len(list))
	for i, s := range list {
		quoted[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// warnIfNoAppConfig logs an error when home has no app.toml: allowed (a
// home written by CometBFT's own init), but a moved or lost app.toml
// silently changes ports, peers and the blob store.
func warnIfNoAppConfig(logger log.Logger, home string) {
	path := filepath.Join(home, cmtcfg.DefaultConfigDir, appConfigFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		logger.Error("app.toml not found: every app setting not given by a flag is its default (addresses, allowed peers, the blob store, pruning); emrchaind init writes one",
			"path", path)
	}
}

// warnIfDiscardingResults logs an error when config.toml's
// storage.discard_abci_responses is set. CometBFT allows it, but emrchain
// reads past blocks' results beyond its tx index: the sidecar's sweep
// builds its reference index from them, and a client verifies a
// transaction's result with them.
func warnIfDiscardingResults(logger log.Logger, storage *cmtcfg.StorageConfig) {
	if storage.DiscardABCIResponses {
		logger.Error("storage.discard_abci_responses is set: this node keeps no results of past blocks, so its sidecar's sweep deletes nothing and clients cannot verify a transaction's result against it; set it to false in config.toml to keep results from now on")
	}
}

// loadAppConfig reads HOME/config/app.toml over the defaults; a missing file
// means the defaults.
func loadAppConfig(home string) (appConfig, error) {
	c := defaultAppConfig()
	path := filepath.Join(home, cmtcfg.DefaultConfigDir, appConfigFile)
	md, err := toml.DecodeFile(path, &c)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("parse %s: %w", path, err)
	}
	for _, key := range md.Undecoded() {
		return c, fmt.Errorf("%s: unknown key %q", path, key.String())
	}
	if !md.IsDefined("grpc", "max_head_age") {
		// An app.toml written before the key existed keeps start working:
		// init sized the sidecar's bound to the chain's empty-block
		// interval, and a longer interval than the default bound would be
		// refused (checkHealthHeadAge).
		c.GRPC.MaxHeadAge = time.Duration(c.Sidecar.MaxHeadAge)
	}
	if !md.IsDefined("sidecar", "pending_bytes_patients") { // follows a total set lower than the default
		c.Sidecar.PendingBytesPatients = sidecar.PatientsShare(c.Sidecar.PendingBytesTotal)
	}
	if !md.IsDefined("sidecar", "max_uploads_patients") { // likewise
		c.Sidecar.MaxUploadsPatients = sidecar.UploadsPatientsShare(c.Sidecar.MaxUploads)
	}
	if !md.IsDefined("sidecar", "max_uploads_per_signer") && c.Sidecar.MaxUploads > 0 { // never above a total set lower
		c.Sidecar.MaxUploadsPerSigner = min(c.Sidecar.MaxUploadsPerSigner, c.Sidecar.MaxUploads)
	}
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// lanConsensus sets consensus timeouts for validators on one LAN (or one
// machine): round trips are milliseconds, so waiting seconds only slows
// blocks down. Empty blocks are made at least every emptyInterval while the
// chain is idle (0 = continuously), so block time — which decides when a
// permission expires — keeps moving.
func lanConsensus(c *cmtcfg.ConsensusConfig, timeoutCommit, emptyInterval time.Duration) {
	c.TimeoutPropose = 1000 * time.Millisecond
	c.TimeoutProposeDelta = 200 * time.Millisecond
	c.TimeoutPrevote = 500 * time.Millisecond
	c.TimeoutPrevoteDelta = 200 * time.Millisecond
	c.TimeoutPrecommit = 500 * time.Millisecond
	c.TimeoutPrecommitDelta = 200 * time.Millisecond
	c.TimeoutCommit = timeoutCommit
	c.CreateEmptyBlocks = true
	c.CreateEmptyBlocksInterval = emptyInterval
}
