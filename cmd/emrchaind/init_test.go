package main

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto/ed25519"
	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
	emrchainv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// run executes emrchaind in-process with args and returns stdout and the
// error Execute returned.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func readGenesis(t *testing.T, home string) (*cmttypes.GenesisDoc, *emrchainv1.GenesisState) {
	t.Helper()
	doc, err := cmttypes.GenesisDocFromFile(filepath.Join(home, "config", "genesis.json"))
	if err != nil {
		t.Fatal(err)
	}
	var gs emrchainv1.GenesisState
	if err := protojson.Unmarshal(doc.AppState, &gs); err != nil {
		t.Fatalf("app_state: %v", err)
	}
	return doc, &gs
}

func readDevKey(t *testing.T, path string) *devKey {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var k devKey
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &k
}

func TestInitDevNode(t *testing.T) {
	home := t.TempDir()
	out, err := run(t, "init", "--home", home, "--chain-id", "emr-dev", "--moniker", "node0")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, f := range []string{"config/config.toml", "config/app.toml", "config/genesis.json", "config/node_key.json",
		"config/priv_validator_key.json", "data/priv_validator_state.json", "dev-keys/registrar.json"} {
		if _, err := os.Stat(filepath.Join(home, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	doc, gs := readGenesis(t, home)
	if doc.ChainID != "emr-dev" || len(doc.Validators) != 1 || doc.Validators[0].Name != "node0" {
		t.Fatalf("genesis: chain %q validators %v", doc.ChainID, doc.Validators)
	}
	if doc.ConsensusParams.Version.App != abci.AppVersion {
		t.Fatalf("genesis version.app = %d, want %d", doc.ConsensusParams.Version.App, abci.AppVersion)
	}
	if len(gs.Organizations) != 1 || gs.Organizations[0].Id != devOrgID ||
		gs.Organizations[0].Kind != emrchainv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL {
		t.Fatalf("organizations = %v, want the dev hospital", gs.Organizations)
	}
	if gs.Params == nil || len(gs.Params.Categories) == 0 {
		t.Fatalf("params missing from app_state: %v", gs.Params)
	}
	if len(gs.Members) != 1 {
		t.Fatalf("members = %v, want one registrar", gs.Members)
	}
	m := gs.Members[0]
	k := readDevKey(t, filepath.Join(home, "dev-keys", "registrar.json"))
	if k.Role != "registrar" || k.OrganizationID != devOrgID || k.Name != "registrar" ||
		m.Role != emrchainv1.Role_ROLE_REGISTRAR || m.OrganizationId != devOrgID {
		t.Fatalf("key %+v / member %v", k, m)
	}
	// The file's keys are the genesis member's and are consistent.
	if !bytes.Equal(k.SignPubKey, m.SignPubKey) || !bytes.Equal(k.EncPubKey, m.EncPubKey) {
		t.Fatal("dev key and genesis member disagree")
	}
	if len(k.SignPrivKey) != 64 || !bytes.Equal(ed25519.PrivKey(k.SignPrivKey).PubKey().Bytes(), k.SignPubKey) {
		t.Fatal("sign_priv_key does not match sign_pub_key")
	}
	enc, err := ecdh.X25519().NewPrivateKey(k.EncPrivKey)
	if err != nil || !bytes.Equal(enc.PublicKey().Bytes(), k.EncPubKey) {
		t.Fatalf("enc_priv_key does not match enc_pub_key: %v", err)
	}
	if k.Address != hex.EncodeToString(app.AddressOf(k.SignPubKey)) {
		t.Fatalf("address %s is not AddressOf(sign_pub_key)", k.Address)
	}
	if !strings.Contains(out, strings.ToUpper(k.Address)) || !strings.Contains(out, filepath.Join(home, "dev-keys", "registrar.json")) {
		t.Fatalf("init output does not show the registrar's address and key path:\n%s", out)
	}

	// The written config loads back as written, with the LAN settings.
	conf, err := loadCometConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if conf.Consensus.TimeoutCommit != 500*time.Millisecond || conf.Consensus.CreateEmptyBlocksInterval != 10*time.Second ||
		conf.RPC.ListenAddress != "tcp://127.0.0.1:26657" || conf.P2P.ListenAddress != "tcp://127.0.0.1:26656" ||
		conf.TxIndex.Indexer != "kv" || conf.DBBackend != "pebbledb" || conf.Moniker != "node0" ||
		conf.Instrumentation.PrometheusListenAddr != "127.0.0.1:26660" {
		t.Fatalf("config: %+v %+v %+v %+v", conf.Consensus, conf.RPC, conf.P2P, conf.Instrumentation)
	}
	appConf, err := loadAppConfig(home)
	if err != nil || !reflect.DeepEqual(appConf, defaultAppConfig()) {
		t.Fatalf("app.toml = %+v, %v; want the defaults", appConf, err)
	}
}

func TestInitTwiceNeedsForce(t *testing.T) {
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a"); err != nil {
		t.Fatalf("first init: %v\n%s", err, out)
	}
	_, gsBefore := readGenesis(t, home)

	_, err := run(t, "init", "--home", home, "--chain-id", "emr-b")
	if err == nil {
		t.Fatal("second init without --force succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "already holds a node") || !strings.Contains(msg, "--force") {
		t.Fatalf("unclear error: %q", msg)
	}
	doc, gsAfter := readGenesis(t, home)
	if doc.ChainID != "emr-a" || !bytes.Equal(gsBefore.Members[0].SignPubKey, gsAfter.Members[0].SignPubKey) {
		t.Fatal("the refused init changed the home")
	}

	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-b", "--force"); err != nil {
		t.Fatalf("init --force: %v\n%s", err, out)
	}
	doc, gsAfter = readGenesis(t, home)
	if doc.ChainID != "emr-b" || bytes.Equal(gsBefore.Members[0].SignPubKey, gsAfter.Members[0].SignPubKey) {
		t.Fatal("init --force did not start over")
	}
}

// TestInitForceKeepsBlobStore: init --force starts the node over but keeps
// the sidecar's filesystem blob store, which may hold the only copy of
// ciphertext the consortium's records name; the sweep's reference index,
// read from the old chain, goes with the databases.
func TestInitForceKeepsBlobStore(t *testing.T) {
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	blob := filepath.Join(home, "data", "blobs", "blobs", "ab", strings.Repeat("ab", 32), strings.Repeat("11", 32))
	refs := filepath.Join(home, "data", "sidecar-refs", "000001.log")
	oldDB := filepath.Join(home, "data", "blockstore.db", "000001.log")
	for _, p := range []string{blob, refs, oldDB} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run(t, "init", "--home", home, "--chain-id", "emr-a", "--force")
	if err != nil {
		t.Fatalf("init --force: %v\n%s", err, out)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Errorf("init --force deleted the sidecar's blob store: %v", err)
	}
	if !strings.Contains(out, "kept "+filepath.Join(home, "data", "blobs")) {
		t.Errorf("init --force does not say it kept the blob store:\n%s", out)
	}
	for _, p := range []string{refs, oldDB} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("init --force kept %s (%v)", p, err)
		}
	}
}

