package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/privval"

	emrchainv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/testnet/manifest"
)

func readTestnet(t *testing.T, dir string) *manifest.Testnet {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, manifest.File))
	if err != nil {
		t.Fatal(err)
	}
	var net manifest.Testnet
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&net); err != nil {
		t.Fatalf("testnet.json: %v", err)
	}
	return &net
}

func TestTestnetDefault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	out, err := run(t, "testnet", "--output", dir, "--chain-id", "emr-tn", "--base-port", "30000")
	if err != nil {
		t.Fatalf("testnet: %v\n%s", err, out)
	}
	net := readTestnet(t, dir)
	if net.ChainID != "emr-tn" || len(net.Nodes) != 4 || net.Blob.Kind != "fs" {
		t.Fatalf("testnet.json: chain %q, %d nodes, blob %q", net.ChainID, len(net.Nodes), net.Blob.Kind)
	}

	// Every address on loopback, no port used twice, the documented layout.
	seen := map[string]string{}
	for i, n := range net.Nodes {
		for what, addr := range map[string]string{"rpc": n.RPC, "p2p": n.P2P, "grpc": n.GRPC, "api": n.API, "sidecar": n.Sidecar} {
			hostPort := addr
			if _, rest, ok := strings.Cut(addr, "://"); ok {
				hostPort = rest
			}
			if !strings.HasPrefix(hostPort, "127.0.0.1:") {
				t.Errorf("%s %s = %s: not on loopback", n.Name, what, addr)
			}
			if other, dup := seen[hostPort]; dup {
				t.Errorf("%s %s and %s share %s", n.Name, what, other, hostPort)
			}
			seen[hostPort] = n.Name + " " + what
		}
		if want := "tcp://127.0.0.1:" + strconv.Itoa(30000+10*i+1); n.RPC != want {
			t.Errorf("%s rpc = %s, want %s", n.Name, n.RPC, want)
		}
		if n.Home != filepath.Join(dir, n.Name) {
			t.Errorf("%s home = %s", n.Name, n.Home)
		}
	}

	// One genesis with all four validators; each node's config has its own
	// addresses and the three others as peers.
	var genesis []byte
	for i, n := range net.Nodes {
		g, err := os.ReadFile(filepath.Join(n.Home, "config", "genesis.json"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			genesis = g
		} else if string(g) != string(genesis) {
			t.Fatalf("%s has another genesis than node0", n.Name)
		}
		conf, err := loadCometConfig(n.Home)
		if err != nil {
			t.Fatal(err)
		}
		if conf.RPC.ListenAddress != n.RPC || conf.P2P.ListenAddress != n.P2P || conf.P2P.PersistentPeers != n.PersistentPeers {
			t.Errorf("%s config: rpc %s p2p %s peers %s; testnet.json says %s %s %s", n.Name,
				conf.RPC.ListenAddress, conf.P2P.ListenAddress, conf.P2P.PersistentPeers, n.RPC, n.P2P, n.PersistentPeers)
		}
		peers := strings.Split(n.PersistentPeers, ",")
		if len(peers) != 3 || slices.ContainsFunc(peers, func(p string) bool { return strings.HasPrefix(p, n.NodeID+"@") }) {
			t.Errorf("%s peers = %v", n.Name, peers)
		}
		ac, err := loadAppConfig(n.Home)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := loadSidecarConfig(n.Home)
		if err != nil {
			t.Fatal(err)
		}
		if ac.GRPC.Address != n.GRPC || "http://"+ac.API.Address != n.API || "http://"+sc.Listen != n.Sidecar || sc.Backend != "fs" || !sc.Enable {
			t.Errorf("%s app.toml: grpc %s api %s sidecar %s (%s); testnet.json says %s %s %s", n.Name,
				ac.GRPC.Address, ac.API.Address, sc.Listen, sc.Backend, n.GRPC, n.API, n.Sidecar)
		}
		pv := privval.LoadFilePV(conf.PrivValidatorKeyFile(), conf.PrivValidatorStateFile())
		if pv.Key.Address.String() != n.ValidatorAddress {
			t.Errorf("%s validator address %s, testnet.json says %s", n.Name, pv.Key.Address, n.ValidatorAddress)
		}
	}
	doc, gs := readGenesis(t, net.Nodes[0].Home)
	if len(doc.Validators) != 4 || doc.ChainID != "emr-tn" {
		t.Fatalf("genesis: %d validators, chain %q", len(doc.Validators), doc.ChainID)
	}
	for i, v := range doc.Validators {
		if v.Address.String() != net.Nodes[i].ValidatorAddress || v.Power != 10 {
			t.Errorf("genesis validator %d = %s power %d", i, v.Address, v.Power)
		}
	}

	// Three organizations, a registrar each, keys under DIR/keys.
	var orgs []string
	for _, o := range gs.Organizations {
		orgs = append(orgs, o.Id+":"+o.Kind.String())
	}
	if want := []string{"hospital-a:ORGANIZATION_KIND_HOSPITAL", "hospital-b:ORGANIZATION_KIND_HOSPITAL", "research-institute:ORGANIZATION_KIND_RESEARCH"}; !slices.Equal(orgs, want) {
		t.Fatalf("organizations = %v, want %v", orgs, want)
	}
	if len(net.Keys) != 3 || len(gs.Members) != 3+4 {
		t.Fatalf("%d keys, %d genesis members; want 3 registrars and 4 storage services", len(net.Keys), len(gs.Members))
	}
	// The hospitals keep copies of every blob; each node's sidecar signs as
	// a storage service of its own, of the hospitals in turn, whose key is
	// in its home's test keyring.
	if want := []string{"hospital-a", "hospital-b"}; !slices.Equal(gs.Params.StorageOrganizations, want) {
		t.Fatalf("params.storage_organizations = %v, want %v", gs.Params.StorageOrganizations, want)
	}
	for i, n := range net.Nodes {
		m := gs.Members[3+i]
		c, err := loadAppConfig(n.Home)
		if err != nil {
			t.Fatal(err)
		}
		sc := c.Sidecar
		if err := sc.resolve(n.Home); err != nil {
			t.Fatal(err)
		}
		if err := sc.loadServiceKeys(log.NewNopLogger()); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if m.Role != emrchainv1.Role_ROLE_STORAGE_SERVICE || m.OrganizationId != gs.Organizations[i%2].Id ||
			sc.storage == nil || string(sc.storage.PubKey()) != string(m.SignPubKey) || len(sc.Peers) != 3 {
			t.Errorf("%s: genesis member %+v, sidecar settings %+v", n.Name, m, sc)
		}
	}
	for i, k := range net.Keys {
		dk := readDevKey(t, k.File)
		if k.File != filepath.Join(dir, "keys", "registrar-"+gs.Organizations[i].Id+".json") || dk.Role != "registrar" ||
			dk.OrganizationID != gs.Organizations[i].Id || dk.Address != k.Address {
			t.Errorf("key %d: %+v / file %+v", i, k, dk)
		}
		m := gs.Members[i]
		if string(m.SignPubKey) != string(dk.SignPubKey) || m.Role != emrchainv1.Role_ROLE_REGISTRAR || m.OrganizationId != dk.OrganizationID {
			t.Errorf("genesis member %d does not match key %s", i, k.Name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".app_state.json")); !os.IsNotExist(err) {
		t.Errorf("the temporary app_state file was left behind: %v", err)
	}
}

// TestTestnetOfOne: a one-validator testnet, whose sidecar has no peer
// to copy from, seats no storage service, and its sidecar settings load
// (with one, they were refused: a storage key without peers).
func TestTestnetOfOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	if out, err := run(t, "testnet", "--output", dir, "--validators", "1", "--base-port", "30200"); err != nil {
		t.Fatalf("testnet: %v\n%s", err, out)
	}
	net := readTestnet(t, dir)
	_, gs := readGenesis(t, net.Nodes[0].Home)
	if len(gs.Params.StorageOrganizations) != 0 || len(gs.Members) != 3 {
		t.Fatalf("storage organizations %v, %d genesis members; want none and the 3 registrars", gs.Params.StorageOrganizations, len(gs.Members))
	}
	c, err := loadAppConfig(net.Nodes[0].Home)
	if err != nil {
		t.Fatal(err)
	}
	sc := c.Sidecar
	if err := sc.resolve(net.Nodes[0].Home); err != nil {
		t.Fatalf("the node's sidecar settings: %v", err)
	}
}

func TestTestnetOverwriteAndFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	if out, err := run(t, "testnet", "--output", dir, "--validators", "2"); err != nil {
		t.Fatalf("testnet: %v\n%s", err, out)
	}
	first := readTestnet(t, dir)
	if _, err := run(t, "testnet", "--output", dir, "--validators", "2"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second testnet into the same dir: %v; want a refusal naming --force", err)
	}
	out, err := run(t, "testnet", "--output", dir, "--validators", "3", "--force", "--blob", "minio",
		"--org", "st-mary:St Mary's:hospital", "--org", "lab-1:Lab One:lab", "--registrar", "st-mary:alice")
	if err != nil {
		t.Fatalf("testnet --force: %v\n%s", err, out)
	}
	net := readTestnet(t, dir)
	if len(net.Nodes) != 3 || net.Nodes[0].NodeID == first.Nodes[0].NodeID {
		t.Fatalf("--force did not write a new 3-node testnet: %+v", net.Nodes)
	}
	if net.Blob.Kind != "minio" || net.Blob.MinioAddr == "" {
		t.Errorf("blob = %+v", net.Blob)
	}
	for _, n := range net.Nodes {
		sc, err := loadSidecarConfig(n.Home)
		if err != nil {
			t.Fatal(err)
		}
		if sc.Backend != "minio" || sc.MinIOEndpoint != net.Blob.MinioAddr || sc.MinIOBucket != net.Blob.MinioBucket ||
			sc.MinIOPrefix != "" || sc.MinIOSecretKey != "" {
			t.Errorf("%s [sidecar] = %+v", n.Name, sc)
		}
	}
	if len(net.Orgs) != 2 || net.Orgs[1].Kind != "lab" || len(net.Keys) != 1 || net.Keys[0].Name != "alice" {
		t.Errorf("orgs %+v keys %+v", net.Orgs, net.Keys)
	}

	// --force never deletes a directory that is not a testnet.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "precious.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "testnet", "--output", other, "--force"); err == nil || !strings.Contains(err.Error(), "not a testnet") {
		t.Fatalf("--force on a foreign dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "precious.txt")); err != nil {
		t.Fatalf("--force deleted a foreign file: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--validators", "0"}, "--validators"},
		{[]string{"--base-port", "65530"}, "--base-port"},
		{[]string{"--blob", "s3"}, "--blob"},
		{[]string{"--org", "x:X:castle"}, "unknown organization kind"},
		{[]string{"--registrar", "nowhere:bob"}, "no organization"},
		{[]string{"--backend", "sqlite"}, "unknown backend"},
	} {
		empty := filepath.Join(t.TempDir(), "n")
		_, err := run(t, append([]string{"testnet", "--output", empty}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("testnet %v: %v; want an error about %s", tc.args, err, tc.want)
		}
		if _, serr := os.Stat(empty); !os.IsNotExist(serr) {
			t.Errorf("testnet %v failed but created %s", tc.args, empty)
		}
	}
}

