package main

import (
	"errors"
	"fmt"

	dbm "github.com/cometbft/cometbft-db"
	abcitypes "github.com/cometbft/cometbft/abci/types"
	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/libs/log"
	sm "github.com/cometbft/cometbft/state"
	blockidxkv "github.com/cometbft/cometbft/state/indexer/block/kv"
	"github.com/cometbft/cometbft/state/txindex"
	"github.com/cometbft/cometbft/state/txindex/kv"
	cmtstore "github.com/cometbft/cometbft/store"
	cmttypes "github.com/cometbft/cometbft/types"
)

// maxReindexAtStart bounds how many blocks start indexes again: a crash
// leaves the last few unindexed, not thousands. A variable for a test.
var maxReindexAtStart = 1000

// reindexUnindexed indexes the newest blocks that the tx index lacks, and
// returns how many. CometBFT indexes a block from an event after it
// committed it, and never again: a node killed between the two keeps the
// block and its results, but tx_search and /tx do not find its
// transactions, so a client that resends one is told "wrong sequence"
// instead of its result (testnet's random kills hit this). Start runs this
// before the node opens its databases; it walks down from the newest block
// while a block or its last transaction is missing from the index.
// appHeight is the app's last commit: with none, there is nothing to
// index and no database is opened. A block whose results are gone is
// skipped, not a reason to stop (see skippedResults).
func reindexUnindexed(conf *cmtcfg.Config, dbProvider cmtcfg.DBProvider, logger log.Logger, appHeight int64) (n int, err error) {
	if conf.TxIndex.Indexer != "kv" || appHeight == 0 {
		return 0, nil
	}
	open := func(id string) (dbm.DB, error) {
		db, err := dbProvider(&cmtcfg.DBContext{ID: id, Config: conf})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", id, err)
		}
		return db, nil
	}
	var dbs []dbm.DB
	defer func() {
		for _, db := range dbs {
			err = errors.Join(err, db.Close())
		}
	}()
	bsDB, err := open("blockstore")
	if err != nil {
		return 0, err
	}
	dbs = append(dbs, bsDB)
	stateDB, err := open("state")
	if err != nil {
		return 0, err
	}
	dbs = append(dbs, stateDB)
	indexDB, err := open("tx_index")
	if err != nil {
		return 0, err
	}
	dbs = append(dbs, indexDB)
	blocks := cmtstore.NewBlockStore(bsDB, cmtstore.WithDBKeyLayout(conf.Storage.ExperimentalKeyLayout))
	states := sm.NewStore(stateDB, sm.StoreOptions{
		DiscardABCIResponses: conf.Storage.DiscardABCIResponses,
		DBKeyLayout:          conf.Storage.ExperimentalKeyLayout,
	})
	txIdx := kv.NewTxIndex(indexDB)
	blockIdx := blockidxkv.New(dbm.NewPrefixDB(indexDB, []byte("block_events")))

	// CometBFT stores a block before it executes it: above the state's
	// last height, a block has no results yet (and was never indexed).
	state, err := states.Load()
	if err != nil {
		return 0, fmt.Errorf("load the consensus state: %w", err)
	}
	top, base := min(blocks.Height(), state.LastBlockHeight), blocks.Base()
	var missing []int64 // newest first
	for h := top; h >= base && h > 0; h-- {
		if len(missing) == maxReindexAtStart {
			logger.Error("the tx index lacks more blocks than start indexes again; index the rest with CometBFT's reindex-event",
				"from", base, "to", h)
			break
		}
		block, _ := blocks.LoadBlock(h)
		if block == nil {
			return 0, fmt.Errorf("block %d is not in the block store (base %d, height %d)", h, base, top)
		}
		indexed, err := blockIdx.Has(h)
		if err != nil {
			return 0, fmt.Errorf("tx index, block %d: %w", h, err)
		}
		if indexed && len(block.Txs) > 0 {
			// The block is indexed before its transactions.
			last, err := txIdx.Get(block.Txs[len(block.Txs)-1].Hash())
			if err != nil {
				return 0, fmt.Errorf("tx index, block %d: %w", h, err)
			}
			indexed = last != nil
		}
		if indexed {
			break
		}
		missing = append(missing, h)
	}
	var skipped skippedResults
	defer func() { skipped.log(logger, conf.Storage.DiscardABCIResponses) }()
	var from, to int64 // the oldest and the newest block indexed
	for i := len(missing) - 1; i >= 0; i-- {
		h := missing[i]
		block, _ := blocks.LoadBlock(h)
		if block == nil {
			return n, fmt.Errorf("block %d is not in the block store", h)
		}
		// With [storage] discard_abci_responses only the last block's
		// results are kept, under their own key.
		load := states.LoadFinalizeBlockResponse
		if h == state.LastBlockHeight {
			load = states.LoadLastFinalizeBlockResponse
		}
		resp, err := load(h)
		var pruned sm.ErrNoABCIResponsesForHeight
		if errors.Is(err, sm.ErrFinalizeBlockResponsesNotPersisted) || errors.As(err, &pruned) {
			// Results are lost oldest first (discard_abci_responses
			// keeps only the last block's, pruning deletes from the
			// bottom up, and a node that stopped discarding keeps them
			// from then on), so the blocks above this one may well have
			// theirs: index those rather than leave every transaction
			// after the gap unfindable by hash.
			skipped.add(h, len(block.Txs))
			continue
		}
		if err != nil {
			return n, fmt.Errorf("results of block %d: %w", h, err)
		}
		if len(resp.TxResults) != len(block.Txs) {
			return n, fmt.Errorf("block %d has %d transactions and %d results", h, len(block.Txs), len(resp.TxResults))
		}
		batch := txindex.NewBatch(int64(len(block.Txs)))
		for j, res := range resp.TxResults {
			if err := batch.Add(&abcitypes.TxResult{Height: h, Index: uint32(j), Tx: block.Txs[j], Result: *res}); err != nil {
				return n, fmt.Errorf("index block %d tx %d: %w", h, j, err)
			}
		}
		if err := blockIdx.Index(cmttypes.EventDataNewBlockEvents{Height: h, Events: resp.Events, NumTxs: int64(len(block.Txs))}); err != nil {
			return n, fmt.Errorf("index block %d: %w", h, err)
		}
		if err := txIdx.AddBatch(batch); err != nil {
			return n, fmt.Errorf("index the transactions of block %d: %w", h, err)
		}
		if n == 0 {
			from = h
		}
		to = h
		n++
	}
	if n > 0 {
		logger.Info("indexed blocks the tx index lacked (a stop between a commit and its indexing)",
			"blocks", n, "from", from, "to", to)
	}
	return n, nil
}

