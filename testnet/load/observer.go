package load

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cometbft/cometbft/test/loadtime/payload"

	"github.com/emrchain/emrchain/internal/ctxtime"
)

// pollInterval is how often the observer asks for the next block while
// none is there: it bounds the error of an observed commit time.
const pollInterval = 20 * time.Millisecond

// resultsWait bounds the wait for a block's results after the block.
const resultsWait = 30 * time.Second

// blockStat is one block as the observer saw it.
type blockStat struct {
	Height   int64
	Time     time.Time // header (BFT) time
	Observed time.Time // when the observer got it
	Executed time.Time // when its results were there (zero: never)
	Txs      int
	Bytes    int
	Ours     int // txs of this load (or loadtime payloads, when watching)
	Failed   int // txs of this load committed with a non-zero code
	// Unknown: txs of this load whose outcome is unknown (the block's
	// results never came); neither successes nor failures.
	Unknown int
	// Round is the consensus round the block was decided in, from the
	// next block's last commit (0 until that is seen): after round 0, a
	// proposal was missed or late (timeout_propose) or the votes split.
	Round int32
}

// succeeded is how many of the load's txs in the block succeeded.
func (b *blockStat) succeeded() int { return b.Ours - b.Failed - b.Unknown }

// observer follows one node's blocks and matches their transactions to
// the planned ones.
type observer struct {
	rpc *rpc
	// payloadTimes: take the send time of a transaction from its loadtime
	// payload (CometBFT's load tool) instead of the planned txs.
	payloadTimes bool

	mu        sync.Mutex
	index     map[[32]byte]*plannedTx
	blocks    []blockStat
	foreign   int
	committed int // planned txs seen committed
	// watched: loadtime txs seen, with their latencies.
	watched []watchedTx
	failed  map[string]int // committed with a code, by code
	errs    int            // RPC errors while following
	lastErr error
	next    int64
	changed chan struct{} // closed and replaced on every block
}

// watchedTx is a committed transaction that was not planned here.
type watchedTx struct {
	sendNs, commitNs int64
}

func newObserver(c *rpc, payloadTimes bool) *observer {
	return &observer{rpc: c, payloadTimes: payloadTimes, index: map[[32]byte]*plannedTx{}, failed: map[string]int{}, changed: make(chan struct{})}
}

// track makes txs known to the observer; call it before sending them.
func (o *observer) track(txs []*plannedTx) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range txs {
		o.index[t.hash] = t
	}
}

// start finds the latest height; the observer follows from the block after.
func (o *observer) start(ctx context.Context) error {
	h, err := o.rpc.latestHeight(ctx)
	if err != nil {
		return err
	}
	o.next = h + 1
	return nil
}

// run follows blocks until ctx ends. A block counts as committed when the
// node first serves it: CometBFT stores a block once +2/3 have precommitted
// it, before it executes it. Its results (the txs' codes) come later, once
// the node has executed it; a second goroutine waits for them, so a slow
// execution never delays the sighting of the next block. When ctx ends,
// the blocks already seen still get their results (for at most
// resultsWait) before run returns.
func (o *observer) run(ctx context.Context) {
	type seenBlock struct {
		h    int64
		b    *block
		seen time.Time
	}
	pending := make(chan seenBlock, 4096)
	done := make(chan struct{})
	// After ctx ends, all remaining results together get resultsWait.
	final, cancelFinal := context.WithCancel(context.Background())
	defer cancelFinal()
	go func() {
		<-ctx.Done()
		if ctxtime.Sleep(final, resultsWait) == nil {
			cancelFinal()
		}
	}()
	go func() {
		defer close(done)
		for sb := range pending {
			rctx, cancel := context.WithTimeout(final, resultsWait)
			results, err := o.rpc.blockResults(rctx, sb.h)
			for err != nil && rctx.Err() == nil {
				ctxtime.Sleep(rctx, pollInterval)
				results, err = o.rpc.blockResults(rctx, sb.h)
			}
			cancel()
			var executed time.Time
			if err != nil {
				o.noteErr(fmt.Errorf("block_results %d: %w", sb.h, err))
				results = nil
			} else {
				executed = time.Now()
			}
			o.record(sb.h, sb.b, results, sb.seen, executed)
		}
	}()
	defer func() {
		close(pending)
		<-done
	}()
	for ctx.Err() == nil {
		h := o.next
		b, err := o.rpc.block(ctx, h)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !notYet(err) {
				o.noteErr(err)
			}
			ctxtime.Sleep(ctx, pollInterval)
			continue
		}
		select {
		case pending <- seenBlock{h, b, time.Now()}:
		case <-ctx.Done():
			return
		}
		o.next = h + 1
	}
}

