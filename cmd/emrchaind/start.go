package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	cmtflags "github.com/cometbft/cometbft/libs/cli/flags"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/node"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	"github.com/cometbft/cometbft/proxy"
	cmttypes "github.com/cometbft/cometbft/types"
	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/internal/durable"
	"github.com/emrchain/emrchain/internal/filelock"
	"github.com/emrchain/emrchain/store"
	"github.com/emrchain/emrchain/store/cometdb"
)

// stopTimeout bounds how long start waits for the extra services to stop.
const stopTimeout = 10 * time.Second

func newStartCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run the node until SIGINT or SIGTERM",
		Long: `start opens the application store (HOME/data/app.db), runs the CometBFT node
in-process with the emrchain state machine, and serves until SIGINT or SIGTERM,
then stops the node and closes the store.

On start CometBFT asks the app for its last committed height (ABCI Info) and
replays any blocks the app has not committed, so a node that crashed or was
killed at any moment resumes where it stopped. If the state machine cannot
execute or persist a block (a storage fault such as a full disk, a broken
invariant), consensus halts on this node and start exits with an error (while
block-syncing, CometBFT's panic ends the process), rather than serve a state
that no longer moves; once the fault is fixed, a restart replays the block.

start refuses to run without config/node_key.json, the validator key and
data/priv_validator_state.json, which init writes: restore them from a backup
(it never makes new ones).

Beside the node, start serves (as app.toml [grpc] and [api] say) the gRPC
Query and TxService services on 127.0.0.1:9090, with grpc.health.v1 (SERVING
while the node holds committed state, is not block- or state-syncing and its
latest block is at most [grpc] max_head_age old by this machine's clock), the
REST gateway over them on 127.0.0.1:1317, with the OpenAPI document at
/openapi.json and the same health at /healthz (503 with the reason), and (as
[sidecar] says) the blob sidecar on 127.0.0.1:7070. A
listen address already in use (config.toml's Prometheus and pprof ones
too), a bad [sidecar] setting, a config.toml db_backend other than the
engine of CometBFT's databases, or another node running on the home
(it holds data/emrchaind.lock), stops start with an error before the
node starts; the addresses are taken then, and answer
once the node runs (after any replay of blocks). A sidecar whose blob store
cannot be opened (MinIO down, its directory unwritable, its reference index
held by "emrchaind sidecar") does not stop the node: its address answers 503
with the reason, /healthz included, while start tries again every few
seconds (up to 30 s apart).

Only the consortium's nodes may connect over P2P: start always turns on
CometBFT's peer filter (filter_peers), and the node accepts only the node ids
listed in app.toml [app] allowed_peers, in config.toml [p2p] persistent_peers
(the nodes it dials) and in [p2p] unconditional_peer_ids. With all three empty,
as init leaves them, it refuses every peer and says so in its log; a single
validator needs no peers. Peers are filtered by node id, which the P2P
handshake authenticates, not by address.

start serves CometBFT's RPC ([rpc] laddr) itself, with CometBFT's routes.
It and the REST gateway answer a request only when its Host header is an IP
address or a name in app.toml [app] allowed_hosts ("localhost" unless told
otherwise): other names get 403 with the reason, so a web page cannot reach
the node by pointing a DNS name of its own at it. Add the names clients and
other nodes (state sync's rpc_servers) call this node by. The RPC's
/websocket accepts a browser (which sends Origin) only from an origin in
config.toml [rpc] cors_allowed_origins; programs send none.

Settings come from HOME/config/config.toml (CometBFT) and HOME/config/app.toml
(emrchain); the flags below override them for this run only.`,
		Example: `  emrchaind start --home ./node0
  emrchaind start --home ./node0 --log-level "consensus:info,*:error"
  emrchaind start --home ./node0 --pruning-keep-recent 100000 --pruning-interval 1000
  emrchaind start --home ./node1 --p2p.persistent_peers ID@127.0.0.1:26656
  emrchaind start --home ./node1 --grpc.address 127.0.0.1:9190 --api.address 127.0.0.1:1417`,
		Args: cobra.NoArgs,
		RunE: runStart,
	}
	addHomeFlag(cmd)
	addLogLevelFlag(cmd, "log_level in config.toml")
	f := cmd.Flags()
	f.String("backend", "", "database engine of data/app.db: goleveldb or pebble (must match the data; default: app.toml)")
	f.Uint64("pruning-keep-recent", 0, "keep this many recent versions of the state, 0 = all (default: app.toml); blocks are never pruned")
	f.Uint64("pruning-interval", 0, "prune every N blocks, at most 2N versions at a time, 0 = never (default: app.toml)")
	f.String("rpc.laddr", "", "CometBFT RPC listen address (default: config.toml)")
	f.String("p2p.laddr", "", "P2P listen address (default: config.toml)")
	f.String("p2p.persistent_peers", "", "comma-separated ID@host:port peers to dial (and let in; default: config.toml)")
	f.String("p2p.external_address", "", "host:port to advertise to peers (default: config.toml)")
	f.String("grpc.address", "", "gRPC server listen address, host:port (default: app.toml [grpc] address)")
	f.String("sidecar.listen", "", "blob sidecar listen address, host:port (default: app.toml [sidecar] listen)")
	f.String("api.address", "", "REST gateway listen address, host:port (default: app.toml [api] address)")
	return cmd
}

