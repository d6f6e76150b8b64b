package main

import (
	"fmt"
	"strings"

	cmtcfg "github.com/cometbft/cometbft/config"

	"github.com/emrchain/emrchain/abci"
)

// acceptedPeers returns the node ids start lets connect over P2P (the ABCI
// peer filter, abci.Options.AllowedPeers), lowercase, each once, in the
// order found:
//
//   - app.allowed_peers (app.toml);
//   - the ids of config.toml's p2p.persistent_peers: the nodes the operator
//     tells this node to dial. CometBFT runs the peer filter on the peers it
//     dials too, so a dialed node left out could never be connected;
//   - config.toml's p2p.unconditional_peer_ids: the nodes CometBFT must let
//     in even past its connection limits. Refusing them would contradict
//     that setting (a sentry lists its validator there).
//
// p2p.private_peer_ids are not added: that setting only keeps those nodes'
// addresses out of peer exchange; it makes the node neither dial nor accept
// them (a sentry's validator is in its persistent or unconditional peers
// anyway). Seeds are not added either: a seed only hands out addresses of
// other nodes, which would still have to be allowed.
//
// The result is empty when all three are: then the node accepts no peer,
// which a single validator does not need.
func acceptedPeers(p2p *cmtcfg.P2PConfig, allowed []string) ([]string, error) {
	var ids []string
	seen := make(map[string]bool)
	add := func(id string) {
		id = strings.ToLower(id)
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, id := range allowed {
		if !abci.IsNodeID(id) {
			return nil, fmt.Errorf("app.allowed_peers: %q is not a node id (40 hex characters)", id)
		}
		add(id)
	}
	for _, peer := range splitPeerList(p2p.PersistentPeers) {
		// As CometBFT reads it: [protocol://]ID@host:port.
		addr := peer
		if i := strings.Index(addr, "://"); i >= 0 {
			addr = addr[i+len("://"):]
		}
		id, _, ok := strings.Cut(addr, "@")
		if !ok || !abci.IsNodeID(id) {
			return nil, fmt.Errorf("p2p.persistent_peers: %q: want ID@host:port with a node id of 40 hex characters", peer)
		}
		add(id)
	}
	for _, id := range splitPeerList(p2p.UnconditionalPeerIDs) {
		if !abci.IsNodeID(id) {
			return nil, fmt.Errorf("p2p.unconditional_peer_ids: %q is not a node id (40 hex characters)", id)
		}
		add(id)
	}
	return ids, nil
}

// splitPeerList splits a comma-separated list of config.toml as CometBFT
// does: items trimmed of spaces, empty ones dropped.
func splitPeerList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.Trim(item, " "); item != "" {
			out = append(out, item)
		}
	}
	return out
}
