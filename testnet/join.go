package testnet

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/p2p"

	"github.com/emrchain/emrchain/client/clienttest"
)

// configureValidator writes o's AllowPeers and snapshot settings into a
// validator's configuration.
func configureValidator(home string, o Options) error {
	if len(o.AllowPeers) > 0 {
		err := clienttest.SetConfig(filepath.Join(home, "config", "config.toml"), "p2p", map[string]string{
			"unconditional_peer_ids": strconv.Quote(strings.Join(o.AllowPeers, ",")),
		})
		if err != nil {
			return err
		}
	}
	keys := map[string]string{}
	if o.SnapshotInterval > 0 {
		keys["snapshot_interval"] = strconv.Itoa(o.SnapshotInterval)
	}
	if o.SnapshotKeepRecent > 0 {
		keys["snapshot_keep_recent"] = strconv.Itoa(o.SnapshotKeepRecent)
	}
	if len(keys) == 0 {
		return nil
	}
	return clienttest.SetConfig(filepath.Join(home, "config", "app.toml"), "store", keys)
}

// InitHomeWith writes a new node home for chain chainID with the
// harness's `emrchaind init`, its five listeners on a block of free ports
// from base (p2p, RPC, gRPC, REST, sidecar), and returns its node id and
// base. Its genesis is init's own: copy the testnet's over it
// (CopyGenesis) before starting it.
func InitHomeWith(t testing.TB, home, chainID string) (id string, base int, err error) {
	if base, err = FreePorts(); err != nil {
		return "", 0, err
	}
	port := func(off int) string { return fmt.Sprintf("127.0.0.1:%d", base+off) }
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, Binary(t), "init", "--home", home, "--chain-id", chainID,
		"--p2p.laddr", "tcp://"+port(0), "--rpc.laddr", "tcp://"+port(1), "--grpc.address", port(2),
		"--api.address", port(3), "--sidecar.listen", port(4)).CombinedOutput()
	if err != nil {
		return "", 0, fmt.Errorf("emrchaind init: %v\n%s", err, out)
	}
	key, err := p2p.LoadNodeKey(filepath.Join(home, "config", "node_key.json"))
	if err != nil {
		return "", 0, err
	}
	return string(key.ID()), base, nil
}

// CopyGenesis copies the genesis of home from to home to.
func CopyGenesis(from, to string) error {
	gen, err := os.ReadFile(filepath.Join(from, "config", "genesis.json"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(to, "config", "genesis.json"), gen, 0o644)
}

// ShowPossession is the proof of possession of home's consensus key for
// the chain of its genesis at change count changes (0 for a key never a
// validator), as its operator gets it: `emrchaind show validator
// --possession --changes N`. A proposal adding the node as a validator
// carries it (SetValidatorPower.possession).
func ShowPossession(t testing.TB, home string, changes uint64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), "show", "validator", "--possession", "--changes", strconv.FormatUint(changes, 10), "--home", home)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("emrchaind show validator --possession: %w\n%s", err, stderr.String())
	}
	possession, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(out)))
	if err != nil {
		return nil, fmt.Errorf("emrchaind show validator --possession printed %q: %w", out, err)
	}
	return possession, nil
}

// SetStateSync turns state sync on in home's config.toml: the light
// client asks rpcServers and trusts the header of trustHeight with hash
// trustHash.
func SetStateSync(home string, rpcServers []string, trustHeight int64, trustHash []byte) error {
	return clienttest.SetConfig(filepath.Join(home, "config", "config.toml"), "statesync", map[string]string{
		"enable":         "true",
		"rpc_servers":    strconv.Quote(strings.Join(rpcServers, ",")),
		"trust_height":   strconv.FormatInt(trustHeight, 10),
		"trust_hash":     strconv.Quote(fmt.Sprintf("%X", trustHash)),
		"trust_period":   strconv.Quote((7 * 24 * time.Hour).String()),
		"discovery_time": strconv.Quote((5 * time.Second).String()),
	})
}

// AddNode adds the node of home, written by InitHomeWith with ports from
// base, to the net without starting it, with the validators as its
// persistent peers: Start, WaitHeight, Query and Cleanup then take it as
// node Len()-1. It is not a validator, and has only the blocks it synced.
func (n *Net) AddNode(name, home string, base int) int {
	n.t.Helper()
	var peers []string
	for _, d := range n.Desc.Nodes {
		peers = append(peers, d.NodeID+"@"+strings.TrimPrefix(d.P2P, "tcp://"))
	}
	err := clienttest.SetConfig(filepath.Join(home, "config", "config.toml"), "p2p", map[string]string{
		"persistent_peers": strconv.Quote(strings.Join(peers, ",")),
	})
	if err != nil {
		n.t.Fatal(err)
	}
	nd, err := newNode(name, home, fmt.Sprintf("http://127.0.0.1:%d", base+1), fmt.Sprintf("http://127.0.0.1:%d", base+4), base)
	if err != nil {
		n.t.Fatal(err)
	}
	n.nodes = append(n.nodes, nd)
	return len(n.nodes) - 1
}

// FreePorts returns a block of portStride free ports for a node added
// with AddNode.
func FreePorts() (int, error) { return freeBasePort(1) }