// putTestBlob writes one blob into the filesystem blob store at dir, where
// the sidecar would, and returns its path.
func putTestBlob(t *testing.T, dir string) string {
	t.Helper()
	blob := filepath.Join(dir, "blobs", "ab", strings.Repeat("ab", 32), strings.Repeat("11", 32))
	if err := os.MkdirAll(filepath.Dir(blob), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return blob
}

// TestInitForceKeepsConfiguredBlobStore: the blob store init --force keeps
// is the one the old app.toml names, and the new app.toml names it too (so
// the new node serves and sweeps it), whether it is named relative to the
// home or by an absolute path through a symlinked home; an app.toml init
// cannot read is refused before anything is deleted.
func TestInitForceKeepsConfiguredBlobStore(t *testing.T) {
	real := t.TempDir()
	home := filepath.Join(t.TempDir(), "node") // a symlink to real
	if err := os.Symlink(real, home); err != nil {
		t.Fatal(err)
	}
	appToml := filepath.Join(home, "config", "app.toml")
	setDir := func(dir string, extra string) {
		raw, err := os.ReadFile(appToml)
		if err != nil {
			t.Fatal(err)
		}
		body := regexp.MustCompile(`(?m)^dir = ".*"$`).ReplaceAllString(string(raw), `dir = "`+dir+`"`)
		body = strings.Replace(body, "[sidecar]", "[sidecar]"+extra, 1)
		if err := os.WriteFile(appToml, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"data/store", filepath.Join(real, "data", "blobs")} {
		if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a", "--force"); err != nil {
			t.Fatalf("init: %v\n%s", err, out)
		}
		setDir(dir, "")
		blob := putTestBlob(t, underHome(home, dir, ""))
		if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a", "--force"); err != nil {
			t.Fatalf("init --force: %v\n%s", err, out)
		}
		if _, err := os.Stat(blob); err != nil {
			t.Fatalf("init --force deleted the blob store %s: %v", dir, err)
		}
		c, err := loadSidecarConfig(home)
		if err != nil {
			t.Fatal(err)
		}
		if c.Dir != dir {
			t.Errorf("init --force kept the blob store %s, but the new app.toml names %q", dir, c.Dir)
		}
	}

	setDir("data/store", "\nsome_retired_key = 1")
	blob := putTestBlob(t, filepath.Join(home, "data", "store"))
	out, err := run(t, "init", "--home", home, "--chain-id", "emr-a", "--force")
	if err == nil || !strings.Contains(err.Error(), "blob store") {
		t.Errorf("init --force over an app.toml it cannot read: %v, want a refusal naming the blob store\n%s", err, out)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Fatalf("the refused init --force deleted the blob store: %v", err)
	}
}

