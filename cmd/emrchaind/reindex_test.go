package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	abcitypes "github.com/cometbft/cometbft/abci/types"
	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/cometbft/cometbft/libs/log"
	sm "github.com/cometbft/cometbft/state"
	blockidxkv "github.com/cometbft/cometbft/state/indexer/block/kv"
	"github.com/cometbft/cometbft/state/txindex/kv"
	cmtstore "github.com/cometbft/cometbft/store"
	cmttypes "github.com/cometbft/cometbft/types"
	"github.com/google/orderedcode"

	"github.com/emrchain/emrchain/store/cometdb"
)

// TestReindexAtStart: start indexes again the newest blocks the tx index
// lacks, the ones a stop between a commit and its indexing leaves: blocks
// not indexed at all, and a block indexed without its transactions (the
// block is indexed first). It indexes at most maxReindexAtStart blocks and
// says where it stopped; what lies below the newest indexed block is not
// its business.
func TestReindexAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the node binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	home, rpcPort := initLoopbackHome(t, "--timeout-commit", "100ms", "--empty-blocks-interval", "0s")
	node := startNode(t, home, "run1.log")
	waitHeight(ctx, t, node, rpcPort, 2)
	registerClinician(ctx, t, home, rpcPort, ed25519.GenPrivKey())
	h, _ := waitHeight(ctx, t, node, rpcPort, 0)
	waitHeight(ctx, t, node, rpcPort, h+3)
	if err := node.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	conf, err := loadCometConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	provider := cometdb.Provider(8)
	open := func(id string) dbm.DB {
		t.Helper()
		db, err := provider(&cmtcfg.DBContext{ID: id, Config: conf})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}

	// The newest executed block (a stop may leave one more saved, not
	// executed: reindexUnindexed starts below it too) and the newest with
	// a transaction.
	stateDB := open("state")
	consensus, err := sm.NewStore(stateDB, sm.StoreOptions{DBKeyLayout: conf.Storage.ExperimentalKeyLayout}).Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := stateDB.Close(); err != nil {
		t.Fatal(err)
	}
	bsDB := open("blockstore")
	blocks := cmtstore.NewBlockStore(bsDB, cmtstore.WithDBKeyLayout(conf.Storage.ExperimentalKeyLayout))
	top, withTx := min(blocks.Height(), consensus.LastBlockHeight), int64(0)
	var tx cmttypes.Tx
	for h := top; h > 0 && withTx == 0; h-- {
		if b, _ := blocks.LoadBlock(h); b != nil && len(b.Txs) > 0 {
			withTx, tx = h, b.Txs[len(b.Txs)-1]
		}
	}
	if err := bsDB.Close(); err != nil {
		t.Fatal(err)
	}
	if withTx == 0 || withTx == top {
		t.Fatalf("no block with a transaction below the newest (%d): %d", top, withTx)
	}

	// The block with the transaction is indexed, its transaction is not;
	// the blocks above it are not indexed at all.
	index := open("tx_index")
	if err := index.Delete(tx.Hash()); err != nil {
		t.Fatal(err)
	}
	for h := withTx + 1; h <= top; h++ {
		if err := index.Delete(blockHeightKey(t, h)); err != nil {
			t.Fatal(err)
		}
	}
	if err := index.Close(); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	logger := log.NewTMLogger(log.NewSyncWriter(&logged))
	n, err := reindexUnindexed(conf, provider, logger, top)
	if err != nil || n != int(top-withTx+1) {
		t.Fatalf("reindexed %d blocks (%v), want %d (%d to %d)", n, err, top-withTx+1, withTx, top)
	}
	index = open("tx_index")
	got, err := kv.NewTxIndex(index).Get(tx.Hash())
	if err != nil || got == nil || got.Height != withTx {
		t.Fatalf("the transaction of block %d after the reindex: %+v, %v", withTx, got, err)
	}
	if err := index.Close(); err != nil {
		t.Fatal(err)
	}

	// A lost index: only the newest maxReindexAtStart blocks are indexed
	// again, and the log says what is left.
	defer func(n int) { maxReindexAtStart = n }(maxReindexAtStart)
	maxReindexAtStart = 2
	index = open("tx_index")
	it, err := index.Iterator(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for ; it.Valid(); it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	it.Close()
	for _, k := range keys {
		if err := index.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := index.Close(); err != nil {
		t.Fatal(err)
	}
	logged.Reset()
	if n, err := reindexUnindexed(conf, provider, logger, top); err != nil || n != 2 {
		t.Fatalf("reindexed %d blocks of a lost index (%v), want the cap, 2", n, err)
	}
	if !bytes.Contains(logged.Bytes(), []byte("the tx index lacks more blocks than start indexes again")) {
		t.Errorf("the log does not say blocks were left unindexed:\n%s", logged.Bytes())
	}
	index = open("tx_index")
	blockIdx := blockidxkv.New(dbm.NewPrefixDB(index, []byte("block_events")))
	for h := top - 3; h <= top; h++ {
		has, err := blockIdx.Has(h)
		if want := h > top-2; err != nil || has != want {
			t.Errorf("block %d indexed: %v (%v), want %v", h, has, err, want)
		}
	}
	if err := index.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := reindexUnindexed(conf, provider, logger, top); err != nil || n != 0 {
		t.Fatalf("a second start reindexed %d blocks (%v): the newest are indexed, the rest are CometBFT's reindex-event's", n, err)
	}
}

// blockHeightKey is the block indexer's key for height (CometBFT's
// state/indexer/block/kv heightKey, in the "block_events" prefix).
func blockHeightKey(t *testing.T, height int64) []byte {
	t.Helper()
	key, err := orderedcode.Append(nil, cmttypes.BlockHeightKey, height)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("block_events"), key...)
}