// TestTestnetForceChecksInputFirst: testnet --force with a bad input is
// refused with an error naming it, and the testnet already in DIR is left
// as it was: every input is checked before DIR is deleted (a chain id, a
// duration or an organization the state machine refuses were checked only
// after, so a typo cost the operator the old net).
func TestTestnetForceChecksInputFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	if out, err := run(t, "testnet", "--output", dir, "--validators", "2", "--base-port", "30100"); err != nil {
		t.Fatalf("testnet: %v\n%s", err, out)
	}
	kept := []string{
		filepath.Join(dir, manifest.File),
		filepath.Join(dir, "node0", "config", "config.toml"),
		filepath.Join(dir, "node1", "config", "priv_validator_key.json"),
		filepath.Join(dir, "keys", "registrar-hospital-a.json"),
	}
	before := map[string]string{}
	for _, p := range kept {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		before[p] = string(b)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--chain-id", "emr test"}, "--chain-id"},
		{[]string{"--chain-id", strings.Repeat("x", 51)}, "--chain-id"},
		{[]string{"--timeout-commit", "-1s"}, "--timeout-commit"},
		{[]string{"--empty-blocks-interval", "-1s"}, "--empty-blocks-interval"},
		{[]string{"--org", "just-an-id"}, "id:name:kind"},
		{[]string{"--org", "a:A:castle"}, "unknown organization kind"},
		{[]string{"--org", "Bad Id:A:lab", "--org", "lab-1:B:lab", "--registrar", "lab-1:lee"}, "genesis rejected"},
		{[]string{"--registrar", "nowhere:bob"}, "no organization"},
		{[]string{"--validators", "65"}, "--validators"},
		{[]string{"--base-port", "80"}, "--base-port"},
		{[]string{"--blob", "s3"}, "--blob"},
		{[]string{"--blob", "minio", "--minio-addr", "http://127.0.0.1:9000/emrchain"}, "--minio-addr"},
		{[]string{"--blob", "minio", "--minio-addr", "127.0.0.1:90000"}, "--minio-addr"},
		{[]string{"--backend", "sqlite"}, "unknown backend"},
	} {
		args := append([]string{"testnet", "--output", dir, "--validators", "2", "--base-port", "30100", "--force"}, tc.args...)
		_, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("testnet --force %v: %v; want an error about %s", tc.args, err, tc.want)
		}
		for _, p := range kept {
			if b, rerr := os.ReadFile(p); rerr != nil || string(b) != before[p] {
				t.Fatalf("testnet --force %v failed (%v) and did not leave %s as it was: %v", tc.args, err, p, rerr)
			}
		}
	}
}
