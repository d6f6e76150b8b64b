// Package manifest is DIR/testnet.json, the description of a testnet that
// `emrchaind testnet` writes and the harness (package testnet), the load
// generator and scripts read: everything needed to reach the nodes of a
// testnet and act as its registrars.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// File is the name of the description in a testnet's directory.
const File = "testnet.json"

// Testnet is DIR/testnet.json.
type Testnet struct {
	ChainID string `json:"chain_id"`
	Blob    Blob   `json:"blob"`
	Nodes   []Node `json:"nodes"`
	Orgs    []Org  `json:"organizations"`
	Keys    []Key  `json:"keys"`
}

// Node is one validator of a testnet.
type Node struct {
	Name             string `json:"name"`
	Home             string `json:"home"`
	NodeID           string `json:"node_id"`
	ValidatorAddress string `json:"validator_address"`
	// RPC and P2P are CometBFT listen addresses (tcp://host:port).
	RPC string `json:"rpc"`
	P2P string `json:"p2p"`
	// GRPC is host:port; API and Sidecar are http:// URLs.
	GRPC    string `json:"grpc"`
	API     string `json:"api"`
	Sidecar string `json:"sidecar"`
	// PersistentPeers is the node's p2p.persistent_peers.
	PersistentPeers string `json:"persistent_peers"`
}

// Blob is where the sidecars keep ciphertext.
type Blob struct {
	// Kind is "fs" (each sidecar's embedded store under HOME/data/blobs: a
	// blob is served only by the sidecar it was uploaded to) or "minio" (one
	// MinIO server and bucket shared by all sidecars).
	Kind        string `json:"kind"`
	MinioAddr   string `json:"minio_addr,omitempty"`
	MinioBucket string `json:"minio_bucket,omitempty"`
}

// Org is one organization of the genesis.
type Org struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// Key is one development key written under DIR/keys.
type Key struct {
	Name           string `json:"name"`
	Role           string `json:"role"`
	OrganizationID string `json:"organization_id"`
	Address        string `json:"address"`
	File           string `json:"file"`
}

// ErrInvalid: testnet.json is JSON but describes no testnet a reader can
// reach (Testnet.Validate).
var ErrInvalid = errors.New("not a testnet")

// Read reads DIR/testnet.json and validates it.
func Read(dir string) (*Testnet, error) {
	raw, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return nil, err
	}
	var t Testnet
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", File, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", File, err)
	}
	return &t, nil
}

// Validate checks what every reader relies on: a chain id, at least one
// node, and every node's RPC address, tcp://host:port (what `emrchaind
// testnet` writes; readers turn it into http://).
func (t *Testnet) Validate() error {
	if t.ChainID == "" {
		return fmt.Errorf("%w: no chain_id", ErrInvalid)
	}
	if len(t.Nodes) == 0 {
		return fmt.Errorf("%w: no nodes", ErrInvalid)
	}
	for i, n := range t.Nodes {
		if !isTCPAddress(n.RPC) {
			return fmt.Errorf("%w: node %d: rpc %q is not tcp://host:port", ErrInvalid, i, n.RPC)
		}
	}
	return nil
}

// isTCPAddress: s is tcp://host:port and nothing more, with a port
// from 1 to 65535, and "tcp://" in lower case (readers replace it).
func isTCPAddress(s string) bool {
	u, err := url.Parse(s)
	if err != nil || !strings.HasPrefix(s, "tcp://") || u.User != nil || u.Path != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return false
	}
	port, err := strconv.ParseUint(u.Port(), 10, 16)
	return u.Hostname() != "" && err == nil && port > 0
}