// TestInitForceBlobStoreLinks: a blob store reached through a link in
// HOME/data to another of its entries keeps both; one under config/ (which
// init --force replaces whole) is refused before anything is deleted.
func TestInitForceBlobStoreLinks(t *testing.T) {
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	// data/blobs -> blobs-2026 (the blobs moved, the link put back).
	blob := putTestBlob(t, filepath.Join(home, "data", "blobs-2026"))
	if err := os.Symlink("blobs-2026", filepath.Join(home, "data", "blobs")); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a", "--force"); err != nil {
		t.Fatalf("init --force: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(home, "data", "blobs", "blobs")); err != nil {
		t.Fatalf("init --force broke data/blobs -> blobs-2026 (the blob %s: %v)", blob, err)
	}

	editFile(t, filepath.Join(home, "config", "app.toml"), `dir = "data/blobs"`, `dir = "config/blobs"`)
	blob = putTestBlob(t, filepath.Join(home, "config", "blobs"))
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-a", "--force"); err == nil || !strings.Contains(err.Error(), "init --force replaces") {
		t.Fatalf("init --force with the blob store in config/: %v, want a refusal\n%s", err, out)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Fatalf("the refused init --force deleted the blob store in config/: %v", err)
	}
}

func TestInitConsortium(t *testing.T) {
	home := t.TempDir()
	out, err := run(t, "init", "--home", home, "--chain-id", "emr-c", "--backend", "pebble",
		"--org", "st-mary:St Mary's: Hospital:hospital", "--org", "north-lab:North Lab:LAB",
		"--registrar", "st-mary:alice", "--registrar", "north-lab:carol",
		"--rpc.laddr", "tcp://127.0.0.1:27657", "--p2p.laddr", "tcp://127.0.0.1:27656",
		"--timeout-commit", "300ms", "--empty-blocks-interval", "0s")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	_, gs := readGenesis(t, home)
	want := []*emrchainv1.Organization{
		{Id: "st-mary", Name: "St Mary's: Hospital", Kind: emrchainv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL},
		{Id: "north-lab", Name: "North Lab", Kind: emrchainv1.OrganizationKind_ORGANIZATION_KIND_LAB},
	}
	if len(gs.Organizations) != 2 {
		t.Fatalf("organizations = %v", gs.Organizations)
	}
	for i, o := range gs.Organizations {
		if o.Id != want[i].Id || o.Name != want[i].Name || o.Kind != want[i].Kind {
			t.Fatalf("organization %d = %v, want %v", i, o, want[i])
		}
	}
	if len(gs.Members) != 2 {
		t.Fatalf("members = %v", gs.Members)
	}
	for i, name := range []string{"alice", "carol"} {
		k := readDevKey(t, filepath.Join(home, "dev-keys", name+".json"))
		if !bytes.Equal(k.SignPubKey, gs.Members[i].SignPubKey) || k.OrganizationID != gs.Members[i].OrganizationId {
			t.Fatalf("key %s does not match member %d", name, i)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "dev-keys", "registrar.json")); err == nil {
		t.Fatal("a dev registrar was created although organizations were given")
	}
	conf, err := loadCometConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if conf.DBBackend != "pebbledb" || conf.RPC.ListenAddress != "tcp://127.0.0.1:27657" ||
		conf.Consensus.TimeoutCommit != 300*time.Millisecond || conf.Consensus.CreateEmptyBlocksInterval != 0 {
		t.Fatalf("config not as flagged: backend %s rpc %s consensus %+v", conf.DBBackend, conf.RPC.ListenAddress, conf.Consensus)
	}
	appConf, err := loadAppConfig(home)
	if err != nil || appConf.Store.Backend != "pebble" {
		t.Fatalf("app.toml backend = %q, %v", appConf.Store.Backend, err)
	}
}

