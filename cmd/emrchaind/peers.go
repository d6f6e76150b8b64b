package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/p2p"

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
func acceptedPeers(p2pConf *cmtcfg.P2PConfig, allowed []string) ([]string, error) {
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
	persistent, err := persistentPeerIDs(p2pConf.PersistentPeers)
	if err != nil {
		return nil, fmt.Errorf("p2p.persistent_peers: %w", err)
	}
	for _, id := range persistent {
		add(id)
	}
	for _, id := range splitPeerList(p2pConf.UnconditionalPeerIDs) {
		if !abci.IsNodeID(id) {
			return nil, fmt.Errorf("p2p.unconditional_peer_ids: %q is not a node id (40 hex characters)", id)
		}
		add(id)
	}
	return ids, nil
}

// persistentPeerIDs reads a p2p.persistent_peers list as CometBFT does when
// the node starts (p2p.Switch.AddPersistentPeers: p2p.NewNetAddressString
// on every item, [protocol://]ID@host:port) and returns the peers' node
// ids. start and init both check the list with it, so init refuses what
// start would. Like CometBFT it lets a host name that does not resolve
// pass (the node keeps dialing it); its node id was checked before the
// look-up.
func persistentPeerIDs(list string) ([]string, error) {
	var ids []string
	for _, peer := range splitPeerList(list) {
		addr, err := p2p.NewNetAddressString(peer)
		var lookup p2p.ErrNetAddressLookup
		switch {
		case err == nil:
			ids = append(ids, string(addr.ID))
		case errors.As(err, &lookup):
			// CometBFT looks the host up before it reads the port.
			rest := peer
			if i := strings.Index(rest, "://"); i >= 0 {
				rest = rest[i+len("://"):]
			}
			id, hostPort, _ := strings.Cut(rest, "@")
			_, port, _ := net.SplitHostPort(hostPort)
			if _, perr := strconv.ParseUint(port, 10, 16); perr != nil {
				return nil, fmt.Errorf("%q: want ID@host:port, port a number up to 65535", peer)
			}
			ids = append(ids, id)
		default:
			return nil, fmt.Errorf("%q: want ID@host:port, ID the peer's node id (40 hex characters), host an IP address or name: %w", peer, err)
		}
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