// TestReindexSkipsLostResults: a block whose FinalizeBlock results are gone
// (pruned, or [storage] discard_abci_responses) cannot be indexed, but the
// blocks above it are, and the start goes on: it once stopped at the first
// such block and left every transaction after it unfindable by hash. The
// skip is logged once, with the range and what the operator can do; the
// next start does not report it again.
func TestReindexSkipsLostResults(t *testing.T) {
	const top = 5
	// In-memory databases outlive reindexUnindexed's Close, so the test
	// reads what it wrote.
	dbs := map[string]dbm.DB{}
	provider := func(ctx *cmtcfg.DBContext) (dbm.DB, error) {
		if dbs[ctx.ID] == nil {
			dbs[ctx.ID] = dbm.NewMemDB()
		}
		return dbs[ctx.ID], nil
	}
	conf := cmtcfg.DefaultConfig()
	conf.SetRoot(t.TempDir())
	open := func(id string) dbm.DB {
		t.Helper()
		db, err := provider(&cmtcfg.DBContext{ID: id, Config: conf})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}

	// Blocks 1 to 5, one transaction each, executed, their results stored;
	// then the results of 1 and 2 pruned.
	blocks := cmtstore.NewBlockStore(open("blockstore"), cmtstore.WithDBKeyLayout(conf.Storage.ExperimentalKeyLayout))
	states := sm.NewStore(open("state"), sm.StoreOptions{DBKeyLayout: conf.Storage.ExperimentalKeyLayout})
	validator := ed25519.GenPrivKey().PubKey()
	txs := make([]cmttypes.Tx, top+1)
	// A commit the block store takes: for the block, with one signature,
	// absent.
	commit := func(h int64, id cmttypes.BlockID) *cmttypes.Commit {
		if h == 0 {
			return &cmttypes.Commit{}
		}
		return &cmttypes.Commit{Height: h, BlockID: id, Signatures: []cmttypes.CommitSig{cmttypes.NewCommitSigAbsent()}}
	}
	var last cmttypes.BlockID
	for h := int64(1); h <= top; h++ {
		txs[h] = cmttypes.Tx(fmt.Sprintf("tx %d", h))
		block := cmttypes.MakeBlock(h, cmttypes.Txs{txs[h]}, commit(h-1, last), nil)
		block.ProposerAddress = validator.Address()
		parts, err := block.MakePartSet(cmttypes.BlockPartSizeBytes)
		if err != nil {
			t.Fatal(err)
		}
		last = cmttypes.BlockID{Hash: block.Hash(), PartSetHeader: parts.Header()}
		blocks.SaveBlock(block, parts, commit(h, last))
		if err := states.SaveFinalizeBlockResponse(h, &abcitypes.FinalizeBlockResponse{
			TxResults: []*abcitypes.ExecTxResult{{Code: uint32(h)}},
			AppHash:   []byte{byte(h)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	state, err := sm.MakeGenesisState(&cmttypes.GenesisDoc{
		ChainID:    "reindex-test",
		Validators: []cmttypes.GenesisValidator{{PubKey: validator, Power: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	state.LastBlockHeight, state.LastValidators = top, state.Validators.Copy()
	if err := states.Save(state); err != nil {
		t.Fatal(err)
	}
	if _, _, err := states.PruneABCIResponses(3, false); err != nil {
		t.Fatal(err)
	}

	var logged bytes.Buffer
	logger := log.NewTMLogger(log.NewSyncWriter(&logged))
	const gone = "the tx index lacks blocks whose results are gone"
	// indexed says which blocks, and which of their transactions, the index
	// holds, as "block 3 tx 3 ..." for a readable failure.
	indexed := func() string {
		t.Helper()
		var got []string
		blockIdx := blockidxkv.New(dbm.NewPrefixDB(open("tx_index"), []byte("block_events")))
		txIdx := kv.NewTxIndex(open("tx_index"))
		for h := int64(1); h <= top; h++ {
			has, err := blockIdx.Has(h)
			if err != nil {
				t.Fatal(err)
			}
			if has {
				got = append(got, fmt.Sprintf("block %d", h))
			}
			res, err := txIdx.Get(txs[h].Hash())
			if err != nil {
				t.Fatal(err)
			}
			if res != nil {
				if res.Height != h || res.Result.Code != uint32(h) {
					t.Errorf("transaction of block %d indexed at %d with code %d", h, res.Height, res.Result.Code)
				}
				got = append(got, fmt.Sprintf("tx %d", h))
			}
		}
		return strings.Join(got, " ")
	}

	n, err := reindexUnindexed(conf, provider, logger, top)
	if err != nil || n != 3 {
		t.Fatalf("reindexed %d blocks (%v), want 3 to 5, past the pruned 1 and 2; log:\n%s", n, err, logged.Bytes())
	}
	if got, want := indexed(), "block 3 tx 3 block 4 tx 4 block 5 tx 5"; got != want {
		t.Errorf("indexed: %s, want %s", got, want)
	}
	if out := logged.String(); strings.Count(out, gone) != 1 ||
		!strings.Contains(out, "blocks=2 transactions=2 from=1 to=2") || !strings.Contains(out, "pruned") {
		t.Errorf("the log does not say once that blocks 1 and 2 (2 transactions) were skipped, and why:\n%s", out)
	}

	// A second start finds block 5 indexed and stops there: nothing to do,
	// nothing to report again.
	logged.Reset()
	if n, err := reindexUnindexed(conf, provider, logger, top); err != nil || n != 0 || strings.Contains(logged.String(), gone) {
		t.Fatalf("a second start reindexed %d blocks (%v); log:\n%s", n, err, logged.Bytes())
	}

	// With discard_abci_responses only the newest block's results count:
	// it is indexed, the blocks below are skipped, and the log names the
	// setting.
	dbs["tx_index"] = dbm.NewMemDB()
	conf.Storage.DiscardABCIResponses = true
	logged.Reset()
	if n, err := reindexUnindexed(conf, provider, logger, top); err != nil || n != 1 {
		t.Fatalf("with discard_abci_responses, reindexed %d blocks (%v), want the newest; log:\n%s", n, err, logged.Bytes())
	}
	if got, want := indexed(), "block 5 tx 5"; got != want {
		t.Errorf("with discard_abci_responses, indexed: %s, want %s", got, want)
	}
	if out := logged.String(); strings.Count(out, gone) != 1 ||
		!strings.Contains(out, "blocks=4 transactions=4 from=1 to=4") || !strings.Contains(out, "discard_abci_responses = true") {
		t.Errorf("with discard_abci_responses, the log does not say once that blocks 1 to 4 were skipped, and why:\n%s", out)
	}
}
