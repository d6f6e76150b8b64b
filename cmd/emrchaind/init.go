package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	cmttypes "github.com/cometbft/cometbft/types"
	cmttime "github.com/cometbft/cometbft/types/time"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/durable"
	emrchainv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// The development organization init creates when given no organization.
const (
	devOrgID        = "dev-hospital"
	devOrgName      = "Development Hospital"
	devRegistrarKey = "registrar"
)

// initOptions are the flags of init.
type initOptions struct {
	home            string
	chainID         string
	moniker         string
	orgs            []string
	registrars      []string
	appStateFile    string
	appState        *emrchainv1.GenesisState // instead of appStateFile: an app_state built by the caller (testnet)
	backend         string
	force           bool
	rpcAddr         string
	p2pAddr         string
	grpcAddr        string
	apiAddr         string
	sidecarAddr     string
	persistentPeers string
	timeoutCommit   time.Duration
	emptyBlocks     time.Duration
}

func newInitCmd() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init --chain-id ID",
		Short: "Write the node's configuration, keys and genesis into --home",
		Long: `init prepares a node home directory:

  config/config.toml              CometBFT settings tuned for a LAN consortium
                                  (timeout_commit 500ms, kv tx indexer, RPC and
                                  P2P on loopback unless told otherwise)
  config/app.toml                 emrchain settings (store backend, pruning, caches,
                                  gRPC on 127.0.0.1:9090, REST on 127.0.0.1:1317,
                                  allowed_peers empty, allowed_hosts ["localhost"]:
                                  the names RPC and REST may be called by)
  config/genesis.json             this node as the only validator; app_state is
                                  the protojson of emrchainv1.GenesisState
  config/node_key.json            P2P identity
  config/priv_validator_key.json  validator key
  data/priv_validator_state.json  double-sign protection

The genesis app_state starts from the default parameters and no organization,
or from the --genesis-app-state file as it is (its params too: a file without
params is refused; copy them from the app_state of a genesis init wrote), and
adds every --org and --registrar. Without --org and --genesis-app-state, init
adds a development organization "dev-hospital" (a hospital) with one registrar,
so a single node is usable at once. Every registrar init creates gets a fresh
ed25519 signing key and X25519 encryption key, written to HOME/dev-keys/NAME.json
(the dev-hospital registrar is "registrar").

The node accepts no P2P peer until told which: a single validator needs none.
To let the consortium's nodes connect, list their node ids in app.toml [app]
allowed_peers, or give their ID@host:port in --p2p.persistent_peers (start
--help says more).

Before writing anything, init runs the genesis through the state machine, so a
genesis the chain would reject fails here, not at start; the moniker (printable
ASCII, at most 1024 characters, no double quote or backslash) and every
--p2p.persistent_peers entry (ID@host:port) are checked as start checks them.
Nothing is written or deleted when a check fails. init refuses to touch
a home that already holds a node unless --force is given; --force DELETES
HOME/config, HOME/dev-keys and HOME/data (the chain, its state and its keys)
and starts over, but keeps the blob sidecar's filesystem store (app.toml
[sidecar] dir, default HOME/data/blobs) and its [sidecar] settings: it may
hold the only copy of ciphertext that committed records name, and only the
sweep removes blobs. --force refuses a home whose node runs, an app.toml it
cannot read, and a blob store under HOME/config or HOME/dev-keys, before
deleting anything; it deletes HOME/config last, so that a rerun of one
stopped part way still knows where the blob store is.

` + devKeyFormatHelp,
		Example: `  # one development node with a dev hospital and its registrar
  emrchaind init --home ./node0 --chain-id emr-dev

  # a consortium genesis: two hospitals and a lab, one registrar each
  emrchaind init --home ./node0 --chain-id emr-test-1 \
    --org st-mary:"St Mary's Hospital":hospital --org city-gen:"City General":hospital \
    --org north-lab:"North Lab":lab \
    --registrar st-mary:alice --registrar city-gen:bob --registrar north-lab:carol

  # start from a prepared app_state, on pebble, other ports
  emrchaind init --home ./node1 --chain-id emr-test-1 --genesis-app-state app_state.json \
    --backend pebble --rpc.laddr tcp://127.0.0.1:27657 --p2p.laddr tcp://127.0.0.1:27656 \
    --grpc.address 127.0.0.1:9190 --api.address 127.0.0.1:1417`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := homeFlag(cmd)
			if err != nil {
				return err
			}
			o.home = home
			return runInit(cmd.OutOrStdout(), o)
		},
	}
	addHomeFlag(cmd)
	f := cmd.Flags()
	f.StringVar(&o.chainID, "chain-id", "", "chain id (required; at most 50 characters)")
	f.StringVar(&o.moniker, "moniker", "", `node name: printable ASCII, at most 1024 characters, no '"' or '\' (default: the host name)`)
	f.StringArrayVar(&o.orgs, "org", nil, `organization "id:name:kind", kind one of hospital, lab, pharmacy, research (repeatable)`)
	f.StringArrayVar(&o.registrars, "registrar", nil, `registrar "org-id:NAME" with fresh keys in HOME/dev-keys/NAME.json (repeatable)`)
	f.StringVar(&o.appStateFile, "genesis-app-state", "", "start the app_state from this protojson emrchainv1.GenesisState file")
	f.StringVar(&o.backend, "backend", store.DefaultBackend, "database engine of the app store and CometBFT: pebble or goleveldb")
	f.BoolVar(&o.force, "force", false, "wipe HOME/config, HOME/dev-keys and HOME/data (but its blob store) of an existing node first")
	f.StringVar(&o.rpcAddr, "rpc.laddr", "tcp://127.0.0.1:26657", "CometBFT RPC listen address")
	f.StringVar(&o.p2pAddr, "p2p.laddr", "tcp://127.0.0.1:26656", "P2P listen address")
	f.StringVar(&o.grpcAddr, "grpc.address", defaultGRPCAddress, "gRPC server listen address, host:port (app.toml [grpc] address)")
	f.StringVar(&o.apiAddr, "api.address", defaultAPIAddress, "REST gateway listen address, host:port (app.toml [api] address)")
	f.StringVar(&o.sidecarAddr, "sidecar.listen", defaultSidecarListen, "blob sidecar listen address, host:port (app.toml [sidecar] listen)")
	f.StringVar(&o.persistentPeers, "p2p.persistent_peers", "", "comma-separated ID@host:port peers to keep connected to (and let in)")
	f.DurationVar(&o.timeoutCommit, "timeout-commit", 500*time.Millisecond, "consensus timeout_commit: pause after each block")
	f.DurationVar(&o.emptyBlocks, "empty-blocks-interval", 10*time.Second, "make an empty block at least this often when idle (0 = continuously)")
	_ = cmd.MarkFlagRequired("chain-id")
	return cmd
}