// skippedResults counts the blocks reindexUnindexed could not index because
// their FinalizeBlock results are gone: a transaction's result (code,
// events) is what the tx index stores, and only the block's results hold
// it. Nothing brings them back, so the skip is logged once and the start
// goes on. The next start does not see these blocks again: it stops at the
// newest indexed block, and the newest executed block always has its
// results (CometBFT keeps them for crash recovery).
type skippedResults struct {
	blocks, txs int
	from, to    int64
}

func (s *skippedResults) add(height int64, txs int) {
	if s.blocks == 0 {
		s.from = height
	}
	s.to = height
	s.blocks++
	s.txs += txs
}

func (s *skippedResults) log(logger log.Logger, discard bool) {
	if s.blocks == 0 {
		return
	}
	why := "their results were pruned, or discarded while [storage] discard_abci_responses was true"
	if discard {
		why = "config.toml [storage] discard_abci_responses = true keeps only the newest block's results; " +
			"set it to false to keep them from now on (emrcli's verified lookups and the sidecar's sweep read them too)"
	}
	msg := "the tx index lacks blocks whose results are gone: tx_search and /tx on this node will not find their transactions; " +
		"look them up on a node that kept the results, or read them (without results) from /block?height=N"
	fields := []any{"blocks", s.blocks, "transactions", s.txs, "from", s.from, "to", s.to, "why", why}
	if s.txs == 0 {
		// No transaction is lost, only the blocks' own events
		// (block_search).
		logger.Info(msg, fields...)
		return
	}
	logger.Error(msg, fields...)
}