// nodeSettings is what start needs before it opens anything.
type nodeSettings struct {
	home   string
	config *cmtcfg.Config
	app    appConfig
	peers  []string // node ids the P2P peer filter lets in (acceptedPeers)
	logger log.Logger
}

func loadNodeSettings(cmd *cobra.Command) (*nodeSettings, error) {
	home, err := homeFlag(cmd)
	if err != nil {
		return nil, err
	}
	conf, err := loadCometConfig(home)
	if err != nil {
		return nil, err
	}
	appConf, err := loadAppConfig(home)
	if err != nil {
		return nil, err
	}
	f := cmd.Flags()
	for name, dst := range map[string]*string{
		"rpc.laddr":            &conf.RPC.ListenAddress,
		"p2p.laddr":            &conf.P2P.ListenAddress,
		"p2p.persistent_peers": &conf.P2P.PersistentPeers,
		"p2p.external_address": &conf.P2P.ExternalAddress,
		"backend":              &appConf.Store.Backend,
		"grpc.address":         &appConf.GRPC.Address,
		"api.address":          &appConf.API.Address,
		"sidecar.listen":       &appConf.Sidecar.Listen,
	} {
		if f.Changed(name) {
			*dst, _ = f.GetString(name)
		}
	}
	// The pruning flags are uint64s (they take no negative number); above
	// MaxInt64 a value fits no int64 and is refused by the flag's name.
	for _, p := range []struct {
		name string
		dst  *int64
	}{
		{"pruning-keep-recent", &appConf.Store.PruningKeepRecent},
		{"pruning-interval", &appConf.Store.PruningInterval},
	} {
		if !f.Changed(p.name) {
			continue
		}
		n, _ := f.GetUint64(p.name)
		if n > math.MaxInt64 {
			return nil, fmt.Errorf("--%s %d: want at most %d", p.name, n, int64(math.MaxInt64))
		}
		*p.dst = int64(n)
	}
	if err := appConf.validate(); err != nil {
		return nil, err
	}
	if appConf.Sidecar.Enable {
		// Before the node starts: the sidecar is started after it, and
		// retried in the background when its store cannot open
		// (startSidecarService), which must never be for a bad setting.
		if err := appConf.Sidecar.resolve(home); err != nil {
			return nil, err
		}
		if err := checkHeadAge(appConf.Sidecar, conf.Consensus); err != nil {
			return nil, err
		}
	}
	if appConf.GRPC.Enable || appConf.API.Enable {
		if err := checkHealthHeadAge(appConf.GRPC, conf.Consensus); err != nil {
			return nil, err
		}
	}
	if err := conf.ValidateBasic(); err != nil {
		return nil, err
	}
	if conf.GRPC.ListenAddress != "" || conf.GRPC.Privileged.ListenAddress != "" {
		// CometBFT starts them with its RPC server, which rpcService
		// replaces.
		return nil, fmt.Errorf("%s: [grpc] laddr and [grpc.privileged] laddr must be empty: emrchaind does not serve CometBFT's "+
			"gRPC services (its own gRPC server is app.toml [grpc])", filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultConfigFileName))
	}
	// CometBFT refuses a bad moniker only once the stores are open, and
	// peers refuse one too long; checked here by the function init uses.
	if err := checkMoniker(conf.Moniker); err != nil {
		return nil, fmt.Errorf("%s: moniker %q: %w", filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultConfigFileName), conf.Moniker, err)
	}
	peers, err := acceptedPeers(conf.P2P, appConf.App.AllowedPeers)
	if err != nil {
		return nil, err
	}
	// The peer filter is always on, whatever config.toml's filter_peers
	// says: CometBFT asks the app (abci.PeerFilterIDPath) about every peer,
	// dialed or dialing in, and the app lets in only these ids.
	conf.FilterPeers = true
	// A data/app.db of another engine than --backend or app.toml names is
	// refused when the store opens (store.ErrWrongBackend); CometBFT's
	// databases are checked here, before anything opens one.
	for _, name := range cometDBs {
		if err := store.CheckBackend(filepath.Join(conf.DBDir(), name+".db"), conf.DBBackend); err != nil {
			return nil, fmt.Errorf("%s: db_backend = %q: %w; put db_backend back", filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultConfigFileName), conf.DBBackend, err)
		}
	}

	level, _ := cmd.Flags().GetString(flagLogLevel)
	if level == "" {
		level = conf.LogLevel
	}
	var logger log.Logger
	if conf.LogFormat == cmtcfg.LogFormatJSON {
		logger = log.NewTMJSONLogger(log.NewSyncWriter(os.Stdout))
	} else {
		logger = log.NewTMLogger(log.NewSyncWriter(os.Stdout))
	}
	logger, err = cmtflags.ParseLogLevel(level, logger, cmtcfg.DefaultLogLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	warnIfNoAppConfig(logger, home)
	if appConf.Sidecar.Enable {
		// Before the node starts too: a key that cannot be read is a
		// setting to fix, not a store to wait for.
		if err := appConf.Sidecar.loadServiceKeys(logger.With("module", "sidecar")); err != nil {
			return nil, err
		}
	}
	return &nodeSettings{home: home, config: conf, app: appConf, peers: peers, logger: logger}, nil
}

