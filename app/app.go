package app

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// Options tune an App; none of them changes what it computes.
type Options struct {
	// SigCacheSize bounds the cache of decoded, signature-verified
	// transactions in entries (about 1 KiB each for the load's mix; the
	// cache also holds at most 256 MiB, whatever their size).
	SigCacheSize int
	// OnPruneError hears of a pruning that failed after its block was
	// committed (store.ErrPruneFailed). Housekeeping does not halt the
	// chain: the block stands, and the next prune point retries. Nil: the
	// failure goes unreported.
	OnPruneError func(error)
}

// DefaultOptions suits a node whose mempool holds up to ten thousand
// transactions: each is decoded and verified once, from CheckTx to
// FinalizeBlock, as long as the cache holds it.
func DefaultOptions() Options { return Options{SigCacheSize: 50_000} }

// App is the state machine over one store. Its methods are safe for
// concurrent use; they are serialized internally.
type App struct {
	mu           sync.Mutex
	store        *store.Store
	sigs         *sigCache
	onPruneError func(error) // Options.OnPruneError

	// chainID is fixed at genesis; params change by proposal, from the
	// block after the one that executes it.
	chainID string
	params  *emrv1.Params

	// last is the last committed block; CheckTx runs at its time.
	last BlockInfo
	// check is CheckTx's view: the last committed state plus the effects
	// of the transactions CheckTx accepted since.
	check *store.Cache
	// executed is the last proposal executed (by PrepareProposal or
	// ProcessProposal) and not yet finalized: FinalizeBlock reuses it when
	// the decided block is the same, instead of executing it again.
	executed *executedBlock
	// pending is the block finalized and not yet committed,
	// pendingValidators the validator changes it makes, pendingParams
	// the params it sets and pendingConsensus CometBFT's limits it
	// changes (nil: unchanged).
	pending           *BlockInfo
	pendingValidators []*emrv1.Validator
	pendingParams     *emrv1.Params
	pendingConsensus  *emrv1.ConsensusLimits
}

// executedBlock is a block's transactions executed into a cache over the
// committed state.
type executedBlock struct {
	info    BlockInfo
	txsHash [32]byte
	cache   *store.Cache
	results []Result
}

// New opens the state machine over st, resuming from st's last commit.
func New(st *store.Store, opts Options) (*App, error) {
	if opts.SigCacheSize == 0 {
		opts.SigCacheSize = DefaultOptions().SigCacheSize
	}
	a := &App{store: st, sigs: newSigCache(opts.SigCacheSize), onPruneError: opts.OnPruneError}
	if version, _ := st.LastCommit(); version > 0 {
		r, err := st.ReaderAt(version)
		if err != nil {
			return nil, fmt.Errorf("open committed state at %d: %w", version, err)
		}
		b, err := readBookkeeping(r, version)
		if err != nil {
			return nil, err
		}
		a.chainID, a.params, a.last = b.chainID, b.params, b.last
	}
	if err := a.resetCheckState(); err != nil {
		return nil, err
	}
	return a, nil
}

// bookkeeping is what the app keeps in memory of the committed state.
type bookkeeping struct {
	chainID string
	params  *emrv1.Params
	last    BlockInfo
}

// readBookkeeping reads the chain id, the params and the last block record
// of committed version from r, and checks that the record is of that
// version's block or an earlier one.
func readBookkeeping(r store.Reader, version int64) (bookkeeping, error) {
	var b bookkeeping
	s := state{store.ReadOnly(r)}
	var err error
	if b.chainID, err = s.chainID(); err != nil {
		return b, fmt.Errorf("read chain id: %w", err)
	}
	if b.params, err = s.params(); err != nil {
		return b, fmt.Errorf("read params: %w", err)
	}
	height, t, err := s.lastBlock()
	if err != nil {
		return b, fmt.Errorf("read last block: %w", err)
	}
	if height > version {
		return b, fmt.Errorf("state at version %d records block %d: store and chain disagree", version, height)
	}
	// Blocks after the recorded one changed nothing: the state is block
	// version's, and its time is the last recorded one until the next
	// block (only CheckTx reads it).
	b.last = BlockInfo{Height: version, Time: t}
	return b, nil
}

