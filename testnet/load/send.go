package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emrchain/emrchain/internal/ctxtime"
)

// Pauses of a worker. A full mempool is retried after fullBackoff, doubled
// on every further "full" up to maxFullBackoff: the nodes have enough queued
// then, and a tight retry loop would only burn the CPU they share with the
// load.
const (
	fullBackoff    = 10 * time.Millisecond
	maxFullBackoff = 160 * time.Millisecond
	errorBackoff   = 100 * time.Millisecond // after a transport error
	// rateTick is the least time between two batches of a worker at a
	// target rate: what fell due meanwhile goes in one request, at the
	// cost of at most this much added latency.
	rateTick = 20 * time.Millisecond
)

// sendStats counts what the sender did.
type sendStats struct {
	attempts  atomic.Int64
	accepted  atomic.Int64
	full      atomic.Int64 // "mempool is full" answers (retried)
	inCache   atomic.Int64 // already in the node's cache: counted as accepted
	rpcErrors atomic.Int64 // transport or unexpected RPC errors (retried)
	skipped   atomic.Int64 // not sent: an earlier tx of the signer was rejected
	unsent    atomic.Int64 // not sent: the time was up

	mu        sync.Mutex
	rejected  map[string]int    // CheckTx code -> count
	sampleLog map[string]string // code -> one log line
	firstErr  string            // the first of rpcErrors
}

func newSendStats() *sendStats {
	return &sendStats{rejected: map[string]int{}, sampleLog: map[string]string{}}
}

// rpcError counts a transport or unexpected RPC error; the first is kept
// for the report.
func (s *sendStats) rpcError(err error) {
	s.rpcErrors.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstErr == "" {
		s.firstErr = err.Error()
	}
}

func (s *sendStats) firstError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstErr
}

// errorText is ", N rpc errors, the first: ..." when there were any.
func (s *sendStats) errorText() string {
	n := s.rpcErrors.Load()
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d rpc errors, the first: %s", n, s.firstError())
}

func (s *sendStats) reject(code, log string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected[code]++
	if _, ok := s.sampleLog[code]; !ok {
		s.sampleLog[code] = log
	}
}

// sender sends planned txs to the nodes: every signer is pinned to one node
// and one worker, which sends that signer's txs in order.
type sender struct {
	nodes []submitter
	conns int // workers per node
	stats *sendStats
}

// send sends txs until they are all sent or the deadline passes. rate > 0
// sends on one global schedule: the i-th tx of txs is due i/rate after the
// start, whichever worker has it, so the whole plan's rate is offered as
// long as the workers keep up (pacing each worker's own list instead
// offered less once the shorter lists ran dry: signers do not spread
// evenly over workers). At a rate, the txs due after end are not sent,
// and those due by end are sent until the deadline, which may lie past
// end: a tx held in the sender behind a stalled node is still sent after
// end, so its latency is measured rather than cut off. rate == 0 sends as
// fast as the nodes answer, until the deadline (end is not used). At the
// deadline no new batch starts; a batch already sent finishes under its
// own RPC timeout and is booked as answered. send returns when every
// worker is done.
func (s *sender) send(ctx context.Context, txs []*plannedTx, rate float64, end, deadline time.Time) {
	workers := len(s.nodes) * s.conns
	lists := make([][]*plannedTx, workers)
	start := time.Now()
	for i, t := range txs {
		if rate > 0 {
			// The latency clock of a tx at a rate starts when it is due,
			// not when it goes out: time spent waiting in the sender (a
			// stalled node, a full mempool) is part of its latency.
			t.dueNs = start.Add(dueAfter(i, rate)).UnixNano()
			if t.dueNs > end.UnixNano() {
				// Not due in the run, nor any after it.
				s.stats.unsent.Add(int64(len(txs) - i))
				break
			}
		}
		w := s.workerOf(int(t.signer))
		lists[w] = append(lists[w], t)
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var wg sync.WaitGroup
	for w, list := range lists {
		if len(list) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(ctx, dctx, s.nodes[w%len(s.nodes)], list, rate)
		}()
	}
	wg.Wait()
}

// dueAfter is when the i-th tx of a plan sent at rate tx/s is due, after
// the start. At most MaxDuration, which no run outlasts: a tiny rate must
// not overflow the Duration into a negative one.
func dueAfter(i int, rate float64) time.Duration {
	return time.Duration(min(float64(i)/rate*float64(time.Second), float64(MaxDuration)))
}

// workerOf pins a signer: node signer%nodes, worker (signer/nodes)%conns.
func (s *sender) workerOf(signer int) int {
	n := len(s.nodes)
	return (signer/n%s.conns)*n + signer%n
}

