package main

import (
	"reflect"
	"strings"
	"testing"

	cmtcfg "github.com/cometbft/cometbft/config"
)

const (
	peerA = "9a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
	peerB = "0000000000000000000000000000000000000001"
	peerC = "00000000000000000000000000000000000000c2"
	peerD = "00000000000000000000000000000000000000d3"
)

// TestAcceptedPeers: the node ids start lets in are app.allowed_peers, the
// ids of p2p.persistent_peers (as CometBFT reads the list: spaces, empty
// items and a protocol prefix allowed) and p2p.unconditional_peer_ids,
// lowercase and each once; not private_peer_ids nor seeds. Nothing listed:
// nothing accepted. A malformed entry is an error naming its key.
func TestAcceptedPeers(t *testing.T) {
	p2p := cmtcfg.DefaultP2PConfig()
	if got, err := acceptedPeers(p2p, nil); err != nil || len(got) != 0 {
		t.Fatalf("CometBFT's defaults and no allowed_peers: %v, %v; want none", got, err)
	}

	p2p.PersistentPeers = " " + strings.ToUpper(peerB) + "@127.0.0.1:26656, ,tcp://" + peerC + "@node-c.example:26656," + peerA + "@10.0.0.1:1"
	p2p.UnconditionalPeerIDs = peerD + "," + peerB
	p2p.PrivatePeerIDs = "00000000000000000000000000000000000000e4"
	p2p.Seeds = "00000000000000000000000000000000000000f5@127.0.0.1:26656"
	got, err := acceptedPeers(p2p, []string{peerA})
	if want := []string{peerA, peerB, peerC, peerD}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("accepted peers = %v, %v; want %v", got, err, want)
	}
	got, err = acceptedPeers(&cmtcfg.P2PConfig{PersistentPeers: peerC + "@127.0.0.1:1"}, nil)
	if want := []string{peerC}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("persistent peer only: %v, %v; want %v", got, err, want)
	}

	for key, c := range map[string]struct {
		p2p     cmtcfg.P2PConfig
		allowed []string
	}{
		"p2p.persistent_peers":       {p2p: cmtcfg.P2PConfig{PersistentPeers: "127.0.0.1:26656"}},
		"p2p.unconditional_peer_ids": {p2p: cmtcfg.P2PConfig{UnconditionalPeerIDs: peerA + "@127.0.0.1:1"}},
		"app.allowed_peers":          {allowed: []string{"zz"}},
	} {
		if _, err := acceptedPeers(&c.p2p, c.allowed); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("bad %s: %v, want an error naming it", key, err)
		}
	}
	if _, err := acceptedPeers(&cmtcfg.P2PConfig{PersistentPeers: "abc@127.0.0.1:1"}, nil); err == nil {
		t.Error("a persistent peer with a short id was accepted")
	}
}

// TestStartPeerFilterSettings: start always turns CometBFT's filter_peers on
// (init writes it off); a home from init allows no peer, and a
// --p2p.persistent_peers peer is allowed, without app.allowed_peers.
func TestStartPeerFilterSettings(t *testing.T) {
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-filter"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	settings := func(args ...string) *nodeSettings {
		t.Helper()
		s, err := startSettings(t, home, args...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if written, err := loadCometConfig(home); err != nil || written.FilterPeers {
		t.Fatalf("init wrote filter_peers = %v (%v); this test wants it off in the file", written.FilterPeers, err)
	}
	s := settings()
	if !s.config.FilterPeers || len(s.peers) != 0 {
		t.Fatalf("home from init: filter_peers %v, allowed %v; want on, none", s.config.FilterPeers, s.peers)
	}
	s = settings("--p2p.persistent_peers", peerC+"@127.0.0.1:26656")
	if !s.config.FilterPeers || !reflect.DeepEqual(s.peers, []string{peerC}) {
		t.Fatalf("with a persistent peer: filter_peers %v, allowed %v; want on, [%s]", s.config.FilterPeers, s.peers, peerC)
	}
	if _, err := startSettings(t, home, "--p2p.persistent_peers", "127.0.0.1:26656"); err == nil || !strings.Contains(err.Error(), "p2p.persistent_peers") {
		t.Fatalf("a persistent peer without an id: %v, want refused", err)
	}
}

// startSettings is what `emrchaind start --home home args...` would run
// with, or why it refuses to start.
func startSettings(t *testing.T, home string, args ...string) (*nodeSettings, error) {
	t.Helper()
	start, _, err := newRootCmd().Find([]string{"start"})
	if err != nil {
		t.Fatal(err)
	}
	if err := start.ParseFlags(append([]string{"--home", home}, args...)); err != nil {
		t.Fatal(err)
	}
	return loadNodeSettings(start)
}

// TestStartPruningFlags: the pruning flags set app.toml's store settings;
// a value above MaxInt64 is refused by the flag's name (it used to turn
// negative and be reported as "must not be negative").
func TestStartPruningFlags(t *testing.T) {
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-pruning"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	settings := func(args ...string) (*nodeSettings, error) {
		t.Helper()
		return startSettings(t, home, args...)
	}
	s, err := settings("--pruning-keep-recent", "100000", "--pruning-interval", "1000")
	if err != nil || s.app.Store.PruningKeepRecent != 100000 || s.app.Store.PruningInterval != 1000 {
		t.Fatalf("pruning flags: %v; want 100000 kept, every 1000", err)
	}
	const above = "9223372036854775808" // MaxInt64 + 1
	for _, c := range []struct {
		flag string
		args []string
	}{
		{"--pruning-keep-recent", []string{"--pruning-keep-recent", above, "--pruning-interval", "1000"}},
		{"--pruning-interval", []string{"--pruning-keep-recent", "100000", "--pruning-interval", above}},
	} {
		if _, err := settings(c.args...); err == nil || !strings.Contains(err.Error(), c.flag) || strings.Contains(err.Error(), "negative") {
			t.Errorf("%s %s: %v, want refused naming the flag", c.flag, above, err)
		}
	}
}