// ChainID is the chain id fixed at InitChain ("" before).
func (a *App) ChainID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.chainID
}

// Params are the consortium parameters (nil before InitChain).
func (a *App) Params() *emrv1.Params {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.params
}

// LastCommit is the height and app hash of the last commit.
func (a *App) LastCommit() (int64, []byte) {
	return a.store.LastCommit()
}

// InitChain writes the genesis state (appState is protojson of
// GenesisState), the genesis validators and CometBFT's block and evidence
// limits of the genesis (consensus; nil: CometBFT's defaults) into the
// working tree; it is committed with block 1.
func (a *App) InitChain(chainID string, appState []byte, genesisTime time.Time, validators []*emrv1.Validator, consensus *emrv1.ConsensusLimits) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if version, _ := a.store.LastCommit(); version > 0 {
		return nil, fmt.Errorf("InitChain on a chain already at height %d", version)
	}
	if chainID == "" {
		return nil, fmt.Errorf("%w: empty chain id", ErrInvalidGenesis)
	}
	g, err := ParseGenesis(appState)
	if err != nil {
		return nil, err
	}
	if err := validateGenesisValidators(validators); err != nil {
		return nil, err
	}
	if err := takeConsensusLimits(g.Params, consensus); err != nil {
		return nil, err
	}
	st := state{a.store.Working()}
	if err := initGenesis(st, chainID, g, validators); err != nil {
		return nil, fmt.Errorf("write genesis: %w", err)
	}
	genesis := BlockInfo{Height: 0, Time: genesisTime.UTC()}
	if err := st.setLastBlock(genesis); err != nil {
		return nil, fmt.Errorf("write genesis: %w", err)
	}
	a.chainID, a.params, a.last = chainID, g.Params, genesis
	if err := a.resetCheckState(); err != nil {
		return nil, err
	}
	return a.store.WorkingHash(), nil
}

// CheckTx runs tx against the check state at the last block's time; an
// accepted tx's effects stay in the check state (so a signer's next tx
// needs the next sequence) until the next Commit resets it. Recheck is the
// same check after a block.
func (a *App) CheckTx(tx []byte, recheck bool) Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.params == nil {
		return resultOf(fmt.Errorf("%w: the chain has no genesis yet", ErrNotEnabled))
	}
	b := BlockInfo{Height: a.last.Height + 1, Time: a.last.Time}
	res, err := a.execTx(a.check, b, tx, nil, false)
	if err != nil {
		// A storage fault in the check state rejects the tx; consensus
		// will hit (and halt on) the same fault if it is real.
		res = resultOf(fmt.Errorf("%w: %v", ErrInternal, err))
	}
	if !res.OK() {
		// Refused, it leaves (or never enters) the mempool, and no honest
		// block holds it: its decoded copy is not kept (sigCache).
		a.sigs.forget(sha256.Sum256(tx))
	}
	return res
}

// PrepareProposal selects, in order, the txs that execute successfully at
// the proposed block and fit in maxTxBytes (CometBFT's proto accounting).
func (a *App) PrepareProposal(b BlockInfo, txs [][]byte, maxTxBytes int64) [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	decoded := a.sigs.decodeAndPreverify(txs, a.chainID)
	cache := store.NewCache(a.store.Working())
	var (
		selected [][]byte
		results  []Result
		size     int64
	)
	for i, tx := range txs {
		n := protoSizeOfTx(tx)
		if size+n > maxTxBytes {
			continue
		}
		res, err := a.execTx(cache, b, tx, decoded[i], true)
		if err != nil || !res.OK() {
			continue
		}
		size += n
		selected = append(selected, tx)
		results = append(results, res)
	}
	a.executed = &executedBlock{info: b, txsHash: hashTxs(selected), cache: cache, results: results}
	return selected
}