func runStart(cmd *cobra.Command, _ []string) error {
	s, err := loadNodeSettings(cmd)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one kills the process the
		// default way, in case a clean stop hangs.
		<-ctx.Done()
		stop()
	}()
	return runNode(ctx, s)
}

// cometDBs are the databases CometBFT keeps in the data directory, in
// config.toml's db_backend.
var cometDBs = []string{"blockstore", "state", "tx_index", "evidence"}

// nodeLockFile, in HOME/data, is locked (flock) by the node that runs on
// a home for as long as it runs: init --force and testnet --force refuse a
// home whose node runs.
const nodeLockFile = "emrchaind.lock"

// errNodeRunning: a node runs on the home (it holds nodeLockFile).
var errNodeRunning = errors.New("a node runs on this home")

// lockNodeHome takes the lock of the node whose data directory is dataDir,
// at once or not at all; release gives it back.
func lockNodeHome(ctx context.Context, dataDir string) (release func(), err error) {
	if err := durable.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, nodeLockFile)
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	release, err = filelock.Lock(tctx, path)
	if err != nil {
		return nil, fmt.Errorf("%w (it holds %s): stop it first: %w", errNodeRunning, path, err)
	}
	return release, nil
}

// checkCometListeners refuses, before the node starts, a metrics or pprof
// address that is in use: CometBFT would only log it and run on without
// them (alerting on metrics going blind).
func checkCometListeners(conf *cmtcfg.Config) error {
	file := filepath.Join(conf.RootDir, cmtcfg.DefaultConfigDir, cmtcfg.DefaultConfigFileName)
	probe := func(key, addr string) error {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %s %q: %w", file, key, addr, err)
		}
		return l.Close()
	}
	if conf.Instrumentation.Prometheus && conf.Instrumentation.PrometheusListenAddr != "" {
		if err := probe("[instrumentation] prometheus_listen_addr", conf.Instrumentation.PrometheusListenAddr); err != nil {
			return err
		}
	}
	if conf.RPC.PprofListenAddress != "" {
		return probe("[rpc] pprof_laddr", conf.RPC.PprofListenAddress)
	}
	return nil
}

