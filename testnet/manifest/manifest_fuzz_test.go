package manifest

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// written is DIR/testnet.json as `emrchaind testnet` writes it: indented
// JSON and a newline.
func written(t testing.TB, net *Testnet) []byte {
	desc, err := json.MarshalIndent(net, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(desc, '\n')
}

// sampleNets are testnets of the shapes `emrchaind testnet` writes: fs
// blobs (no minio fields) and minio.
func sampleNets() []*Testnet {
	node := func(i int, peers string) Node {
		return Node{
			Name: "node" + string(rune('0'+i)), Home: "/tmp/net/node" + string(rune('0'+i)),
			NodeID: strings.Repeat(string(rune('a'+i)), 40), ValidatorAddress: strings.Repeat(string(rune('A'+i)), 40),
			RPC: "tcp://127.0.0.1:2665" + string(rune('7'+i)), P2P: "tcp://127.0.0.1:2765" + string(rune('6'+i)),
			GRPC: "127.0.0.1:909" + string(rune('0'+i)), API: "http://127.0.0.1:131" + string(rune('7'+i)),
			Sidecar: "http://127.0.0.1:707" + string(rune('0'+i)), PersistentPeers: peers,
		}
	}
	orgs := []Org{{ID: "h1", Name: "Hospital One", Kind: "hospital"}, {ID: "lab", Name: "Lab", Kind: "laboratory"}}
	keys := []Key{
		{Name: "registrar-h1", Role: "registrar", OrganizationID: "h1", Address: strings.Repeat("3F", 20), File: "/tmp/net/keys/registrar-h1.json"},
		{Name: "registrar-lab", Role: "registrar", OrganizationID: "lab", Address: strings.Repeat("0A", 20), File: "keys/registrar-lab.json"},
	}
	return []*Testnet{
		{ChainID: "emr-testnet", Blob: Blob{Kind: "fs"}, Orgs: orgs, Keys: keys,
			Nodes: []Node{node(0, strings.Repeat("b", 40)+"@127.0.0.1:27657"), node(1, strings.Repeat("a", 40)+"@127.0.0.1:27656")}},
		{ChainID: "emr-minio", Blob: Blob{Kind: "minio", MinioAddr: "127.0.0.1:9000", MinioBucket: "emrchain-testnet"},
			Nodes: []Node{node(0, "")}, Orgs: orgs[:1], Keys: keys[:1]},
	}
}

// FuzzRead: testnet.json is refused with no testnet and an error naming
// the file (ErrInvalid for JSON that names no chain, no node or a node
// without a tcp://host:port RPC address), or it is one JSON value read as
// json.Unmarshal reads it, with a chain id and nodes that each have one;
// written again as `emrchaind testnet` writes it, it reads back equal,
// and that file is a fixed point. What that writer writes reads back as
// the very testnet it wrote.
func FuzzRead(f *testing.F) {
	samples := sampleNets()
	for _, net := range samples {
		f.Add(written(f, net))
	}
	for _, seed := range []string{
		`{"chain_id":"c","nodes":[{"name":"n","rpc":"tcp://127.0.0.1:1"}]}`,
		`{"chain_id":"c","nodes":[{"rpc":"tcp://[::1]:26657"},{"rpc":"http://127.0.0.1:1"}]}`,
		`{"chain_id":"c","nodes":[{"rpc":"tcp://127.0.0.1"}]}`,
		`{"chain_id":"c","nodes":[{"rpc":"tcp://:1"}]}`,
		`{"chain_id":"c","nodes":[]}`,
		`{"chain_id":"","nodes":[{"rpc":"tcp://127.0.0.1:1"}]}`,
		`{}`,
		`{"chain_id":"c","CHAIN_ID":"d","Nodes":null,"unknown":1}`,
		`{"chain_id":"c"} {"chain_id":"d"}`,
		`{"chain_id":"c"}` + "\n\t ",
		`{"chain_id":"\xff\u00e9\ud800"}`,
		`{"chain_id":1}`,
		`{"nodes":{}}`,
		`[]`,
		`null`,
		`{`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, File)
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		net, err := Read(dir)
		var want Testnet
		werr := json.Unmarshal(body, &want)
		if err != nil {
			if net != nil || !strings.HasPrefix(err.Error(), File+": ") || (werr == nil) != errors.Is(err, ErrInvalid) {
				t.Fatalf("Read(%q) = %+v, %v (json.Unmarshal: %v)", body, net, err, werr)
			}
			for _, s := range samples {
				if string(body) == string(written(t, s)) {
					t.Fatalf("the writer's %+v is refused: %v", s, err)
				}
			}
			return
		}
		if werr != nil || net == nil || !json.Valid(body) || !reflect.DeepEqual(*net, want) || !reachable(net) {
			t.Fatalf("Read(%q) = %+v; json.Unmarshal: %+v, %v", body, net, want, werr)
		}
		for _, s := range samples {
			if string(body) == string(written(t, s)) && !reflect.DeepEqual(net, s) {
				t.Fatalf("the writer's %+v reads back as %+v", s, net)
			}
		}
		again := written(t, net)
		if err := os.WriteFile(path, again, 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := Read(dir)
		if err != nil || !reflect.DeepEqual(back, net) {
			t.Fatalf("%+v written as %q reads back as %+v, %v", net, again, back, err)
		}
		if twice := written(t, back); string(twice) != string(again) {
			t.Fatalf("%q reads back and writes as %q", again, twice)
		}
	})
}

// reachable: net names a chain and at least one node, each with an RPC
// address tcp://host:port that readers can use: the http:// URL they make
// of it has that host and port and nothing else.
func reachable(net *Testnet) bool {
	if net.ChainID == "" || len(net.Nodes) == 0 {
		return false
	}
	for _, n := range net.Nodes {
		hostPort, ok := strings.CutPrefix(n.RPC, "tcp://")
		if !ok {
			return false
		}
		u, err := url.Parse(strings.Replace(n.RPC, "tcp://", "http://", 1))
		if err != nil || u.Host != hostPort || u.Hostname() == "" {
			return false
		}
		if port, err := strconv.Atoi(u.Port()); err != nil || port < 1 || port > 65535 {
			return false
		}
	}
	return true
}