// ProcessProposal accepts a block only if every tx in it executes
// successfully at the block's height and time.
func (a *App) ProcessProposal(b BlockInfo, txs [][]byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reusable(b, txs) != nil {
		return nil // we proposed it: every tx was checked in PrepareProposal
	}
	ex, err := a.executeBlock(b, txs)
	if err != nil {
		return err
	}
	for i, res := range ex.results {
		if !res.OK() {
			return fmt.Errorf("tx %d (%X) is invalid: %s", i, TxHash(txs[i]), res.Log)
		}
	}
	a.executed = ex
	return nil
}

// FinalizeBlock executes a decided block into the working tree and returns
// the results and the new app hash. A failed tx gets its code (a correct
// proposer never includes one, ProcessProposal refuses them, but a block
// decided anyway must still be executed deterministically). An error means
// a storage fault: the node must halt.
func (a *App) FinalizeBlock(b BlockInfo, txs [][]byte) ([]Result, []byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending != nil {
		return nil, nil, fmt.Errorf("FinalizeBlock %d while block %d awaits Commit", b.Height, a.pending.Height)
	}
	if want := a.last.Height + 1; b.Height != want {
		return nil, nil, fmt.Errorf("FinalizeBlock at height %d, expected %d", b.Height, want)
	}
	ex := a.reusable(b, txs)
	if ex == nil {
		var err error
		if ex, err = a.executeBlock(b, txs); err != nil {
			return nil, nil, err
		}
	}
	a.executed = nil
	if err := markSigned(state{ex.cache}, b); err != nil {
		return nil, nil, fmt.Errorf("block %d: record the validators that signed: %w", b.Height, err)
	}
	// A block that changes nothing leaves the tree, and so the app hash,
	// as it was: CometBFT then waits for transactions (up to
	// create_empty_blocks_interval) instead of making a block to carry a
	// new hash, which an idle chain would do forever, twice a second.
	if ex.cache.Len() > 0 {
		if err := (state{ex.cache}).setLastBlock(b); err != nil {
			return nil, nil, fmt.Errorf("record block: %w", err)
		}
	}
	updates, err := a.validatorUpdates(ex)
	if err != nil {
		return nil, nil, fmt.Errorf("block %d: %w", b.Height, err)
	}
	var params *emrv1.Params
	if slices.ContainsFunc(ex.results, func(r Result) bool { return r.OK() && r.ParamsChanged }) {
		if params, err = (state{ex.cache}).params(); err != nil {
			return nil, nil, fmt.Errorf("block %d: params after it: %w", b.Height, err)
		}
	}
	if err := ex.cache.Write(); err != nil {
		return nil, nil, fmt.Errorf("write block %d: %w", b.Height, err)
	}
	a.pending, a.pendingValidators, a.pendingParams = &b, updates, params
	a.pendingConsensus = consensusUpdate(a.params, params)
	return ex.results, a.store.WorkingHash(), nil
}

// Commit persists the finalized block and resets the check state. It
// returns the height below which CometBFT may prune blocks: always 0. The
// blocks are the consortium's record of every transaction, what a node
// that joins without state sync replays, and what a sidecar's
// reference index is rebuilt from; pruning the state's old versions
// (store.Options.KeepRecent) must not take them with it.
func (a *App) Commit() (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending == nil {
		return 0, errors.New("Commit without a finalized block")
	}
	_, version, err := a.store.Commit()
	if errors.Is(err, store.ErrPruneFailed) {
		if a.onPruneError != nil {
			a.onPruneError(err)
		}
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("commit block %d: %w", a.pending.Height, err)
	}
	if version != a.pending.Height {
		return 0, fmt.Errorf("committed version %d for block %d", version, a.pending.Height)
	}
	if a.pendingParams != nil {
		a.params = a.pendingParams
	}
	a.last, a.pending, a.pendingValidators, a.pendingParams, a.pendingConsensus = *a.pending, nil, nil, nil, nil
	if err := a.resetCheckState(); err != nil {
		return 0, err
	}
	return 0, nil
}

