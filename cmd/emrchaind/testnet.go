package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	cmttypes "github.com/cometbft/cometbft/types"
	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/internal/durable"
	"github.com/emrchain/emrchain/offchain/blobstore"
	emrchainv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
	"github.com/emrchain/emrchain/testnet/manifest"
)

// Names and defaults of the testnet command.
const (
	testnetKeysDir     = "keys"
	testnetChainID     = "emrchain-localnet"
	testnetBasePort    = 26600
	testnetHost        = "127.0.0.1"
	testnetMaxNodes    = 64
	testnetPortStride  = 10
	testnetMinioAddr   = "127.0.0.1:9000"
	testnetMinioBucket = "emrchain"
)

// Offsets of each node's ports from its block of testnetPortStride ports.
const (
	portOffsetP2P = iota
	portOffsetRPC
	portOffsetGRPC
	portOffsetAPI
	portOffsetSidecar
)

// The default consortium: two hospitals and a research institute, one
// registrar each (key "registrar-<org id>").
var testnetDefaultOrgs = []string{
	"hospital-a:Hospital A:hospital",
	"hospital-b:Hospital B:hospital",
	"research-institute:Research Institute:research",
}

// testnetOptions are the flags of testnet.
type testnetOptions struct {
	validators    int
	output        string
	chainID       string
	orgs          []string
	registrars    []string
	basePort      int
	blob          string
	replicate     bool
	minioAddr     string
	backend       string
	timeoutCommit time.Duration
	emptyBlocks   time.Duration
	force         bool
}

