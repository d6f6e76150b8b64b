package abci_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cometbft/cometbft/abci/types"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app/apptest"
	emrchainv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// snapNode is a node that makes snapshots every interval blocks, in chunks
// of chunkSize bytes.
func snapNode(t *testing.T, dir string, interval uint64, chunkSize int) *node {
	t.Helper()
	sn, err := store.OpenSnapshots(filepath.Join(dir, "snapshots"), 2)
	if err != nil {
		t.Fatal(err)
	}
	sn.SetChunkSize(chunkSize)
	return openNodeWith(t, dir, abci.Options{Version: "test", Snapshots: &abci.SnapshotOptions{Dir: sn, Interval: interval}})
}

// clinicianOf is the member the source chain registers.
var clinicianOf = apptest.NewActor("snapshot-clinician")

// sourceChain runs a consortium chain to height 4 on a node snapshotting
// every 2 blocks, with a member registered at height 2, and returns the
// node and the snapshot of height 4 with its trusted app hash. Blocks 3
// and 4 change nothing, so the snapshot's last-block record is of height
// 2: a restore must take it as the state of height 4.
func sourceChain(t *testing.T) (*node, *types.Snapshot, []byte) {
	t.Helper()
	src := snapNode(t, t.TempDir(), 2, store.MinChunkSize)
	initChainWith(t, src.app, apptest.Consortium())
	registrar := apptest.Registrar(apptest.HospitalA)
	tx := registrar.Tx(testChainID, 0, apptest.RegisterMember(clinicianOf, emrchainv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	for h := int64(1); h <= 4; h++ {
		var txs [][]byte
		if h == 2 {
			txs = [][]byte{tx}
		}
		if res, _ := block(t, src.app, h, txs...); len(res) == 1 && res[0].Code != 0 {
			t.Fatalf("register member: %s", res[0].Log)
		}
	}
	snap := waitSnapshot(t, src, 4)
	info, _ := src.app.Info(context.Background(), &types.InfoRequest{})
	return src, snap, info.LastBlockAppHash
}

// waitSnapshot waits until n lists a snapshot of height.
func waitSnapshot(t *testing.T, n *node, height uint64) *types.Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		list, err := n.app.ListSnapshots(context.Background(), &types.ListSnapshotsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list.Snapshots {
			if s.Height == height {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no snapshot of height %d", height)
	return nil
}

func chunkOf(t *testing.T, n *node, s *types.Snapshot, i uint32) []byte {
	t.Helper()
	res, err := n.app.LoadSnapshotChunk(context.Background(), &types.LoadSnapshotChunkRequest{Height: s.Height, Format: s.Format, Chunk: i})
	if err != nil || len(res.Chunk) == 0 {
		t.Fatalf("LoadSnapshotChunk(%d): %v, %d bytes", i, err, len(res.Chunk))
	}
	return res.Chunk
}

func offer(t *testing.T, n *node, s *types.Snapshot, appHash []byte) types.OfferSnapshotResult {
	t.Helper()
	res, err := n.app.OfferSnapshot(context.Background(), &types.OfferSnapshotRequest{Snapshot: s, AppHash: appHash})
	if err != nil {
		t.Fatalf("OfferSnapshot: %v (an ABCI error halts CometBFT)", err)
	}
	return res.Result
}

func apply(t *testing.T, n *node, i uint32, chunk []byte, sender string) *types.ApplySnapshotChunkResponse {
	t.Helper()
	res, err := n.app.ApplySnapshotChunk(context.Background(), &types.ApplySnapshotChunkRequest{Index: i, Chunk: chunk, Sender: sender})
	if err != nil {
		t.Fatalf("ApplySnapshotChunk(%d): %v (an ABCI error halts CometBFT)", i, err)
	}
	return res
}

// TestStateSyncRestore: a fresh node restores the source's snapshot chunk
// by chunk (one applied twice, as after a retry), reports the snapshot's
// height and app hash, answers a proven query as the source does, executes
// the next block to the source's app hash, and restarts where it was.
func TestStateSyncRestore(t *testing.T) {
	src, snap, appHash := sourceChain(t)
	if snap.Chunks < 2 {
		t.Fatalf("%d chunks; want several", snap.Chunks)
	}
	dir := t.TempDir()
	dst := snapNode(t, dir, 0, store.MinChunkSize)
	if r := offer(t, dst, snap, appHash); r != types.OFFER_SNAPSHOT_RESULT_ACCEPT {
		t.Fatalf("OfferSnapshot = %v, want ACCEPT", r)
	}
	for i := range snap.Chunks {
		c := chunkOf(t, src, snap, i)
		if r := apply(t, dst, i, c, "peer"); r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_ACCEPT {
			t.Fatalf("chunk %d: %v", i, r)
		}
		if i == 0 { // applied again (a retry): already in, still ACCEPT
			if r := apply(t, dst, 0, chunkOf(t, src, snap, 0), "peer"); r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_ACCEPT {
				t.Fatalf("chunk 0 again: %v", r)
			}
		}
	}
	checkInfo(t, dst, 4, appHash)
	if a, b := memberQuery(t, src, 4), memberQuery(t, dst, 4); !bytes.Equal(a, b) {
		t.Fatal("the restored node answers the proven query differently")
	}
	// The restored app's bookkeeping is the block's: it executes block 5
	// (which CheckTx and FinalizeBlock need the chain id and params for).
	_, h1 := block(t, src.app, 5)
	_, h2 := block(t, dst.app, 5)
	if !bytes.Equal(h1, h2) {
		t.Fatalf("block 5 after the restore: app hash %X, source %X", h2, h1)
	}
	dst.close()
	checkInfo(t, openNode(t, dir), 5, h1)
}

// TestStateSyncChunkOutOfOrder: a chunk ahead of the next one is not this
// snapshot's stream: the snapshot is rejected and its partial import
// wiped, and the node can restore it afresh.
func TestStateSyncChunkOutOfOrder(t *testing.T) {
	src, snap, appHash := sourceChain(t)
	dst := snapNode(t, t.TempDir(), 0, store.MinChunkSize)
	if r := offer(t, dst, snap, appHash); r != types.OFFER_SNAPSHOT_RESULT_ACCEPT {
		t.Fatalf("OfferSnapshot = %v", r)
	}
	if r := apply(t, dst, 1, chunkOf(t, src, snap, 1), "peer"); r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_REJECT_SNAPSHOT {
		t.Fatalf("chunk 1 before 0: %v, want REJECT_SNAPSHOT", r)
	}
	checkInfo(t, dst, 0, nil)
	restoreAll(t, src, dst, snap, appHash)
}

// restoreAll offers snap to dst, applies every chunk from src, and checks
// that dst is then at the snapshot's height and trusted app hash (4: the
// source chain's).
func restoreAll(t *testing.T, src, dst *node, snap *types.Snapshot, appHash []byte) {
	t.Helper()
	if r := offer(t, dst, snap, appHash); r != types.OFFER_SNAPSHOT_RESULT_ACCEPT {
		t.Fatalf("OfferSnapshot = %v, want ACCEPT", r)
	}
	for i := range snap.Chunks {
		if r := apply(t, dst, i, chunkOf(t, src, snap, i), "peer"); r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_ACCEPT {
			t.Fatalf("chunk %d: %v", i, r)
		}
	}
	checkInfo(t, dst, 4, appHash)
}

func checkInfo(t *testing.T, n *node, height int64, hash []byte) {
	t.Helper()
	info, err := n.app.Info(context.Background(), &types.InfoRequest{})
	if err != nil || info.LastBlockHeight != height || !bytes.Equal(info.LastBlockAppHash, hash) {
		t.Fatalf("Info = %v, %v; want height %d hash %X", info, err, height, hash)
	}
}

// memberQuery returns the proven answer about the clinician at height.
func memberQuery(t *testing.T, n *node, height int64) []byte {
	t.Helper()
	data, _ := proto.Marshal(&emrchainv1.QueryMemberRequest{Address: hex.EncodeToString(clinicianOf.Address)})
	q, err := n.app.Query(context.Background(), &types.QueryRequest{Path: abci.QueryServicePrefix + "Member", Data: data, Prove: true, Height: height})
	if err != nil || q.Code != 0 || len(q.Value) == 0 {
		t.Fatalf("Query(Member) = %v, %v", q, err)
	}
	return q.Value
}

// TestStateSyncCorruptChunk: a chunk that does not match its hash is
// refetched and its sender rejected, before anything decodes it; the good
// chunk then completes the restore.
func TestStateSyncCorruptChunk(t *testing.T) {
	src, snap, appHash := sourceChain(t)
	dst := snapNode(t, t.TempDir(), 0, store.MinChunkSize)
	if r := offer(t, dst, snap, appHash); r != types.OFFER_SNAPSHOT_RESULT_ACCEPT {
		t.Fatalf("OfferSnapshot = %v", r)
	}
	for i := range snap.Chunks {
		c := chunkOf(t, src, snap, i)
		if i == 1 {
			bad := bytes.Clone(c)
			bad[len(bad)/2] ^= 0x40
			r := apply(t, dst, i, bad, "liar")
			if r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_RETRY || !slices.Equal(r.RefetchChunks, []uint32{1}) || !slices.Equal(r.RejectSenders, []string{"liar"}) {
				t.Fatalf("corrupt chunk: %v; want RETRY, refetch [1], reject [liar]", r)
			}
		}
		if r := apply(t, dst, i, c, "honest"); r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_ACCEPT {
			t.Fatalf("chunk %d: %v", i, r)
		}
	}
	checkInfo(t, dst, 4, appHash)
}

// TestStateSyncWrongAppHash: a snapshot whose tree is not the trusted app
// hash is refused: at once when its metadata says another root, and after
// the import when the metadata lies; the import is wiped and the right
// snapshot restores afterwards.
func TestStateSyncWrongAppHash(t *testing.T) {
	src, snap, appHash := sourceChain(t)
	dst := snapNode(t, t.TempDir(), 0, store.MinChunkSize)
	wrong := bytes.Clone(appHash)
	wrong[0] ^= 1
	if r := offer(t, dst, snap, wrong); r != types.OFFER_SNAPSHOT_RESULT_REJECT {
		t.Fatalf("offer against another app hash = %v, want REJECT", r)
	}
	meta, err := store.DecodeSnapshotMetadata(snap.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	meta.Root = wrong // the metadata claims the (wrongly) trusted hash
	lying := cloneSnapshot(snap)
	lying.Metadata, lying.Hash = meta.Encode(), meta.Hash()
	if r := offer(t, dst, lying, wrong); r != types.OFFER_SNAPSHOT_RESULT_ACCEPT {
		t.Fatalf("offer = %v, want ACCEPT", r)
	}
	// Served by two peers (and once by CometBFT without a sender's name),
	// both of which advertised the lying snapshot: both are rejected.
	senders := []string{"peer-a", "peer-b", "", "peer-a"}
	var last *types.ApplySnapshotChunkResponse
	for i := range snap.Chunks {
		last = apply(t, dst, i, chunkOf(t, src, snap, i), senders[int(i)%len(senders)])
	}
	if last.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_REJECT_SNAPSHOT {
		t.Fatalf("last chunk of a tree that is not the trusted hash: %v, want REJECT_SNAPSHOT", last)
	}
	if !slices.Equal(last.RejectSenders, []string{"peer-a", "peer-b"}) {
		t.Fatalf("a snapshot whose tree is not the trusted hash rejects senders %q, want the two peers that served it", last.RejectSenders)
	}
	checkInfo(t, dst, 0, nil)
	restoreAll(t, src, dst, snap, appHash)
}

// TestStateSyncOfferRefusals: offers the app must refuse, with answers,
// never errors.
func TestStateSyncOfferRefusals(t *testing.T) {
	src, snap, appHash := sourceChain(t)
	if r := offer(t, src, snap, appHash); r != types.OFFER_SNAPSHOT_RESULT_REJECT {
		t.Fatalf("offer to a node with state = %v, want REJECT", r)
	}
	dst := snapNode(t, t.TempDir(), 0, store.MinChunkSize)
	mod := func(f func(s *types.Snapshot)) *types.Snapshot {
		s := cloneSnapshot(snap)
		f(s)
		return s
	}
	for name, c := range map[string]struct {
		s    *types.Snapshot
		want types.OfferSnapshotResult
	}{
		"format":        {mod(func(s *types.Snapshot) { s.Format = 2 }), types.OFFER_SNAPSHOT_RESULT_REJECT_FORMAT},
		"height 0":      {mod(func(s *types.Snapshot) { s.Height = 0 }), types.OFFER_SNAPSHOT_RESULT_REJECT},
		"chunks":        {mod(func(s *types.Snapshot) { s.Chunks++ }), types.OFFER_SNAPSHOT_RESULT_REJECT},
		"no chunks":     {mod(func(s *types.Snapshot) { s.Chunks = 0 }), types.OFFER_SNAPSHOT_RESULT_REJECT},
		"huge":          {mod(func(s *types.Snapshot) { s.Chunks = 1 << 31 }), types.OFFER_SNAPSHOT_RESULT_REJECT},
		"metadata":      {mod(func(s *types.Snapshot) { s.Metadata = s.Metadata[:len(s.Metadata)-1] }), types.OFFER_SNAPSHOT_RESULT_REJECT},
		"hash":          {mod(func(s *types.Snapshot) { s.Hash = []byte{1} }), types.OFFER_SNAPSHOT_RESULT_REJECT},
		"nil snapshot":  {nil, types.OFFER_SNAPSHOT_RESULT_REJECT},
		"empty options": {&types.Snapshot{}, types.OFFER_SNAPSHOT_RESULT_REJECT_FORMAT},
	} {
		if r := offer(t, dst, c.s, appHash); r != c.want {
			t.Errorf("%s: %v, want %v", name, r, c.want)
		}
	}
	checkInfo(t, dst, 0, nil)

	// A node whose genesis is applied (InitChain ran, no block yet) holds
	// state too: a restore would wipe it under the app.
	gen := snapNode(t, t.TempDir(), 0, store.MinChunkSize)
	initChain(t, gen.app)
	if r := offer(t, gen, snap, appHash); r != types.OFFER_SNAPSHOT_RESULT_REJECT {
		t.Fatalf("offer to a node with a genesis = %v, want REJECT", r)
	}
	checkInfo(t, gen, 0, nil)
}

// TestSnapshotsDoNotChangeAppHash: the same blocks give the same app
// hashes with snapshots every block and without any.
func TestSnapshotsDoNotChangeAppHash(t *testing.T) {
	with := snapNode(t, t.TempDir(), 1, store.MinChunkSize)
	without := openNode(t, t.TempDir())
	if a, b := initChain(t, with.app), initChain(t, without.app); !bytes.Equal(a, b) {
		t.Fatal("genesis app hashes differ")
	}
	for h := int64(1); h <= 5; h++ {
		_, a := block(t, with.app, h)
		_, b := block(t, without.app, h)
		if !bytes.Equal(a, b) {
			t.Fatalf("height %d: %X with snapshots, %X without", h, a, b)
		}
	}
	waitSnapshot(t, with, 5)
}

func cloneSnapshot(s *types.Snapshot) *types.Snapshot {
	c := *s
	c.Hash, c.Metadata = bytes.Clone(s.Hash), bytes.Clone(s.Metadata)
	return &c
}

// TestSnapshotDueDuringAWriteIsWritten: with a snapshot due every block and
// blocks 2–8 committed while snapshot 1 is being written (held open), the
// one due last, 8, is written right after it and those due in between are
// dropped: the newest snapshot is never lost.
func TestSnapshotDueDuringAWriteIsWritten(t *testing.T) {
	n := snapNode(t, t.TempDir(), 1, store.MinChunkSize)
	var (
		mu      sync.Mutex
		started []int64
		release = make(chan struct{})
		once    sync.Once
	)
	releaseOnce := func() { once.Do(func() { close(release) }) }
	defer releaseOnce() // a failed test must not leave the writer held
	abci.BeforeSnapshotWrite(n.app, func(h int64) {
		mu.Lock()
		started = append(started, h)
		mu.Unlock()
		if h == 1 {
			<-release
		}
	})
	initChain(t, n.app)
	for h := int64(1); h <= 8; h++ {
		block(t, n.app, h)
	}
	releaseOnce()
	waitSnapshot(t, n, 8)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(started, []int64{1, 8}) {
		t.Fatalf("snapshots written: %v, want 1, then 8 (due while 1 was written)", started)
	}
}

// TestListSnapshotsOffersTheReadableOnes: a snapshot whose metadata no
// longer reads (a disk fault) is left out of ListSnapshots, and the others
// are still offered.
func TestListSnapshotsOffersTheReadableOnes(t *testing.T) {
	dir := t.TempDir()
	n := snapNode(t, dir, 2, store.MinChunkSize)
	initChainWith(t, n.app, apptest.Consortium())
	for h := int64(1); h <= 4; h++ {
		block(t, n.app, h)
	}
	waitSnapshot(t, n, 4)
	waitSnapshot(t, n, 2)
	damaged := filepath.Join(dir, "snapshots", fmt.Sprintf("2-%d", store.SnapshotFormat), "metadata")
	if err := os.WriteFile(damaged, []byte{0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := n.app.ListSnapshots(context.Background(), &types.ListSnapshotsRequest{})
	if err != nil || len(list.Snapshots) != 1 || list.Snapshots[0].Height != 4 {
		t.Fatalf("ListSnapshots with snapshot 2 damaged = %v, %v; want snapshot 4 only", list, err)
	}
}

// TestStateSyncLocalFailureAborts: a restore that fails on this node (here
// its store closes under it; a disk that fails a write is alike,
// TestRestoreReportsAFailedBackgroundWrite in store) would fail for every snapshot:
// state sync aborts, and no peer is rejected for it.
func TestStateSyncLocalFailureAborts(t *testing.T) {
	src, snap, appHash := sourceChain(t)
	dst := snapNode(t, t.TempDir(), 0, store.MinChunkSize)
	if r := offer(t, dst, snap, appHash); r != types.OFFER_SNAPSHOT_RESULT_ACCEPT {
		t.Fatalf("OfferSnapshot = %v", r)
	}
	if r := apply(t, dst, 0, chunkOf(t, src, snap, 0), "honest"); r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_ACCEPT {
		t.Fatalf("chunk 0: %v", r)
	}
	if err := dst.st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dst.app.StateSyncAborted(); err != nil {
		t.Fatalf("state sync aborted before anything failed: %v", err)
	}
	r := apply(t, dst, 1, chunkOf(t, src, snap, 1), "honest")
	if r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_ABORT || len(r.RejectSenders) != 0 {
		t.Fatalf("chunk 1 into a closed store: %v; want ABORT, no sender rejected", r)
	}
	// start's hint says why, instead of sending the operator to the peers.
	if err := dst.app.StateSyncAborted(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("StateSyncAborted after the abort: %v; want the store's failure", err)
	}
}

// TestSnapshotsFault: which restore errors count against the snapshot
// (REJECT_SNAPSHOT with its senders) and which are this node's (ABORT).
func TestSnapshotsFault(t *testing.T) {
	disk := errors.New("no space left on device")
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"a chunk that is not a tree", fmt.Errorf("restore block 4: %w: leaf 01 does not come after leaf 02", store.ErrBadSnapshot), true},
		{"a tree that is not the trusted hash", fmt.Errorf("restore block 4: %w", store.ErrRootMismatch), true},
		{"a tree of another root whose wipe failed (the store cannot take another)", fmt.Errorf("store: restore: wiping the import after (%v): %w", store.ErrRootMismatch, disk), false},
		{"a write of the import that failed", fmt.Errorf("store: restore: writing the import: %w", disk), false},
		{"a closed store", store.ErrClosed, false},
		{"bookkeeping that does not read", errors.New("restore block 4: no chain id"), false},
	} {
		if got := abci.SnapshotsFault(c.err); got != c.want {
			t.Errorf("%s (%v): the snapshot's fault = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