// ValidatorUpdates are the changes to the validator set the block
// finalized last (and not yet committed) makes, for CometBFT: one per key
// whose power differs at the block's end from its start, ordered by key.
func (a *App) ValidatorUpdates() []*emrv1.Validator {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pendingValidators
}

// ConsensusUpdate is the change to CometBFT's block and evidence limits
// the block finalized last (and not yet committed) makes, for CometBFT to
// apply from the next block, as the params: nil when none.
func (a *App) ConsensusUpdate() *emrv1.ConsensusLimits {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pendingConsensus
}

// validatorUpdates compares the validator set before the executed block ex
// (the working tree, ex not yet written) with after it; only when one of
// its transactions changed the set.
func (a *App) validatorUpdates(ex *executedBlock) ([]*emrv1.Validator, error) {
	touched := false
	for _, r := range ex.results {
		touched = touched || r.OK() && len(r.ValidatorUpdates) > 0
	}
	if !touched {
		return nil, nil
	}
	before, err := state{a.store.Working()}.validators()
	if err != nil {
		return nil, fmt.Errorf("validators before: %w", err)
	}
	after, err := state{ex.cache}.validators()
	if err != nil {
		return nil, fmt.Errorf("validators after: %w", err)
	}
	return validatorDiff(before, after), nil
}

// executeBlock runs txs in a cache over the committed state.
func (a *App) executeBlock(b BlockInfo, txs [][]byte) (*executedBlock, error) {
	decoded := a.sigs.decodeAndPreverify(txs, a.chainID)
	cache := store.NewCache(a.store.Working())
	results := make([]Result, len(txs))
	for i, tx := range txs {
		res, err := a.execTx(cache, b, tx, decoded[i], true)
		if err != nil {
			return nil, fmt.Errorf("block %d tx %d: %w", b.Height, i, err)
		}
		results[i] = res
	}
	return &executedBlock{info: b, txsHash: hashTxs(txs), cache: cache, results: results}, nil
}

// reusable returns the executed proposal if it is exactly block (b, txs).
func (a *App) reusable(b BlockInfo, txs [][]byte) *executedBlock {
	ex := a.executed
	if ex == nil || ex.info.Height != b.Height || !ex.info.Time.Equal(b.Time) || ex.txsHash != hashTxs(txs) {
		return nil
	}
	return ex
}

func (a *App) resetCheckState() error {
	version, _ := a.store.LastCommit()
	if version == 0 {
		// Before the first commit the genesis lives only in the working
		// tree; CheckTx reads it there (and never writes it).
		a.check = store.NewCache(store.ReadOnly(a.store.Working()))
		return nil
	}
	r, err := a.store.ReaderAt(version)
	if err != nil {
		return fmt.Errorf("check state at %d: %w", version, err)
	}
	a.check = store.NewCache(store.ReadOnly(r))
	return nil
}

func hashTxs(txs [][]byte) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, tx := range txs {
		binary.BigEndian.PutUint64(n[:], uint64(len(tx)))
		h.Write(n[:])
		h.Write(tx)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// protoSizeOfTx is the bytes one tx adds to a block's Data in CometBFT's
// accounting (types.ComputeProtoSizeForTxs): tag, length varint, bytes.
func protoSizeOfTx(tx []byte) int64 { return protoSizeOfTxLen(uint64(len(tx))) }

// protoSizeOfTxLen is protoSizeOfTx for a tx of n bytes.
func protoSizeOfTxLen(n uint64) int64 {
	return int64(1+len(binary.AppendUvarint(nil, n))) + int64(n)
}

// Simulate executes tx as the next block at time t, against the committed
// state, and discards the effects: a dry run (e.g. "would this be
// authorized at that time?").
func (a *App) Simulate(t time.Time, tx []byte) (Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cache := store.NewCache(a.store.Working())
	defer cache.Discard()
	return a.execTx(cache, BlockInfo{Height: a.last.Height + 1, Time: t}, tx, nil, true)
}