func newTestnetCmd() *cobra.Command {
	var o testnetOptions
	cmd := &cobra.Command{
		Use:   "testnet --output DIR",
		Short: "Write the homes of a multi-validator consortium on this machine",
		Long: `testnet writes a consortium of validators that run on one machine, all on
127.0.0.1:

  DIR/node0 .. DIR/nodeN-1   one home per validator (as written by init), with
                             its own ports, every other node as a persistent
                             peer and in app.allowed_peers (the only peers it
                             accepts), and the same genesis listing all
                             validators
  DIR/keys/NAME.json         the registrars' development keys (see init --help
                             for the format)
  DIR/testnet.json           the chain id and, per node, its home and its RPC,
                             P2P, gRPC, REST and sidecar addresses; the
                             organizations; the key files

Node i uses the ten ports from --base-port + 10*i: P2P +0, RPC +1, gRPC +2,
REST +3, sidecar +4. The default consortium is two hospitals (hospital-a,
hospital-b) and a research institute (research-institute), each with a
registrar "registrar-<org id>"; --org replaces it, and without --registrar
each --org gets such a registrar.

Each node runs its own blob sidecar. With --blob fs (the default) each keeps
its blobs under its home and, unless --replicate=false, signs as a storage
service of its own, seated in the genesis (of the hospitals in turn; none
with one validator or no hospital among the organizations; its
key in DIR/nodeI/` + testnetStorageKeyring + `), so that it copies every
committed blob from the other sidecars; with --blob minio all use one MinIO server at
--minio-addr and one bucket, and take the credentials from MINIO_ACCESS_KEY
and MINIO_SECRET_KEY (start MinIO yourself, or use make localnet BLOB=minio).

Start each node with: emrchaind start --home DIR/nodeI (or make localnet).
testnet refuses a non-empty DIR; --force deletes a DIR that holds a testnet
(DIR/testnet.json, or DIR/testnet.partial: one whose writing was stopped
part way) and writes a new one, unless one of its nodes runs. Every flag
is checked before DIR is touched: a refused flag leaves the old testnet as
it was.`,
		Example: `  emrchaind testnet --output ./localnet
  emrchaind testnet --output /tmp/net --validators 7 --base-port 30000 --chain-id emr-test-2
  emrchaind testnet --output ./localnet --force --org st-mary:"St Mary's":hospital --org lab-1:"Lab 1":lab`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := runTestnet(cmd.OutOrStdout(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.validators, "validators", 4, "number of validators")
	f.StringVar(&o.output, "output", "", "directory to write the testnet into (required)")
	f.StringVar(&o.chainID, "chain-id", testnetChainID, "chain id")
	f.StringArrayVar(&o.orgs, "org", nil, `organization "id:name:kind" (repeatable; default: hospital-a, hospital-b, research-institute)`)
	f.StringArrayVar(&o.registrars, "registrar", nil, `registrar "org-id:NAME" (repeatable; default: "registrar-<org id>" for every organization)`)
	f.IntVar(&o.basePort, "base-port", testnetBasePort, "first port; node i uses the ten ports from base-port + 10*i")
	f.BoolVar(&o.replicate, "replicate", true, `with --blob fs and two or more validators, name the hospitals in params.storage_organizations, seat a storage service per node in the genesis (of the hospitals in turn; key "storage-nodeI" in HOME/`+testnetStorageKeyring+`, a test keyring) and give it to the node's sidecar, which then copies every committed blob from its peers`)
	f.StringVar(&o.blob, "blob", "fs", `blob store of the sidecars: "fs" (embedded, per node) or "minio" (one MinIO server and bucket shared by all; credentials from MINIO_ACCESS_KEY and MINIO_SECRET_KEY)`)
	f.StringVar(&o.minioAddr, "minio-addr", testnetMinioAddr, "MinIO server address with --blob minio")
	f.StringVar(&o.backend, "backend", store.DefaultBackend, "database engine: pebble or goleveldb")
	f.DurationVar(&o.timeoutCommit, "timeout-commit", 500*time.Millisecond, "consensus timeout_commit")
	f.DurationVar(&o.emptyBlocks, "empty-blocks-interval", 10*time.Second, "make an empty block at least this often when idle (0 = continuously)")
	f.BoolVar(&o.force, "force", false, "delete an existing testnet in --output first")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

// runTestnet writes the testnet and returns its description. If it fails
// after it has emptied DIR, it removes what it wrote there.
func runTestnet(w io.Writer, o testnetOptions) (_ *manifest.Testnet, err error) {
	if o.validators < 1 || o.validators > testnetMaxNodes {
		return nil, fmt.Errorf("--validators %d: want 1 to %d", o.validators, testnetMaxNodes)
	}
	if o.basePort < 1024 || o.basePort+testnetPortStride*o.validators > 65535 {
		return nil, fmt.Errorf("--base-port %d: the ports of %d validators must lie within 1024-65535", o.basePort, o.validators)
	}
	if o.blob != "fs" && o.blob != "minio" {
		return nil, fmt.Errorf(`--blob %q: want "fs" or "minio"`, o.blob)
	}
	if o.blob == "minio" {
		if err := blobstore.CheckMinIOEndpoint(o.minioAddr); err != nil {
			return nil, fmt.Errorf("--minio-addr: %w", err)
		}
	}
	if err := validateBackend(o.backend); err != nil {
		return nil, err
	}
	out, err := filepath.Abs(o.output)
	if err != nil {
		return nil, err
	}
	orgs := o.orgs
	if len(orgs) == 0 {
		orgs = testnetDefaultOrgs
	}
	registrars := o.registrars
	if len(registrars) == 0 {
		for _, s := range orgs {
			id, _, _ := strings.Cut(s, ":")
			registrars = append(registrars, id+":registrar-"+id)
		}
	}

	// Everything that can fail on bad input is checked before DIR is
	// touched: with --force DIR holds the old testnet, which a mistyped
	// flag must not cost. Every node's init is planned (checked and built
	// in memory) first; the nodes differ only in what testnet derives, so
	// a refusal is about the flags, not about one node.
	base := initOptions{
		chainID:       o.chainID,
		orgs:          orgs,
		registrars:    registrars,
		backend:       o.backend,
		timeoutCommit: o.timeoutCommit,
		emptyBlocks:   o.emptyBlocks,
	}
	gs, keys, err := buildGenesisState(base)
	if err != nil {
		return nil, err
	}
	// With the fs store the genesis names the hospitals as the
	// organizations that keep copies (params.storage_organizations), and
	// every node's sidecar signs as a storage service of its own (of the
	// hospitals in turn), seated in the genesis, so that each keeps a copy
	// of every committed blob.
	var storage []*keyring.Key
	var hospitals []string
	for _, org := range gs.Organizations {
		if org.Kind == emrchainv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL {
			hospitals = append(hospitals, org.Id)
		}
	}
	// One node has no peer to copy from: no storage services then.
	if o.blob != "minio" && o.replicate && len(hospitals) > 0 && o.validators > 1 {
		gs.Params.StorageOrganizations = hospitals
		for i := range o.validators {
			k, err := keyring.Generate(fmt.Sprintf("storage-node%d", i))
			if err != nil {
				return nil, err
			}
			storage = append(storage, k)
			gs.Members = append(gs.Members, &emrchainv1.GenesisMember{
				SignPubKey: k.PubKey(), EncPubKey: k.EncPubKey(), Role: emrchainv1.Role_ROLE_STORAGE_SERVICE,
				OrganizationId: hospitals[i%len(hospitals)], CredentialRef: "localnet-sidecar:node" + strconv.Itoa(i),
			})
		}
	}
	net := &manifest.Testnet{ChainID: o.chainID, Blob: manifest.Blob{Kind: o.blob}}
	if o.blob == "minio" {
		net.Blob.MinioAddr, net.Blob.MinioBucket = o.minioAddr, testnetMinioBucket
	}
	var plans []*initPlan
	for i := range o.validators {
		port := func(off int) int { return o.basePort + testnetPortStride*i + off }
		n := manifest.Node{
			Name:    fmt.Sprintf("node%d", i),
			Home:    filepath.Join(out, fmt.Sprintf("node%d", i)),
			RPC:     fmt.Sprintf("tcp://%s:%d", testnetHost, port(portOffsetRPC)),
			P2P:     fmt.Sprintf("tcp://%s:%d", testnetHost, port(portOffsetP2P)),
			GRPC:    fmt.Sprintf("%s:%d", testnetHost, port(portOffsetGRPC)),
			API:     fmt.Sprintf("http://%s:%d", testnetHost, port(portOffsetAPI)),
			Sidecar: fmt.Sprintf("http://%s:%d", testnetHost, port(portOffsetSidecar)),
		}
		ni := base
		ni.home, ni.moniker, ni.appState = n.Home, n.Name, gs
		ni.orgs, ni.registrars = nil, nil // all in the app_state already
		ni.rpcAddr, ni.p2pAddr = n.RPC, n.P2P
		ni.grpcAddr, ni.apiAddr, ni.sidecarAddr = n.GRPC, strings.TrimPrefix(n.API, "http://"), strings.TrimPrefix(n.Sidecar, "http://")
		p, err := planInit(ni)
		if err != nil {
			return nil, err
		}
		plans = append(plans, p)
		net.Nodes = append(net.Nodes, n)
	}
	if err := prepareTestnetDir(out, o.force); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if emptyTestnetDir(out) == nil {
				os.RemoveAll(out) // the mark last
			}
		}
	}()

	var validators []cmttypes.GenesisValidator
	for i, p := range plans {
		n := &net.Nodes[i]
		// testnet prints one summary of its own, not init's per node.
		if err := p.write(io.Discard); err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		conf := cmtcfg.DefaultConfig()
		conf.SetRoot(n.Home)
		nodeKey, err := p2p.LoadNodeKey(conf.NodeKeyFile())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		pv := privval.LoadFilePV(conf.PrivValidatorKeyFile(), conf.PrivValidatorStateFile())
		pub, err := pv.GetPubKey()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		n.NodeID = string(nodeKey.ID())
		n.ValidatorAddress = pub.Address().String()
		validators = append(validators, genesisValidator(pub, n.Name))
	}

	// One genesis, every validator in it, every node with the others as peers.
	genDoc, err := cmttypes.GenesisDocFromFile(filepath.Join(net.Nodes[0].Home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultGenesisJSONName))
	if err != nil {
		return nil, err
	}
	genDoc.Validators = validators
	if err := genDoc.ValidateAndComplete(); err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	for i := range net.Nodes {
		n := &net.Nodes[i]
		var peers []string
		for j, m := range net.Nodes {
			if j != i {
				peers = append(peers, m.NodeID+"@"+strings.TrimPrefix(m.P2P, "tcp://"))
			}
		}
		n.PersistentPeers = strings.Join(peers, ",")
		if err := genDoc.SaveAs(filepath.Join(n.Home, cmtcfg.DefaultConfigDir, cmtcfg.DefaultGenesisJSONName)); err != nil {
			return nil, fmt.Errorf("%s: write genesis: %w", n.Name, err)
		}
		conf, err := loadCometConfig(n.Home)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		conf.P2P.PersistentPeers = n.PersistentPeers
		if err := writeCometConfig(n.Home, conf); err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		var sidecarPeers, peerIDs []string
		for _, other := range net.Nodes {
			if other.Name != n.Name {
				sidecarPeers = append(sidecarPeers, other.Sidecar)
				peerIDs = append(peerIDs, other.NodeID)
			}
		}
		var storageKey *keyring.Key
		if storage != nil {
			storageKey = storage[i]
			kr, err := keyring.Open(keyring.BackendTest, filepath.Join(n.Home, testnetStorageKeyring), nil)
			if err == nil {
				err = kr.Create(storageKey)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: the storage service's keyring: %w", n.Name, err)
			}
		}
		if err := configureTestnetServices(n.Home, *n, net.Blob, sidecarPeers, peerIDs, storageKey); err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
	}

	if testnetHomesWritten != nil {
		testnetHomesWritten(out)
	}

	// The registrars' keys, and the description of the whole net.
	for _, k := range keys {
		if err := writeKeyFile(filepath.Join(out, testnetKeysDir), k); err != nil {
			return nil, fmt.Errorf("write key %s: %w", k.Name, err)
		}
		net.Keys = append(net.Keys, manifest.Key{
			Name: k.Name, Role: k.Role, OrganizationID: k.OrganizationID, Address: k.Address,
			File: filepath.Join(out, testnetKeysDir, k.Name+".json"),
		})
	}
	for _, org := range gs.Organizations {
		net.Orgs = append(net.Orgs, manifest.Org{
			ID: org.Id, Name: org.Name,
			Kind: strings.ToLower(strings.TrimPrefix(org.Kind.String(), "ORGANIZATION_KIND_")),
		})
	}
	desc, err := json.MarshalIndent(net, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := durable.ReplaceFile(filepath.Join(out, manifest.File), append(desc, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(out, testnetPartialFile)); err != nil {
		return nil, err
	}

	fmt.Fprintf(w, "Wrote a %d-validator testnet of chain %s in %s\n", len(net.Nodes), net.ChainID, out)
	for _, n := range net.Nodes {
		fmt.Fprintf(w, "  %-6s rpc %s  p2p %s  grpc %s  api %s  sidecar %s\n", n.Name, n.RPC, n.P2P, n.GRPC, n.API, n.Sidecar)
	}
	for _, k := range net.Keys {
		fmt.Fprintf(w, "  key %-28s %s of %s  %s\n", k.Name, k.Role, k.OrganizationID, k.File)
	}
	fmt.Fprintf(w, "Description: %s\n", filepath.Join(out, manifest.File))
	fmt.Fprintf(w, "Start each node with: emrchaind start --home %s/nodeI\n", out)
	return net, nil
}

// testnetStorageKeyring is the emrcli home, under a testnet node's home,
// of its sidecar's storage service key.
const testnetStorageKeyring = "storage-keyring"

// testnetHomesWritten, when set (by tests), is called once the node homes
// are written, before the keys and testnet.json: what it sees of out is
// what a kill at that point leaves.
var testnetHomesWritten func(out string)

// testnetRemoving, when set (by tests), is called before emptyTestnetDir
// removes each entry name of out: what it sees of out is what a kill at
// that point leaves.
var testnetRemoving func(out, name string)

// testnetPartialFile marks a testnet directory being written: made first,
// removed once testnet.json is written last. A directory that holds it is
// a testnet whose writing stopped part way (Ctrl-C, a kill), which --force
// may delete like a whole one.
const testnetPartialFile = "testnet.partial"

// prepareTestnetDir makes out an empty directory, marked as a testnet
// being written (testnetPartialFile). A non-empty out is refused, unless
// force is set and out holds a testnet (testnet.json, or the mark of one
// whose writing stopped): only then is it deleted, so a mistyped --output
// never wipes unrelated files.
func prepareTestnetDir(out string, force bool) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) == 0:
	case !force:
		if fileExists(filepath.Join(out, testnetPartialFile)) {
			return fmt.Errorf("%s holds a testnet whose writing stopped part way; pass --force to delete it and write a new one", out)
		}
		return fmt.Errorf("%s is not empty; refusing to overwrite it: pass --force to delete the testnet in it and write a new one", out)
	default:
		if !fileExists(filepath.Join(out, manifest.File)) && !fileExists(filepath.Join(out, testnetPartialFile)) {
			return fmt.Errorf("--force: %s holds no %s, so it is not a testnet; not deleting it", out, manifest.File)
		}
		// None of its nodes may run: their homes go.
		for _, e := range entries {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), "node") {
				continue
			}
			release, err := lockNodeHome(context.Background(), filepath.Join(out, e.Name(), cmtcfg.DefaultDataDir))
			if err != nil {
				return fmt.Errorf("--force: %s: %w", e.Name(), err)
			}
			defer release()
		}
		// Marked before anything goes, so that a deletion stopped part
		// way leaves a directory --force still knows for a testnet.
		if err := markTestnetPartial(out); err != nil {
			return fmt.Errorf("--force: %w", err)
		}
		if err := emptyTestnetDir(out); err != nil {
			return fmt.Errorf("--force: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return markTestnetPartial(out)
}

// markTestnetPartial marks out as a testnet being written (or deleted):
// testnetPartialFile, durably, unless it is there already.
func markTestnetPartial(out string) error {
	err := durable.CreateFile(filepath.Join(out, testnetPartialFile),
		[]byte("emrchaind testnet is writing a testnet here; if this file stays, it stopped part way: run it again with --force\n"), 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	return err
}

// emptyTestnetDir removes everything in out but its testnetPartialFile,
// testnet.json first (a testnet without it is one being written, or
// deleted, whose node homes nothing may start).
func emptyTestnetDir(out string) error {
	entries, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	names := []string{manifest.File}
	for _, e := range entries {
		if e.Name() != manifest.File {
			names = append(names, e.Name())
		}
	}
	for _, name := range names {
		if name == testnetPartialFile {
			continue
		}
		if testnetRemoving != nil {
			testnetRemoving(out, name)
		}
		if err := os.RemoveAll(filepath.Join(out, name)); err != nil {
			return err
		}
	}
	return nil
}

// fileExists reports whether path names something (Lstat succeeds).
func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// configureTestnetServices gives the node's blob sidecar its blob store in
// app.toml's [sidecar] table (init has set the gRPC, REST and sidecar
// listen addresses). With minio, all sidecars share one server and one
// bucket — one storage operator — so a blob uploaded through any sidecar
// can be fetched from any other, as a reader checking it against the chain
// may do. The MinIO credentials are not written: the sidecars take them
// from MINIO_ACCESS_KEY and MINIO_SECRET_KEY. With the fs store each
// hospital keeps its own blobs, its sidecar reads through its peers'
// (peers: the other nodes' sidecars), and signs as the storage service
// whose key is storage (in HOME/storage-keyring, a test keyring), so that
// it copies every committed blob from its peers.
func configureTestnetServices(home string, n manifest.Node, blob manifest.Blob, peers, peerIDs []string, storage *keyring.Key) error {
	c, err := loadAppConfig(home)
	if err != nil {
		return err
	}
	c.App.AllowedPeers = peerIDs
	c.Sidecar.Listen = strings.TrimPrefix(n.Sidecar, "http://")
	c.Sidecar.Backend = blob.Kind
	if blob.Kind == sidecarBackendMinIO {
		c.Sidecar.MinIOEndpoint, c.Sidecar.MinIOBucket = blob.MinioAddr, blob.MinioBucket
	} else {
		c.Sidecar.Peers = peers
	}
	if storage != nil {
		c.Sidecar.StorageKey, c.Sidecar.StorageKeyringHome, c.Sidecar.StorageKeyringBackend = storage.Name, testnetStorageKeyring, keyring.BackendTest
	}
	return writeAppConfig(home, c)
}