func TestInitGenesisAppStateFile(t *testing.T) {
	gs := app.DefaultGenesis()
	gs.Organizations = append(gs.Organizations, &emrchainv1.Organization{
		Id: "lab-1", Name: "Lab One", Kind: emrchainv1.OrganizationKind_ORGANIZATION_KIND_LAB,
	})
	raw, err := protojson.Marshal(gs)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "app_state.json")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-f", "--genesis-app-state", file, "--registrar", "lab-1:lee"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	_, got := readGenesis(t, home)
	if len(got.Organizations) != 1 || got.Organizations[0].Id != "lab-1" || len(got.Members) != 1 {
		t.Fatalf("app_state = %v", got)
	}
	readDevKey(t, filepath.Join(home, "dev-keys", "lee.json"))
}

func TestInitRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no chain id", nil, "chain-id"},
		{"bad org", []string{"--chain-id", "c", "--org", "just-an-id"}, "id:name:kind"},
		{"bad org kind", []string{"--chain-id", "c", "--org", "a:A:bakery"}, "organization kind"},
		{"duplicate org", []string{"--chain-id", "c", "--org", "a:A:lab", "--org", "a:B:lab"}, "twice"},
		{"registrar of unknown org", []string{"--chain-id", "c", "--registrar", "nowhere:bob"}, "no organization"},
		{"bad registrar", []string{"--chain-id", "c", "--registrar", "bob"}, "org-id:NAME"},
		{"bad key name", []string{"--chain-id", "c", "--registrar", "dev-hospital:../evil"}, "key name"},
		{"duplicate key name", []string{"--chain-id", "c", "--registrar", "dev-hospital:x", "--registrar", "dev-hospital:x"}, "twice"},
		{"bad backend", []string{"--chain-id", "c", "--backend", "memdb"}, "backend"},
		{"missing app state file", []string{"--chain-id", "c", "--genesis-app-state", "/nonexistent/app.json"}, "genesis-app-state"},
		{"long chain id", []string{"--chain-id", strings.Repeat("x", 51)}, "chain-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			_, err := run(t, append([]string{"init", "--home", home}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(home); len(entries) != 0 {
				t.Fatalf("a refused init wrote %d entries into the home", len(entries))
			}
		})
	}
}