// runNode runs the node until ctx ends or the node stops by itself.
func runNode(ctx context.Context, s *nodeSettings) (err error) {
	logger := s.logger.With("module", "main")
	conf := s.config
	for _, w := range conf.CheckDeprecated() {
		logger.Info("deprecated setting in config.toml", "usage", w)
	}

	genProvider := node.DefaultGenesisDocProviderFunc(conf)
	gen, err := genProvider()
	if err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	// The keys, then the servers' addresses: a missing key or a port in
	// use stops start before anything is opened.
	nodeKey, pv, err := loadNodeKeys(conf)
	if err != nil {
		return err
	}
	// The home's lock first: a second start on it is told that a node
	// runs there, not that its own addresses are in use. HOME/data
	// whatever db_dir says: it holds the validator's last-sign state, and
	// it is what init --force deletes.
	release, err := lockNodeHome(ctx, filepath.Join(conf.RootDir, cmtcfg.DefaultDataDir))
	if err != nil {
		return err
	}
	defer release()
	listeners, err := listenServices(s.app)
	if err != nil {
		return err
	}
	defer listeners.close()
	if err := checkCometListeners(conf); err != nil {
		return err
	}

	st, err := store.Open(filepath.Join(conf.DBDir(), appDBDir), s.app.storeOptions())
	if err != nil {
		return fmt.Errorf("open app store: %w", err)
	}
	// The store closes last, after the node and the adapter: by then no ABCI
	// call can be in flight.
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close app store: %w", cerr)
		}
	}()
	a, err := app.New(st, app.Options{SigCacheSize: s.app.App.SigCacheSize, OnPruneError: func(err error) {
		s.logger.Error("state pruning failed; the block is committed, the next prune point retries", "err", err)
	}})
	if err != nil {
		return fmt.Errorf("load app state: %w", err)
	}
	if id := a.ChainID(); id != "" && id != gen.GenesisDoc.ChainID {
		return fmt.Errorf("app store %s holds chain %q but the genesis is for %q",
			filepath.Join(conf.DBDir(), appDBDir), id, gen.GenesisDoc.ChainID)
	}
	h, hash := a.LastCommit()
	logger.Info("app state loaded", "height", h, "app_hash", fmt.Sprintf("%X", hash),
		"backend", s.app.Store.Backend)

	snaps, err := store.OpenSnapshots(filepath.Join(conf.DBDir(), snapshotDir), int(s.app.Store.SnapshotKeepRecent))
	if err != nil {
		return fmt.Errorf("open snapshots: %w", err)
	}
	dbProvider := cometdb.Provider(s.app.Store.CometBFTMemTableMiB)
	if err := recordRestoredState(ctx, logger, conf, dbProvider, genProvider, filepath.Join(conf.DBDir(), appDBDir), h, hash); err != nil {
		return err
	}
	warnIfDiscardingResults(logger, conf.Storage)
	if _, err := reindexUnindexed(conf, dbProvider, logger, h); err != nil {
		// Housekeeping: the chain runs without it, and tx_search and
		// /tx miss what is missing. (Blocks whose results are gone are
		// skipped, not an error: reindexUnindexed logs them.)
		logger.Error("could not index again the blocks the tx index lacks", "err", err)
	}
	if conf.StateSync.Enable && h > 0 {
		logger.Info("statesync.enable is set, but the app already holds a state: CometBFT syncs blocks from it instead",
			"height", h)
	}
	halted := make(chan error, 1)
	abciApp := abci.New(a, abci.Options{Logger: s.logger.With("module", "abci"), Version: version, AllowedPeers: s.peers,
		Snapshots: &abci.SnapshotOptions{Dir: snaps, Interval: uint64(s.app.Store.SnapshotInterval)},
		OnHalt:    func(err error) { halted <- err }, // called once
	})
	defer abciApp.Close()
	if len(s.peers) == 0 {
		logger.Info("P2P peer filter: this node refuses every peer, as no node id is allowed; " +
			"to connect to the consortium, list the other nodes' ids in app.toml [app] allowed_peers " +
			"(or their ID@host:port in config.toml [p2p] persistent_peers)")
	} else {
		logger.Info("P2P peer filter: only these node ids may connect", "allowed", strings.Join(s.peers, ","))
	}

	n, err := node.NewNode(ctx, conf, pv, nodeKey,
		// One mutex per ABCI connection, not one for all: the adapter
		// serializes what changes state itself, and answers Info and
		// Query from committed versions beside a block in progress.
		proxy.NewConnSyncLocalClientCreator(abciApp),
		func() (node.ChecksummedGenesisDoc, error) { return gen, nil },
		dbProvider,
		node.DefaultMetricsProvider(conf.Instrumentation),
		s.logger,
	)
	if err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	// CometBFT would sleep until a future genesis time inside Start, deaf
	// to a stop signal: the wait is made here instead.
	if !waitForGenesis(ctx, logger, gen.GenesisDoc.GenesisTime) {
		logger.Info("signal received before the genesis time, shutting down")
		return nil
	}
	// CometBFT's RPC port is taken now, after the replay in NewNode, as the
	// node itself takes it: a client that connects is answered soon, not
	// held through a replay (or refused later by a port in use, after the
	// node signed blocks).
	if listeners.rpc, err = listenRPC(conf.RPC); err != nil {
		return err
	}
	if err := startNodeWithoutRPC(n, conf.RPC); err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	logger.Info("node started", "node_id", nodeKey.ID(), "chain_id", gen.GenesisDoc.ChainID,
		"rpc", conf.RPC.ListenAddress, "p2p", conf.P2P.ListenAddress)
	if conf.StateSync.Enable && h == 0 {
		go hintStateSync(ctx, logger, func() int64 { h, _ := a.LastCommit(); return h }, abciApp.StateSyncAborted, stateSyncHintEvery)
	}

	services, err := startServices(ctx, serviceEnv{
		home: s.home, config: conf, appConfig: s.app, node: n, abci: abciApp, app: a, logger: s.logger, listeners: listeners,
	})
	if err != nil {
		stopNode(logger, n)
		return fmt.Errorf("start services: %w", err)
	}

	select {
	case <-ctx.Done():
		logger.Info("signal received, shutting down")
	case <-n.Quit():
		logger.Error("node stopped by itself, shutting down")
		err = errors.New("node stopped unexpectedly")
	case herr := <-halted:
		// CometBFT has stopped consensus and would go on serving a state
		// that no longer moves (the adapter has logged the failure).
		err = fmt.Errorf("state machine halted (a restart replays the block once the fault is fixed): %w", herr)
	}

	stopServices(logger, services)
	stopNode(logger, n)
	abciApp.Close()
	logger.Info("node stopped")
	return err
}

