package testnet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	rpcclient "github.com/cometbft/cometbft/rpc/client"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/testnet"
)

// TestStateSyncJoin: four validators snapshot every 10 blocks while a care
// team is set up; a fifth node, not a validator, starts with state sync on
// (rpc_servers and the trusted header from a validator), restores the
// state from a snapshot instead of replaying the blocks before it (it
// holds no block below the snapshot), catches up by block sync, and
// answers a proven query exactly as a validator does at the same height.
// Its sidecar, whose reference index was kept from before the snapshot,
// reads the index again from the state and sweeps.
func TestStateSyncJoin(t *testing.T) {
	joinHome := filepath.Join(t.TempDir(), "joiner")
	ctx, net, base := setupJoinable(t, joinHome)
	tr := testnet.Transport{Net: net}
	clinician, _, id := careTeam(t, tr, "hospital-a", "statesync")
	// The joiner's home keeps a sidecar reference index from an earlier
	// life of the node, complete through a height below the snapshot it
	// will restore: its sweep must read the index again from the state.
	staleIndexAt := keptRefIndex(ctx, t, net, filepath.Join(joinHome, "data", "sidecar-refs"))
	// A record whose ciphertext the joiner's sidecar will hold: the record
	// is in the snapshot only, never in a block the joiner has.
	kept := []byte("ciphertext of a record committed before the snapshot")
	keptSum := sha256.Sum256(kept)
	mustSubmit(t, tr, "add record", clinician, addRecord(id, keptSum, len(kept)))

	// A snapshot taken after the care team is committed: the joiner gets
	// the care team from the snapshot, not from blocks.
	teamAt := net.MaxHeight()
	snapAt := waitSnapshotHeight(ctx, t, net, teamAt)
	trustH := net.MaxHeight() - 1
	hdr, err := net.RPC(0).Header(ctx, &trustH)
	if err != nil {
		t.Fatal(err)
	}
	if err := testnet.SetStateSync(joinHome, []string{net.RPCURL(0), net.RPCURL(1)}, trustH, hdr.Header.Hash()); err != nil {
		t.Fatal(err)
	}
	if err := clienttest.SetConfig(filepath.Join(joinHome, "config", "app.toml"), "sidecar",
		map[string]string{"sweep_interval": `"1s"`, "sweep_grace": `"1s"`}); err != nil {
		t.Fatal(err)
	}
	j := net.AddNode("joiner", joinHome, base)
	start := time.Now()
	net.Start(j)
	target := net.MaxHeight() + 2
	if err := net.WaitHeight(ctx, j, target); err != nil {
		t.Fatal(err)
	}
	t.Logf("care team committed by %d, first snapshot after it at %d; the joiner reached height %d in %s",
		teamAt, snapAt, target, time.Since(start).Round(time.Millisecond))

	st, err := net.RPC(j).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.SyncInfo.EarliestBlockHeight <= staleIndexAt+1 {
		t.Fatalf("the joiner holds blocks from %d: its kept index, through %d, is not below them", st.SyncInfo.EarliestBlockHeight, staleIndexAt)
	}
	if st.SyncInfo.EarliestBlockHeight <= teamAt {
		t.Fatalf("the joiner holds blocks from %d (care team committed by %d): it did not restore a snapshot taken after them",
			st.SyncInfo.EarliestBlockHeight, teamAt)
	}
	if log, _ := os.ReadFile(net.LogFile(j)); !bytes.Contains(log, []byte("snapshot restored")) {
		t.Fatal("the joiner's log does not say it restored a snapshot")
	}
	// A client can take its root of trust from the genesis through the
	// joiner, which has no block below its earliest.
	gen, err := os.ReadFile(filepath.Join(net.Home(0), "config", "genesis.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, trust, err := client.TrustFromGenesis(ctx, net.RPCURL(j), gen, 0); err != nil || trust.Height < st.SyncInfo.EarliestBlockHeight {
		t.Fatalf("trust from the genesis through the joiner (earliest block %d): %+v %v", st.SyncInfo.EarliestBlockHeight, trust, err)
	}
	if err := net.WaitHeight(ctx, 0, target); err != nil { // header target holds the app hash after target-1
		t.Fatal(err)
	}
	h := target - 1
	want, err := net.AppHashAt(0, h)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := net.AppHashAt(j, h); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("app hash at %d: joiner %X (%v), validator %X", h, got, err, want)
	}
	a, b := provenMember(ctx, t, net, 0, h, clinician.Address), provenMember(ctx, t, net, j, h, clinician.Address)
	if !bytes.Equal(a, b) {
		t.Fatal("the joiner's proven answer differs from the validator's")
	}

	// The joiner's sidecar sweeps, though it holds no block from height 1:
	// its reference index starts from the state, so it keeps the
	// ciphertext of the record in the snapshot and deletes one no record
	// references.
	// The sidecar serves nothing while its node says it is catching up,
	// which it may still say for a moment after it reached the head.
	waitFor(ctx, t, "the joiner to finish catching up", func() bool {
		st, err := net.RPC(j).Status(ctx)
		return err == nil && !st.SyncInfo.CatchingUp
	})
	sc := sidecar.NewClient(net.SidecarURL(j), sidecar.KeyRecipient{KeySigner: sidecar.KeySigner{Key: clinician.Sign}, Enc: clinician.Enc}, nil)
	orphan := []byte("ciphertext no record references")
	orphanSum := sha256.Sum256(orphan)
	for _, blob := range [][]byte{kept, orphan} {
		if _, err := sc.Put(ctx, id, "lab-results", sha256.Sum256(blob), bytes.NewReader(blob), int64(len(blob))); err != nil {
			t.Fatalf("upload to the joiner's sidecar: %v", err)
		}
	}
	store, err := blobstore.OpenFS(filepath.Join(joinHome, "data", "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	stored := func(sum [32]byte) bool {
		_, err := store.Stat(ctx, sidecar.BlobKey(id, "lab-results", sum))
		if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	waitFor(ctx, t, "the joiner's sweep to delete the orphan", func() bool { return !stored(orphanSum) })
	if !stored(keptSum) {
		t.Fatal("the joiner's sweep deleted the ciphertext of a record in its snapshot")
	}
	log, _ := os.ReadFile(net.LogFile(j))
	if !bytes.Contains(log, []byte("reading the index again from the state")) || !bytes.Contains(log, []byte("reference index read from the state")) {
		t.Fatalf("the joiner's log does not say its kept reference index (through height %d) was read again from the state", staleIndexAt)
	}

	// restart starts the joiner again (after prepare, on it stopped) and
	// returns its log once it caught up and agrees with a validator's app
	// hash.
	restart := func(what string, prepare func()) []byte {
		t.Helper()
		net.Kill(j)
		prepare()
		net.Start(j)
		again := net.MaxHeight() + 2
		if err := net.WaitHeight(ctx, j, again); err != nil {
			t.Fatalf("the joined node %s: %v", what, err)
		}
		// The validator may store the block a moment after the joiner.
		if err := net.WaitHeight(ctx, 0, again); err != nil {
			t.Fatal(err)
		}
		h := again - 1
		want, err := net.AppHashAt(0, h)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := net.AppHashAt(j, h); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("app hash at %d, the joined node %s: %X (%v), validator %X", h, what, got, err, want)
		}
		log, _ := os.ReadFile(net.LogFile(j))
		return log
	}

	// A crash of the joined node: it restarts from its own state, which
	// begins at the snapshot (CometBFT's handshake must find the app at
	// the height of the last block the node stored, with no block below
	// the snapshot to replay), and catches up by block sync.
	if log := restart("after a restart", func() {}); bytes.Contains(log, []byte("snapshot restored")) {
		t.Fatal("the restarted node restored a snapshot again instead of going on from its state")
	}

	// A crash at the end of a join, after the app restored the snapshot
	// but before CometBFT recorded the state: the app holds a state,
	// CometBFT none. The node records the app's state through the light
	// client and goes on; it used to refuse every snapshot forever.
	log = restart("whose CometBFT state was lost", func() {
		for _, db := range []string{"blockstore.db", "state.db", "evidence.db", "tx_index.db", "cs.wal"} {
			if err := os.RemoveAll(filepath.Join(joinHome, "data", db)); err != nil {
				t.Fatal(err)
			}
		}
	})
	if !bytes.Contains(log, []byte("recording it through the light client")) || bytes.Contains(log, []byte("snapshot restored")) {
		t.Fatal("the node did not record the app's state from the light client, or restored a snapshot again")
	}
}

// keptRefIndex builds a sidecar reference index in dir from node 0's
// blocks, as a sidecar of an earlier life of a node's home left it, and
// returns the height it is complete through.
func keptRefIndex(ctx context.Context, t *testing.T, net *testnet.Net, dir string) int64 {
	t.Helper()
	store, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sidecar.New(sidecar.Options{Store: store, Chain: sidecar.NewNodeChainView(net.RPC(0)), SweepInterval: -1, RefIndexDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := srv.Sweep(ctx)
	if err != nil {
		t.Fatalf("sweep to build the kept index: %v", err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return rep.Height
}

// setupJoinable starts 4 validators that snapshot every 10 blocks and let
// in the node whose home it writes at joinHome, on ports from base.
func setupJoinable(t *testing.T, joinHome string) (ctx context.Context, net *testnet.Net, base int) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a testnet of real processes")
	}
	// The joiner's home and node id first: the validators must let it in.
	id, base, err := testnet.InitHomeWith(t, joinHome, "emrchain-testnet")
	if err != nil {
		t.Fatal(err)
	}
	ctx, net = setupWith(t, testnet.Options{Validators: 4, AllowPeers: []string{id},
		// A snapshot every few seconds, each kept for half a minute: long
		// enough for the joiner to discover it (5 s) and fetch it.
		SnapshotInterval: 10, SnapshotKeepRecent: 10})
	if err := testnet.CopyGenesis(net.Home(0), joinHome); err != nil {
		t.Fatal(err)
	}
	return ctx, net, base
}

// waitSnapshotHeight waits until a validator has a snapshot above after.
func waitSnapshotHeight(ctx context.Context, t *testing.T, net *testnet.Net, after int64) int64 {
	t.Helper()
	var at int64
	waitFor(ctx, t, "a snapshot", func() bool {
		entries, _ := os.ReadDir(filepath.Join(net.Home(0), "data", "snapshots"))
		for _, e := range entries {
			var h, f int64
			if _, err := fmt.Sscanf(e.Name(), "%d-%d", &h, &f); err == nil && h > after {
				at = h
				return true
			}
		}
		return false
	})
	return at
}

// provenMember is node i's proven answer about the member at address at
// height h.
func provenMember(ctx context.Context, t *testing.T, net *testnet.Net, i int, h int64, address []byte) []byte {
	t.Helper()
	data, _ := proto.Marshal(&emrv1.QueryMemberRequest{Address: hex.EncodeToString(address)})
	res, err := net.RPC(i).ABCIQueryWithOptions(ctx, app.QueryPathPrefix+"Member", data, rpcclient.ABCIQueryOptions{Height: h, Prove: true})
	if err != nil || res.Response.Code != 0 {
		t.Fatalf("node %d: proven Member query at %d: %v %v", i, h, err, res)
	}
	var m emrv1.QueryMemberResponse
	if err := proto.Unmarshal(res.Response.Value, &m); err != nil || len(m.Proofs) == 0 || res.Response.Height != h {
		t.Fatalf("node %d: Member answer %v at %d (%v); want proofs at %d", i, &m, res.Response.Height, err, h)
	}
	return res.Response.Value
}