func (o *observer) noteErr(err error) {
	o.mu.Lock()
	o.errs++
	o.lastErr = err
	o.mu.Unlock()
}

// notYet recognizes CometBFT's answer for a height it does not have yet.
func notYet(err error) bool {
	var re *rpcError
	return errors.As(err, &re) && (strings.Contains(re.Data, "must be less than or equal to") || strings.Contains(re.Data, "could not find"))
}

// record books a block seen at seen. executed is when its results came
// (results); zero if they never did: the outcome of its txs is unknown.
func (o *observer) record(h int64, b *block, results []txResult, seen, executed time.Time) {
	st := blockStat{Height: h, Time: b.Header.Time, Observed: seen, Executed: executed, Txs: len(b.Data.Txs)}
	seenNs := seen.UnixNano()
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, raw := range b.Data.Txs {
		st.Bytes += len(raw)
		var res txResult
		known := !executed.IsZero() && i < len(results)
		if known {
			res = results[i]
		}
		t := o.index[sha256.Sum256(raw)]
		if t == nil {
			if o.payloadTimes {
				if p, err := payload.FromBytes(raw); err == nil && p.GetTime() != nil {
					st.Ours++
					if o.book(&st, known, res) {
						o.watched = append(o.watched, watchedTx{sendNs: p.GetTime().AsTime().UnixNano(), commitNs: seenNs})
					}
					continue
				}
			}
			o.foreign++
			continue
		}
		if t.commitNs != 0 {
			continue // the same bytes twice: CometBFT would not, but never count twice
		}
		st.Ours++
		t.commitNs, t.height, t.code, t.codeSet = seenNs, h, res.Code, res.Codespace
		o.committed++
		t.unknown = !known
		o.book(&st, known, res)
	}
	if n := len(o.blocks); n > 0 && o.blocks[n-1].Height == h-1 {
		o.blocks[n-1].Round = b.LastCommit.Round
	}
	o.blocks = append(o.blocks, st)
	close(o.changed)
	o.changed = make(chan struct{})
}

// book counts a tx of the load in its block's stat by its outcome: unknown
// (the block's results never came), failed (by code), or a success, which
// it reports. Called with o.mu held.
func (o *observer) book(st *blockStat, known bool, res txResult) (ok bool) {
	switch {
	case !known:
		st.Unknown++
	case res.Code != 0:
		st.Failed++
		o.failed[codeKey(res.Codespace, res.Code)]++
	default:
		return true
	}
	return false
}

func codeKey(codespace string, code uint32) string {
	if codespace == "" {
		return strconv.FormatUint(uint64(code), 10)
	}
	return codespace + "/" + strconv.FormatUint(uint64(code), 10)
}

// topHeight is the highest block the observer saw any of txs in.
func (o *observer) topHeight(txs []*plannedTx) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var top int64
	for _, t := range txs {
		top = max(top, t.height)
	}
	return top
}

// waitCommitted waits until every tx of txs that was accepted is committed,
// or ctx ends. It returns how many are still missing. Call it once txs are
// sent: after every block it looks again only at the txs still missing.
func (o *observer) waitCommitted(ctx context.Context, txs []*plannedTx) int {
	var missing []*plannedTx
	for _, t := range txs {
		if t.accepted.Load() {
			missing = append(missing, t)
		}
	}
	for {
		o.mu.Lock()
		missing = slices.DeleteFunc(missing, func(t *plannedTx) bool { return t.commitNs != 0 })
		ch := o.changed
		o.mu.Unlock()
		if len(missing) == 0 || ctx.Err() != nil {
			return len(missing)
		}
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}