// TestCometConfigRoundTrip: what init writes with CometBFT's template reads
// back identically through loadCometConfig.
func TestCometConfigRoundTrip(t *testing.T) {
	home := t.TempDir()
	conf := cmtcfg.DefaultConfig()
	conf.SetRoot(home)
	conf.Moniker = "round-trip"
	conf.P2P.PersistentPeers = "a@127.0.0.1:1,b@127.0.0.1:2"
	conf.RPC.CORSAllowedOrigins = []string{"http://x", "http://y"}
	lanConsensus(conf.Consensus, 250*time.Millisecond, 3*time.Second)
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmtcfg.WriteConfigFile(filepath.Join(home, "config", "config.toml"), conf)
	got, err := loadCometConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	// The template writes the empty list as "", which reads back as an
	// empty, non-nil slice (as it does through viper in CometBFT's CLI).
	conf.StateSync.RPCServers = []string{}
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(conf).Elem()
	for i := 0; i < gv.NumField(); i++ {
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			t.Errorf("section %s changed through the file:\n got %+v\nwant %+v",
				gv.Type().Field(i).Name, reflect.Indirect(gv.Field(i)), reflect.Indirect(wv.Field(i)))
		}
	}
}

// TestCometConfigUnknownKeys: a misspelt key in config.toml is refused, as
// in app.toml, instead of leaving its setting at the default unsaid.
func TestCometConfigUnknownKeys(t *testing.T) {
	for _, c := range []struct{ old, typo, want string }{
		{"\nenable = false", "\nenabled = true", "'statesync' has invalid keys: enabled"},
		{"\npersistent_peers = ", "\npersistent-peers = ", "'p2p' has invalid keys: persistent-peers"},
		{"\nmoniker = ", "\nmonicker = ", "invalid keys: monicker"},
	} {
		home := t.TempDir()
		conf := cmtcfg.DefaultConfig()
		conf.SetRoot(home)
		if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(home, "config", "config.toml")
		cmtcfg.WriteConfigFile(path, conf)
		raw, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(raw, []byte(c.old)) {
			t.Fatalf("config.toml has no %q: %v", c.old, err)
		}
		if err := os.WriteFile(path, bytes.Replace(raw, []byte(c.old), []byte(c.typo), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadCometConfig(home); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config.toml with %q: %v, want an error naming the key", c.typo, err)
		}
	}
}

func TestAppConfig(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	if c, err := loadAppConfig(home); err != nil || !reflect.DeepEqual(c, defaultAppConfig()) {
		t.Fatalf("missing app.toml = %+v, %v; want the defaults", c, err)
	}
	c := defaultAppConfig()
	c.Store.Backend = "pebble"
	c.Store.PruningKeepRecent, c.Store.PruningInterval = 1000, 100
	c.Store.CometBFTMemTableMiB = 128
	if err := writeAppConfig(home, c); err != nil {
		t.Fatal(err)
	}
	if got, err := loadAppConfig(home); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("app.toml = %+v, %v; want %+v", got, err, c)
	}
	so := c.storeOptions()
	if so.Backend != "pebble" || so.KeepRecent != 1000 || so.PruneInterval != 100 || so.CacheSize != c.Store.CacheSize ||
		so.ValueCacheSize != c.Store.ValueCacheSize || so.ValueCacheSize <= 0 {
		t.Fatalf("store options %+v", so)
	}
	c.Store.ValueCacheSize = 0
	if so := c.storeOptions(); so.ValueCacheSize >= 0 {
		t.Fatalf("value_cache_size = 0 gives the store %d, want none (negative)", so.ValueCacheSize)
	}
	for name, body := range map[string]string{
		"unknown key":          "[store]\nbackend = \"goleveldb\"\nbogus = 1\n",
		"bad backend":          "[store]\nbackend = \"memdb\"\n",
		"half pruning":         "[store]\npruning_keep_recent = 10\n",
		"too few kept":         "[store]\npruning_keep_recent = 99\npruning_interval = 10\n",
		"negative kept":        "[store]\npruning_keep_recent = -1\npruning_interval = 10\n",
		"negative interval":    "[store]\npruning_keep_recent = 1000\npruning_interval = -1\n",
		"negative value cache": "[store]\nvalue_cache_size = -1\n",
		"negative memtable":    "[store]\ncometbft_memtable_mib = -1\n",
		"memtable of 4 GiB":    "[store]\ncometbft_memtable_mib = 4096\n",
		"101 snapshots kept":   "[store]\nsnapshot_keep_recent = 101\n",
		"not toml":             "[store\n",
	} {
		if err := os.WriteFile(filepath.Join(home, "config", appConfigFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadAppConfig(home); err == nil {
			t.Errorf("%s: loadAppConfig accepted %q", name, body)
		}
	}
}

func TestParseOrg(t *testing.T) {
	for in, want := range map[string]*emrchainv1.Organization{
		"h:Hospital:hospital":            {Id: "h", Name: "Hospital", Kind: emrchainv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL},
		"r:A: B:research":                {Id: "r", Name: "A: B", Kind: emrchainv1.OrganizationKind_ORGANIZATION_KIND_RESEARCH},
		"p:P:ORGANIZATION_KIND_PHARMACY": {Id: "p", Name: "P", Kind: emrchainv1.OrganizationKind_ORGANIZATION_KIND_PHARMACY},
	} {
		got, err := parseOrg(in)
		if err != nil || got.Id != want.Id || got.Name != want.Name || got.Kind != want.Kind {
			t.Errorf("parseOrg(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "a:b", ":A:lab", "a::lab", "a:A:", "a:A:unspecified", "a:A:ORGANIZATION_KIND_UNSPECIFIED", "a:A:reſearch"} {
		if _, err := parseOrg(in); err == nil {
			t.Errorf("parseOrg(%q) succeeded", in)
		}
	}
}

// TestAllowedPeersConfig: app.allowed_peers holds node ids (40 hex), kept
// through app.toml; anything else is refused.
func TestAllowedPeersConfig(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	c := defaultAppConfig()
	c.App.AllowedPeers = []string{"9a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", "0000000000000000000000000000000000000001"}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if err := writeAppConfig(home, c); err != nil {
		t.Fatal(err)
	}
	if got, err := loadAppConfig(home); err != nil || !reflect.DeepEqual(got.App.AllowedPeers, c.App.AllowedPeers) {
		t.Fatalf("allowed_peers after a round trip: %v, %v", got.App.AllowedPeers, err)
	}
	for _, bad := range [][]string{{"zz"}, {"9a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"}, {"9a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d@127.0.0.1:26656"}} {
		c.App.AllowedPeers = bad
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "app.allowed_peers") {
			t.Errorf("allowed_peers %q: %v, want refused", bad, err)
		}
	}
}

// TestInitRefusesWhatStartRefuses: a moniker or a --p2p.persistent_peers
// entry start would refuse (or config.toml cannot hold) is refused by init,
// with an error naming the flag and what is wanted, and the home is left as
// it was: empty for a new home, untouched by --force for a node's home. A
// good value passes, and start accepts the home init wrote. start refuses a
// moniker of the same kinds found in config.toml.
func TestInitRefusesWhatStartRefuses(t *testing.T) {
	const peerID = "9a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
	for _, tc := range []struct {
		name, flag, value, want string
	}{
		{"moniker with a quote", "--moniker", `st "mary"`, "no double quote"},
		{"moniker with a backslash", "--moniker", `node\0`, "no double quote or backslash"},
		{"moniker with a newline", "--moniker", "node\n0", "printable ASCII"},
		{"moniker with a tab", "--moniker", "node\t0", "printable ASCII"},
		{"moniker not ASCII", "--moniker", "hôpital", "printable ASCII"},
		{"moniker of spaces", "--moniker", "   ", "not only spaces"},
		{"moniker too long", "--moniker", strings.Repeat("n", maxMonikerLen+1), "1 to 1024"},
		{"peer without id", "--p2p.persistent_peers", "127.0.0.1:26656", "want ID@host:port"},
		{"peer with a short id", "--p2p.persistent_peers", "abc@127.0.0.1:26656", "40 hex"},
		{"peer with a non-hex id", "--p2p.persistent_peers", strings.Repeat("z", 40) + "@127.0.0.1:26656", "40 hex"},
		{"peer without port", "--p2p.persistent_peers", peerID + "@127.0.0.1", "want ID@host:port"},
		{"peer with a bad port", "--p2p.persistent_peers", peerID + "@127.0.0.1:65536", "want ID@host:port"},
		// A host that does not resolve passes, as in CometBFT, but its port
		// is still read (CometBFT looks the host up first).
		{"unresolved peer with a bad port", "--p2p.persistent_peers", peerID + "@no-such-host.invalid:65536", "port a number up to 65535"},
		{"second peer bad", "--p2p.persistent_peers", peerID + "@127.0.0.1:26656,127.0.0.2:26656", `"127.0.0.2:26656"`},
		{"peer with a quote", "--p2p.persistent_peers", peerID + `@no"host:26656`, "no double quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			_, err := run(t, "init", "--home", home, "--chain-id", "emr-bad", tc.flag, tc.value)
			if err == nil || !strings.Contains(err.Error(), tc.flag) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("init %s %.60q: %.300v; want an error naming %s and %q", tc.flag, tc.value, err, tc.flag, tc.want)
			}
			if entries, _ := os.ReadDir(home); len(entries) != 0 {
				t.Fatalf("a refused init wrote %d entries into the home", len(entries))
			}

			// --force over a node: refused before anything is deleted.
			if out, err := run(t, "init", "--home", home, "--chain-id", "emr-old"); err != nil {
				t.Fatalf("init: %v\n%s", err, out)
			}
			before := readTree(t, home)
			if _, err := run(t, "init", "--home", home, "--chain-id", "emr-bad", "--force", tc.flag, tc.value); err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("init --force %s %.60q: %.300v; want refused", tc.flag, tc.value, err)
			}
			if after := readTree(t, home); !reflect.DeepEqual(after, before) {
				t.Fatalf("a refused init --force changed the home")
			}
		})
	}

	// Good values pass, and start takes the home as init wrote it.
	home := t.TempDir()
	moniker := "St Mary's (ward 3) node-0"
	peers := peerID + "@127.0.0.1:26656, tcp://" + strings.ToUpper(peerID[:38]) + "0f@127.0.0.2:26656"
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-good", "--moniker", moniker, "--p2p.persistent_peers", peers); err != nil {
		t.Fatalf("init with a good moniker and peers: %v\n%s", err, out)
	}
	s, err := startSettings(t, home)
	if err != nil {
		t.Fatalf("start on the home init wrote: %v", err)
	}
	if s.config.Moniker != moniker || s.config.P2P.PersistentPeers != peers || len(s.peers) != 2 {
		t.Fatalf("start read moniker %q, peers %q (%v); init was given %q, %q", s.config.Moniker, s.config.P2P.PersistentPeers, s.peers, moniker, peers)
	}
	// start applies the same moniker check to config.toml.
	for _, bad := range []string{"hôpital", strings.Repeat("n", maxMonikerLen+1)} {
		conf, err := loadCometConfig(home)
		if err != nil {
			t.Fatal(err)
		}
		conf.Moniker = bad
		cmtcfg.WriteConfigFile(filepath.Join(home, "config", "config.toml"), conf)
		if _, err := startSettings(t, home); err == nil || !strings.Contains(err.Error(), "moniker") || !strings.Contains(err.Error(), "printable ASCII") {
			t.Errorf("start with moniker %.20q: %v; want refused as init refuses it", bad, err)
		}
	}
}

// readTree returns every file under dir by its path, with its content.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