func runInit(w io.Writer, o initOptions) error {
	p, err := planInit(o)
	if err != nil {
		return err
	}
	return p.write(w)
}

// initPlan is what init writes into a home, built and checked in memory.
type initPlan struct {
	o           initOptions
	conf        *cmtcfg.Config
	appConf     appConfig
	gs          *emrchainv1.GenesisState
	appState    []byte
	keys        []*devKey
	genesisTime time.Time
}

// planInit checks every input of init and builds what it would write,
// without touching the disk (it only reads --genesis-app-state): testnet
// plans all its nodes before it deletes an old testnet, so that bad input
// fails while the old one is still there.
func planInit(o initOptions) (*initPlan, error) {
	if err := validateBackend(o.backend); err != nil {
		return nil, err
	}
	if o.chainID == "" || len(o.chainID) > cmttypes.MaxChainIDLen || strings.ContainsAny(o.chainID, " \t\n") {
		return nil, fmt.Errorf("--chain-id %q: want 1-%d characters without spaces", o.chainID, cmttypes.MaxChainIDLen)
	}
	if o.timeoutCommit < 0 || o.emptyBlocks < 0 {
		return nil, errors.New("--timeout-commit and --empty-blocks-interval must not be negative")
	}
	if o.moniker == "" {
		o.moniker, _ = os.Hostname()
		if o.moniker == "" {
			o.moniker = "emrchain-node"
		}
	}
	// start refuses a moniker or a persistent peer it cannot use; init
	// refuses them by the same functions, so the operator learns it now,
	// not at start.
	if err := checkMoniker(o.moniker); err != nil {
		return nil, fmt.Errorf("--moniker %q: %w", o.moniker, err)
	}
	if err := checkTemplateValue(o.moniker); err != nil {
		return nil, fmt.Errorf("--moniker %q: %w", o.moniker, err)
	}
	if _, err := persistentPeerIDs(o.persistentPeers); err != nil {
		return nil, fmt.Errorf("--p2p.persistent_peers: %w", err) // names the peer
	}
	if err := checkTemplateValue(o.persistentPeers); err != nil {
		return nil, fmt.Errorf("--p2p.persistent_peers %q: %w", o.persistentPeers, err)
	}

	gs, keys, err := buildGenesisState(o)
	if err != nil {
		return nil, err
	}
	appState, err := protojson.MarshalOptions{Indent: "  ", UseProtoNames: true}.Marshal(gs)
	if err != nil {
		return nil, fmt.Errorf("encode app_state: %w", err)
	}
	genesisTime := cmttime.Now()
	if err := dryRunGenesis(o.chainID, appState, genesisTime); err != nil {
		return nil, err
	}

	conf := cmtcfg.DefaultConfig()
	conf.SetRoot(o.home)
	conf.Moniker = o.moniker
	conf.DBBackend = cometBackend(o.backend)
	conf.RPC.ListenAddress = o.rpcAddr
	conf.P2P.ListenAddress = o.p2pAddr
	conf.P2P.PersistentPeers = o.persistentPeers
	// Consortium validators sit on private networks (or one machine) and
	// know each other's addresses: private and duplicate IPs are normal.
	conf.P2P.AddrBookStrict = false
	conf.P2P.AllowDuplicateIP = true
	conf.TxIndex.Indexer = "kv"
	// CometBFT's metrics, once turned on ([instrumentation] prometheus),
	// listen on this machine only, like every other port init writes.
	conf.Instrumentation.PrometheusListenAddr = "127.0.0.1:26660"
	lanConsensus(conf.Consensus, o.timeoutCommit, o.emptyBlocks)
	if err := conf.ValidateBasic(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	appConf := defaultAppConfig()
	appConf.Store.Backend = o.backend
	// Empty addresses (callers that build initOptions themselves) keep the
	// defaults.
	if o.grpcAddr != "" {
		appConf.GRPC.Address = o.grpcAddr
	}
	if o.sidecarAddr != "" {
		appConf.Sidecar.Listen = o.sidecarAddr
	}
	if o.apiAddr != "" {
		appConf.API.Address = o.apiAddr
	}
	// The sidecar refuses a head older than max_head_age, and the health
	// answers say NOT_SERVING beyond [grpc] max_head_age; an idle chain's
	// head is up to one empty-block interval old, so a long interval gets
	// bounds that leave room for two (start refuses less: checkHeadAge,
	// checkHealthHeadAge).
	room := 2*o.emptyBlocks + 10*time.Second
	if time.Duration(appConf.Sidecar.MaxHeadAge) < room {
		appConf.Sidecar.MaxHeadAge = duration(room)
	}
	if appConf.GRPC.MaxHeadAge < room {
		appConf.GRPC.MaxHeadAge = room
	}
	if o.force {
		if err := keepBlobStoreSettings(o.home, &appConf); err != nil {
			return nil, fmt.Errorf("--force: %w", err)
		}
	}
	if err := appConf.validate(); err != nil {
		return nil, fmt.Errorf("app config: %w", err)
	}
	return &initPlan{o: o, conf: conf, appConf: appConf, gs: gs, appState: appState, keys: keys, genesisTime: genesisTime}, nil
}

// write writes the plan into its home, which must not hold a node unless
// --force was given.
func (p *initPlan) write(w io.Writer) error {
	o, conf, appConf, gs, keys := p.o, p.conf, p.appConf, p.gs, p.keys
	if err := checkHome(o.home, o.force); err != nil {
		return err
	}
	if o.force {
		release, err := lockNodeHome(context.Background(), filepath.Join(o.home, cmtcfg.DefaultDataDir))
		if err != nil {
			return fmt.Errorf("--force: %w", err)
		}
		defer release()
		if err := wipeForReinit(w, o.home, underHome(o.home, appConf.Sidecar.Dir, defaultSidecarDir)); err != nil {
			return fmt.Errorf("--force: %w", err)
		}
	}
	for _, d := range []string{o.home, filepath.Join(o.home, cmtcfg.DefaultConfigDir), filepath.Join(o.home, cmtcfg.DefaultDataDir)} {
		if err := durable.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := writeCometConfig(o.home, conf); err != nil {
		return err
	}
	if err := writeAppConfig(o.home, appConf); err != nil {
		return err
	}
	nodeKey, err := p2p.LoadOrGenNodeKey(conf.NodeKeyFile())
	if err != nil {
		return fmt.Errorf("node key: %w", err)
	}
	pv, err := privval.GenFilePV(conf.PrivValidatorKeyFile(), conf.PrivValidatorStateFile(), nil)
	if err != nil {
		return fmt.Errorf("validator key: %w", err)
	}
	pv.Save()
	pub, err := pv.GetPubKey()
	if err != nil {
		return err
	}
	params := cmttypes.DefaultConsensusParams()
	// The app reports abci.AppVersion in Info; the genesis says the same.
	params.Version.App = abci.AppVersion
	genDoc := cmttypes.GenesisDoc{
		GenesisTime:     p.genesisTime,
		ChainID:         o.chainID,
		InitialHeight:   1,
		ConsensusParams: params,
		Validators:      []cmttypes.GenesisValidator{genesisValidator(pub, o.moniker)},
		AppState:        p.appState,
	}
	if err := genDoc.ValidateAndComplete(); err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	if err := genDoc.SaveAs(conf.GenesisFile()); err != nil {
		return fmt.Errorf("write genesis: %w", err)
	}
	for _, k := range keys {
		if err := k.write(o.home); err != nil {
			return fmt.Errorf("write dev key %s: %w", k.Name, err)
		}
	}
	if err := syncHome(o.home, conf); err != nil {
		return fmt.Errorf("sync %s: %w", o.home, err)
	}

	fmt.Fprintf(w, "Initialized emrchain node in %s\n", o.home)
	fmt.Fprintf(w, "  chain id:          %s\n", o.chainID)
	fmt.Fprintf(w, "  moniker:           %s\n", o.moniker)
	fmt.Fprintf(w, "  node id:           %s\n", nodeKey.ID())
	fmt.Fprintf(w, "  validator address: %s\n", pub.Address())
	fmt.Fprintf(w, "  genesis:           %s\n", conf.GenesisFile())
	fmt.Fprintf(w, "  rpc:               %s\n", conf.RPC.ListenAddress)
	fmt.Fprintf(w, "  p2p:               %s\n", conf.P2P.ListenAddress)
	fmt.Fprintf(w, "  grpc:              %s\n", appConf.GRPC.Address)
	fmt.Fprintf(w, "  rest:              http://%s (OpenAPI: /openapi.json)\n", appConf.API.Address)
	fmt.Fprintf(w, "  backend:           %s\n", o.backend)
	fmt.Fprintf(w, "  organizations:     %d, genesis members: %d\n", len(gs.Organizations), len(gs.Members))
	if len(keys) > 0 {
		fmt.Fprintf(w, "Development keys (unencrypted, for development only):\n")
		for _, k := range keys {
			fmt.Fprintf(w, "  %-12s %s of %s  address %s  %s\n", k.Name, k.Role, k.OrganizationID, strings.ToUpper(k.Address), k.path(o.home)) // as emrcli shows addresses
		}
	}
	fmt.Fprintf(w, "Start the node with: emrchaind start --home %s\n", o.home)
	return nil
}

// checkTemplateValue refuses a value CometBFT's config.toml template
// cannot hold: the template writes it between double quotes as it is, so
// a double quote or a backslash would make config.toml unreadable, or read
// back as another value.
func checkTemplateValue(s string) error {
	if strings.ContainsAny(s, `"\`) {
		return errors.New("want no double quote or backslash (config.toml holds it unescaped)")
	}
	return nil
}

// keepBlobStoreSettings carries the blob store settings of the home's
// app.toml ([sidecar] backend, dir and the MinIO ones) into the new one,
// so that the store init --force keeps (wipeForReinit) is the one the new
// node serves and sweeps. An app.toml it cannot read is refused: it could
// not tell where that store is.
func keepBlobStoreSettings(home string, appConf *appConfig) error {
	path := filepath.Join(home, cmtcfg.DefaultConfigDir, appConfigFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	old, err := loadAppConfig(home)
	if err != nil {
		return fmt.Errorf("cannot tell where the node's blob store is, to keep it: %w (mend %s, or move the blobs away and remove it)", err, path)
	}
	// The store is kept in HOME/data only (wipeForReinit): one under the
	// directories init replaces whole would go with them.
	blobDir := underHome(home, old.Sidecar.Dir, defaultSidecarDir)
	for _, d := range []string{cmtcfg.DefaultConfigDir, devKeysDir} {
		in, err := entriesHolding(filepath.Join(home, d), blobDir)
		if err != nil {
			return err
		}
		if len(in) > 0 {
			return fmt.Errorf("the node's blob store %s is in %s, which init --force replaces: move it (app.toml [sidecar] dir) first", blobDir, filepath.Join(home, d))
		}
	}
	s, o := &appConf.Sidecar, old.Sidecar
	s.Backend, s.Dir = o.Backend, o.Dir
	s.MinIOEndpoint, s.MinIOBucket, s.MinIOPrefix, s.MinIORegion, s.MinIOSecure = o.MinIOEndpoint, o.MinIOBucket, o.MinIOPrefix, o.MinIORegion, o.MinIOSecure
	s.MinIOAccessKey, s.MinIOSecretKey = o.MinIOAccessKey, o.MinIOSecretKey
	return nil
}

// wipeForReinit deletes what init --force starts over: HOME/config,
// HOME/dev-keys and everything in HOME/data but the sidecar's filesystem
// blob store, blobDir (keepBlobStoreSettings keeps it in app.toml, and
// refuses one under config/ or dev-keys/). That store may hold the only
// copy of ciphertext that committed records name (a blob reaches the
// consortium's other sidecars only through their storage services), so only the
// sweep removes blobs, once the chain the node serves references them no
// more. The sweep's reference index goes with the databases: it was read
// from the old chain, and start rebuilds it.
func wipeForReinit(w io.Writer, home, blobDir string) error {
	dataDir := filepath.Join(home, cmtcfg.DefaultDataDir)
	keep, err := entriesHolding(dataDir, blobDir)
	if err != nil {
		return err
	}
	if keep["."] {
		return fmt.Errorf("the sidecar's blob store is %s itself: move the blobs out (app.toml [sidecar] dir), or remove the node's databases by hand", dataDir)
	}
	entries, err := os.ReadDir(dataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if keep[e.Name()] {
			fmt.Fprintf(w, "kept %s: the blob store (the sweep removes the blobs the chain no longer references)\n", filepath.Join(dataDir, e.Name()))
			continue
		}
		if e.Name() == nodeLockFile {
			continue // held by this init; an empty file
		}
		if err := removeForReinit(filepath.Join(dataDir, e.Name())); err != nil {
			return err
		}
	}
	// config/ last: its app.toml says where the blob store is, which a
	// rerun of an init --force stopped part way must still know.
	for _, d := range []string{devKeysDir, cmtcfg.DefaultConfigDir} {
		if err := removeForReinit(filepath.Join(home, d)); err != nil {
			return err
		}
	}
	return nil
}

// reinitRemoving, when set (by tests), is called before wipeForReinit
// removes path: what it sees of the home is what a kill at that point
// leaves.
var reinitRemoving func(path string)

func removeForReinit(path string) error {
	if reinitRemoving != nil {
		reinitRemoving(path)
	}
	return os.RemoveAll(path)
}

// entriesHolding are the entries of dir that are or hold path: by their
// names, and through symbolic links by what they lead to (both, when a
// link in dir leads to another entry of it). "." means path is dir.
func entriesHolding(dir, path string) (map[string]bool, error) {
	keep := map[string]bool{}
	inside := func(dir, path string) {
		rel, err := filepath.Rel(dir, path)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			keep[strings.Split(rel, string(filepath.Separator))[0]] = true
		}
	}
	inside(dir, path)
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	realPath, err := filepath.EvalSymlinks(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if realDir != "" && realPath != "" {
		inside(realDir, realPath)
	}
	return keep, nil
}

// checkHome refuses a home that already holds a node, unless force.
func checkHome(home string, force bool) error {
	candidates := []string{
		filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultGenesisJSONName),
		filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultConfigFileName),
		filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultPrivValKeyName),
		filepath.Join(home, cmtcfg.DefaultDataDir),
		filepath.Join(home, devKeysDir),
	}
	for _, p := range candidates {
		if !nonEmpty(p) {
			continue
		}
		if force {
			return nil
		}
		return fmt.Errorf("%s already holds a node (found %s); refusing to overwrite it: pass --force to delete its config/, dev-keys/ and data/ (but the blob store) and start over", home, p)
	}
	return nil
}

// nonEmpty reports whether p is a file or a non-empty directory.
func nonEmpty(p string) bool {
	fi, err := os.Stat(p)
	if err != nil {
		return false
	}
	if !fi.IsDir() {
		return true
	}
	entries, err := os.ReadDir(p)
	return err != nil || len(entries) > 0
}

// buildGenesisState assembles the app_state and generates the keys of the
// registrars it creates.
func buildGenesisState(o initOptions) (*emrchainv1.GenesisState, []*devKey, error) {
	gs := app.DefaultGenesis()
	if o.appState != nil {
		gs = proto.Clone(o.appState).(*emrchainv1.GenesisState)
	} else if o.appStateFile != "" {
		raw, err := os.ReadFile(o.appStateFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--genesis-app-state: %w", err)
		}
		gs = &emrchainv1.GenesisState{}
		if err := protojson.Unmarshal(raw, gs); err != nil {
			return nil, nil, fmt.Errorf("--genesis-app-state %s: %w", o.appStateFile, err)
		}
	}
	orgs := map[string]bool{}
	for _, org := range gs.Organizations {
		orgs[org.Id] = true
	}
	for _, s := range o.orgs {
		org, err := parseOrg(s)
		if err != nil {
			return nil, nil, err
		}
		if orgs[org.Id] {
			return nil, nil, fmt.Errorf("--org %q: organization %q defined twice", s, org.Id)
		}
		orgs[org.Id] = true
		gs.Organizations = append(gs.Organizations, org)
	}
	registrars := o.registrars
	if len(o.orgs) == 0 && o.appStateFile == "" && o.appState == nil {
		gs.Organizations = append(gs.Organizations, &emrchainv1.Organization{
			Id: devOrgID, Name: devOrgName, Kind: emrchainv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL,
		})
		orgs[devOrgID] = true
		if len(registrars) == 0 {
			registrars = []string{devOrgID + ":" + devRegistrarKey}
		}
	}
	var keys []*devKey
	names := map[string]bool{}
	for _, s := range registrars {
		orgID, name, ok := strings.Cut(s, ":")
		if !ok || orgID == "" || name == "" {
			return nil, nil, fmt.Errorf("--registrar %q: want org-id:NAME", s)
		}
		if !orgs[orgID] {
			return nil, nil, fmt.Errorf("--registrar %q: no organization %q in the genesis", s, orgID)
		}
		if names[name] {
			return nil, nil, fmt.Errorf("--registrar %q: key name %q used twice", s, name)
		}
		names[name] = true
		k, err := newDevKey(name, emrchainv1.Role_ROLE_REGISTRAR, orgID)
		if err != nil {
			return nil, nil, fmt.Errorf("--registrar %q: %w", s, err)
		}
		keys = append(keys, k)
		gs.Members = append(gs.Members, k.genesisMember(emrchainv1.Role_ROLE_REGISTRAR))
	}
	return gs, keys, nil
}

// parseOrg parses "id:name:kind"; the name may contain colons.
func parseOrg(s string) (*emrchainv1.Organization, error) {
	i, j := strings.Index(s, ":"), strings.LastIndex(s, ":")
	if i <= 0 || j <= i+1 || j == len(s)-1 {
		return nil, fmt.Errorf("--org %q: want id:name:kind", s)
	}
	kind, err := app.ParseOrganizationKind(s[j+1:])
	if err != nil {
		return nil, fmt.Errorf("--org %q: %w", s, err)
	}
	return &emrchainv1.Organization{Id: s[:i], Name: s[i+1 : j], Kind: kind}, nil
}

// dryRunGenesis applies the app_state to a throw-away in-memory state, so a
// genesis the chain would refuse at start is refused now.
func dryRunGenesis(chainID string, appState []byte, t time.Time) error {
	opts := store.DefaultOptions()
	opts.Backend = store.BackendMemDB
	st, err := store.Open("", opts)
	if err != nil {
		return fmt.Errorf("check genesis: %w", err)
	}
	defer st.Close()
	a, err := app.New(st, app.Options{})
	if err != nil {
		return fmt.Errorf("check genesis: %w", err)
	}
	// The validators are not known yet (init makes the key after this
	// check); a stand-in of the same kind and power takes their place.
	standIn := []*emrchainv1.Validator{{PubKey: ed25519.GenPrivKeyFromSecret([]byte("dry run")).PubKey().Bytes(), Power: validatorPower}}
	if _, err := a.InitChain(chainID, appState, t, standIn, nil); err != nil {
		return fmt.Errorf("genesis rejected by the state machine: %w", err)
	}
	return nil
}

// syncHome makes what CometBFT's writers wrote for init durable (config,
// keys, genesis: they do not fsync, and a power cut right after init could
// leave an empty genesis.json or validator key behind a successful init);
// app.toml and the development keys are written durably already.
func syncHome(home string, conf *cmtcfg.Config) error {
	files := []string{
		filepath.Join(home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultConfigFileName),
		conf.GenesisFile(), conf.NodeKeyFile(), conf.PrivValidatorKeyFile(), conf.PrivValidatorStateFile(),
	}
	dirs := map[string]bool{}
	for _, f := range files {
		if err := durable.Sync(f); err != nil {
			return err
		}
		dirs[filepath.Dir(f)] = true
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := durable.SyncDir(d); err != nil {
			return err
		}
	}
	return durable.SyncDir(home) // config/ and data/, which CometBFT makes without a sync
}
