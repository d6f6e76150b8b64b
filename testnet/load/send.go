package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pauses of a worker. A full mempool is retried after fullBackoff, doubled
// on every further "full" up to maxFullBackoff: the nodes have enough queued
// then, and a tight retry loop would only burn the CPU they share with the
// load.
const (
	fullBackoff    = 10 * time.Millisecond
	maxFullBackoff = 160 * time.Millisecond
	errorBackoff   = 100 * time.Millisecond // after a transport error
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
}

func newSendStats() *sendStats {
	return &sendStats{rejected: map[string]int{}, sampleLog: map[string]string{}}
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
	nodes []*rpc
	conns int // workers per node
	stats *sendStats
}

// send sends txs until they are all sent or the deadline passes. rate > 0
// spreads the sends evenly at rate tx/s in total; rate == 0 sends as fast
// as the nodes answer. It returns when every worker is done.
func (s *sender) send(ctx context.Context, txs []*plannedTx, rate float64, deadline time.Time) {
	workers := len(s.nodes) * s.conns
	lists := make([][]*plannedTx, workers)
	for _, t := range txs {
		w := s.workerOf(int(t.signer))
		lists[w] = append(lists[w], t)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var wg sync.WaitGroup
	for w, list := range lists {
		if len(list) == 0 {
			continue
		}
		var interval time.Duration
		if rate > 0 {
			interval = time.Duration(float64(time.Second) * float64(workers) / rate)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(ctx, s.nodes[w%len(s.nodes)], list, interval)
		}()
	}
	wg.Wait()
}

// workerOf pins a signer: node signer%nodes, worker (signer/nodes)%conns.
func (s *sender) workerOf(signer int) int {
	n := len(s.nodes)
	return (signer/n%s.conns)*n + signer%n
}

func (s *sender) worker(ctx context.Context, node *rpc, list []*plannedTx, interval time.Duration) {
	broken := map[int32]bool{}
	var buf []byte
	backoff := fullBackoff
	start := time.Now()
	for i, t := range list {
		if ctx.Err() != nil {
			s.stats.unsent.Add(int64(len(list) - i))
			return
		}
		if broken[t.signer] {
			s.stats.skipped.Add(1)
			continue
		}
		if interval > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				sleepCtx(ctx, wait)
			}
		}
		ok, rejected := s.sendOne(ctx, node, t, &buf, &backoff)
		switch {
		case rejected:
			broken[t.signer] = true
		case !ok:
			s.stats.unsent.Add(int64(len(list) - i))
			return
		}
	}
}

// sendOne sends t until the node takes it, refuses it with a code, or ctx
// ends. It reports whether t was accepted and whether it was rejected.
func (s *sender) sendOne(ctx context.Context, node *rpc, t *plannedTx, buf *[]byte, backoff *time.Duration) (ok, rejected bool) {
	for ctx.Err() == nil {
		t.sendNs.Store(time.Now().UnixNano())
		s.stats.attempts.Add(1)
		res, b, err := node.broadcast(ctx, t.raw, *buf)
		*buf = b
		switch {
		case err == nil && res.Code == 0:
			t.accepted.Store(true)
			s.stats.accepted.Add(1)
			*backoff = fullBackoff
			return true, false
		case err == nil:
			s.stats.reject(codeKey(res.Codespace, res.Code), res.Log)
			return false, true
		case isMempoolFull(err):
			s.stats.full.Add(1)
			sleepCtx(ctx, *backoff)
			*backoff = min(2**backoff, maxFullBackoff)
		case isInCache(err):
			// Sent before (a retry after a lost answer): it is in the
			// mempool or committed already.
			t.accepted.Store(true)
			s.stats.inCache.Add(1)
			s.stats.accepted.Add(1)
			return true, false
		default:
			if ctx.Err() != nil {
				return false, false
			}
			s.stats.rpcErrors.Add(1)
			sleepCtx(ctx, errorBackoff)
		}
	}
	return false, false
}