// worker sends its queue in order, on its own line to its node, in batches
// of up to maxBatch broadcasts: what is due (at a target rate, by the
// dueNs send gave each tx) goes out together. A tx the node did
// not take (mempool full, an RPC error) is sent again, at the head of the
// next batch, together with every later tx of its signer in the batch (a
// signer's txs must reach the mempool in sequence order). dctx ends at the
// deadline: no batch starts after it; ctx bounds the requests themselves
// (with the RPC timeout), so a batch in flight at the deadline still gets
// its answers.
func (s *sender) worker(ctx, dctx context.Context, n submitter, queue []*plannedTx, rate float64) {
	conn := n.line()
	defer conn.close()
	broken := map[int32]bool{}
	var (
		raws  [][]byte
		batch []*plannedTx
	)
	backoff := fullBackoff
	var lastBatch time.Time
	for len(queue) > 0 {
		if rate > 0 {
			ctxtime.Sleep(dctx, time.Until(lastBatch.Add(rateTick)))
		}
		if dctx.Err() != nil {
			s.stats.unsent.Add(int64(len(queue)))
			for _, t := range queue {
				if broken[t.signer] { // never to be sent: no latency
					t.refused.Store(true)
				}
			}
			return
		}
		// The batch: the txs at the head of the queue that are due.
		batch, raws = batch[:0], raws[:0]
		passNs := time.Now().UnixNano()
		for len(queue) > 0 && len(batch) < maxBatch {
			t := queue[0]
			if broken[t.signer] {
				s.stats.skipped.Add(1)
				t.refused.Store(true)
				queue = queue[1:]
				continue
			}
			if rate > 0 && t.dueNs > passNs {
				break
			}
			batch = append(batch, t)
			raws = append(raws, t.raw)
			queue = queue[1:]
		}
		if len(batch) == 0 {
			if len(queue) > 0 {
				ctxtime.Sleep(dctx, time.Until(time.Unix(0, queue[0].dueNs)))
			}
			continue
		}
		lastBatch = time.Now()
		now := lastBatch.UnixNano()
		for _, t := range batch {
			// The first attempt: a retry keeps it.
			t.sendNs.CompareAndSwap(0, now)
		}
		s.stats.attempts.Add(int64(len(batch)))
		outs, err := conn.broadcastBatch(ctx, raws)
		if err != nil {
			queue = append(batch[:len(batch):len(batch)], queue...)
			if dctx.Err() != nil {
				continue // counted as unsent above
			}
			s.stats.rpcError(err)
			ctxtime.Sleep(dctx, errorBackoff)
			continue
		}
		retry, full, failed := s.settle(batch, outs, broken)
		queue = append(retry, queue...)
		switch {
		case full:
			ctxtime.Sleep(dctx, backoff)
			backoff = min(2*backoff, maxFullBackoff)
		case failed:
			// A node that refuses txs (catching up, stopping) is not
			// asked again at once, as after a failed batch.
			ctxtime.Sleep(dctx, errorBackoff)
		case len(retry) == 0:
			backoff = fullBackoff
		}
	}
}

// settle books a batch's answers and returns, in order, the txs to send
// again, whether the mempool was full, and whether the node failed a tx
// otherwise (an RPC error of its own).
func (s *sender) settle(batch []*plannedTx, outs []outcome, broken map[int32]bool) (retry []*plannedTx, full, failed bool) {
	stalled := map[int32]bool{} // signers with a tx of this batch not taken
	for j, t := range batch {
		o := outs[j]
		switch {
		case broken[t.signer]:
			// Refused after an earlier tx of its signer was rejected.
			s.stats.skipped.Add(1)
			t.refused.Store(true)
		case stalled[t.signer]:
			retry = append(retry, t)
		case o.err == nil && o.res.Code == 0:
			t.accepted.Store(true)
			s.stats.accepted.Add(1)
		case o.err == nil:
			s.stats.reject(codeKey(o.res.Codespace, o.res.Code), o.res.Log)
			t.refused.Store(true)
			broken[t.signer] = true
		case isInCache(o.err):
			// Sent before (a retry after a lost answer): it is in the
			// mempool or committed already.
			t.accepted.Store(true)
			s.stats.inCache.Add(1)
			s.stats.accepted.Add(1)
		case isMempoolFull(o.err):
			s.stats.full.Add(1)
			full = true
			stalled[t.signer] = true
			retry = append(retry, t)
		default:
			s.stats.rpcError(o.err)
			failed = true
			stalled[t.signer] = true
			retry = append(retry, t)
		}
	}
	return retry, full, failed
}