// waitForGenesis waits until genesis, when that is in the future, and
// says so in the log; false when ctx ended first.
func waitForGenesis(ctx context.Context, logger log.Logger, genesis time.Time) bool {
	wait := time.Until(genesis)
	if wait <= 0 {
		return true
	}
	logger.Info("the genesis time is in the future: waiting for it", "genesis_time", genesis.UTC().Format(time.RFC3339), "in", wait.Round(time.Second))
	return ctxtime.Sleep(ctx, wait) == nil
}

// startNodeWithoutRPC starts n without its RPC server: rpcService serves
// CometBFT's RPC instead (startServices), and the node serves it only
// while [rpc] laddr names an address when it starts. The node's info,
// which peers and /status see, was made by node.NewNode with the address.
func startNodeWithoutRPC(n *node.Node, rpc *cmtcfg.RPCConfig) error {
	laddr := rpc.ListenAddress
	rpc.ListenAddress = ""
	defer func() { rpc.ListenAddress = laddr }()
	return n.Start()
}

func stopNode(logger log.Logger, n *node.Node) {
	if !n.IsRunning() {
		return
	}
	if err := n.Stop(); err != nil {
		logger.Error("stopping node", "err", err)
	}
	n.Wait()
}

// What start waits on in the background (a sidecar that cannot open yet,
// the headers that prove a restored state) is retried first after
// retryMin, then at twice the last wait, up to retryMax.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

func nextRetry(wait time.Duration) time.Duration { return min(2*wait, retryMax) }

// loadNodeKeys loads the node key and the validator key with its last-sign
// state, which init (or testnet) wrote. start never makes new ones, as
// CometBFT's LoadOrGen functions would: a node whose files went missing
// (a volume not mounted, a partial restore) would come up with a node id
// its peers refuse, as a validator of nothing, and with its double-sign
// protection reset for when the real key comes back. With
// priv_validator_laddr set, the validator key is the remote signer's, and
// the returned one is nil (node.NewNode connects to the signer).
func loadNodeKeys(conf *cmtcfg.Config) (*p2p.NodeKey, cmttypes.PrivValidator, error) {
	nodeKey := new(p2p.NodeKey) // what p2p.LoadNodeKey reads, and as it reads it
	if err := readKeyFile("node key", conf.NodeKeyFile(), nodeKey); err != nil {
		return nil, nil, err
	}
	if conf.PrivValidatorListenAddr != "" {
		return nodeKey, nil, nil
	}
	valKey, valState := conf.PrivValidatorKeyFile(), conf.PrivValidatorStateFile()
	if err := readKeyFile("validator key", valKey, &privval.FilePVKey{}); err != nil {
		return nil, nil, err
	}
	if err := readKeyFile("validator state", valState, &privval.FilePVLastSignState{}); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w; only if this validator has never signed a block, or has been stopped long enough that every block it signed is committed, write a fresh one: {\"height\": \"0\", \"round\": 0, \"step\": 0}", err)
		}
		return nil, nil, err
	}
	// Read above only to be checked: LoadFilePV, which builds the signer
	// that keeps its state file, exits the process on a file it cannot
	// read or parse.
	return nodeKey, privval.LoadFilePV(valKey, valState), nil
}

// readKeyFile reads path (what names it), a JSON v of CometBFT's encoding,
// into v. A missing file wraps fs.ErrNotExist.
func readKeyFile(what, path string, v any) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s is missing: restore it from the node's backup (start never makes a new one): %w", what, path, fs.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := cmtjson.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s %s does not parse: %w", what, path, err)
	}
	return nil
}
