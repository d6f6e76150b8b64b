package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// acceptingNode answers every broadcast of a batch with code 0, after
// holding the first request for stallFirst and every request for
// stallEach; seen, when not nil, gets each request's txs as they arrive.
// The first request whose first tx is "full" is refused with a full
// mempool.
func acceptingNode(t *testing.T, stallFirst, stallEach time.Duration, seen func([][]byte)) *httptest.Server {
	var first, refused atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs := readBatch(t, r)
		var txs [][]byte
		for _, q := range reqs {
			txs = append(txs, q.Params.Tx)
		}
		if seen != nil {
			seen(txs)
		}
		if first.CompareAndSwap(false, true) {
			time.Sleep(stallFirst)
		}
		time.Sleep(stallEach)
		var answers []any
		for _, q := range reqs {
			if string(q.Params.Tx) == "full" && refused.CompareAndSwap(false, true) {
				answers = append(answers, fullAnswer(q.ID))
				continue
			}
			answers = append(answers, map[string]any{"jsonrpc": "2.0", "id": q.ID, "result": map[string]any{"code": 0}})
		}
		writeAnswers(w, answers)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestLatencyAtARateStartsWhenDue: at a target rate, the time a tx waits
// in the sender after it fell due (here behind a node that holds its first
// request 600 ms, as a node executing a block answers nothing else) is
// part of its latency. It used to start at the actual send, which hid the
// stall (coordinated omission).
func TestLatencyAtARateStartsWhenDue(t *testing.T) {
	srv := acceptingNode(t, 600*time.Millisecond, 0, nil)
	node := newRPC(srv.URL, 1)
	defer node.close()
	var txs []*plannedTx
	for i := range 50 {
		txs = append(txs, &plannedTx{signer: 0, seq: uint64(i), raw: []byte{byte(i)}})
	}
	s := &sender{nodes: []submitter{node}, conns: 1, stats: newSendStats()}
	const rate = 100.0 // one tx due every 10 ms
	start := time.Now()
	s.send(context.Background(), txs, rate, start.Add(3*time.Second), start.Add(3*time.Second))
	end := time.Now()
	for _, tx := range txs {
		// Committed the instant it was first sent: all latency is waiting.
		tx.commitNs = tx.sendNs.Load()
	}
	cfg := Config{Name: "x", Rate: rate, Duration: end.Sub(start)}
	r := buildResult(cfg, newObserver(nil, false), s.stats, txs, start, end, end)
	if r.Summary.Latency.Count != len(txs) || r.Summary.Latency.P99 < 400 {
		t.Fatalf("latency %+v: the 600 ms stall is missing from p99", r.Summary.Latency)
	}
}

// TestTxsDueByTheEndAreSentAfterIt: at a rate, a tx that fell due before
// the end of the phase but was held in the sender behind a stalled node is
// still sent after the end (until the deadline), so its latency is
// measured, not censored; a tx due after the end is never sent. Before,
// the sender stopped at the end, and such txs entered p99 only as lower
// bounds (run 51: 334 of them, so its p99 could not be told).
func TestTxsDueByTheEndAreSentAfterIt(t *testing.T) {
	const stall = time.Second
	srv := acceptingNode(t, stall, 0, nil)
	node := newRPC(srv.URL, 1)
	defer node.close()
	var txs []*plannedTx
	for i := range 20 {
		txs = append(txs, &plannedTx{signer: 0, seq: uint64(i), raw: []byte{byte(i)}})
	}
	s := &sender{nodes: []submitter{node}, conns: 1, stats: newSendStats()}
	const rate = 20.0 // one tx due every 50 ms: txs 0-9 by the end
	start := time.Now()
	end := start.Add(475 * time.Millisecond)
	s.send(context.Background(), txs, rate, end, start.Add(5*time.Second))
	if got := s.stats.attempts.Load(); got != 10 || s.stats.unsent.Load() != 10 {
		t.Fatalf("attempts %d, unsent %d: want the 10 txs due by the end sent, the 10 after it not", got, s.stats.unsent.Load())
	}
	for _, tx := range txs[:10] {
		if !tx.accepted.Load() {
			t.Fatalf("tx %d, due by the end, was not sent", tx.raw[0])
		}
		tx.commitNs = tx.sendNs.Load() // committed the instant it went out
	}
	cfg := Config{Name: "x", Rate: rate, Duration: end.Sub(start)}
	r := buildResult(cfg, newObserver(nil, false), s.stats, txs, start, end, time.Now())
	l := r.Summary.Latency
	if l.Censored != 0 || l.Count != 10 || r.Summary.SentAfterEnd != 9 {
		t.Fatalf("latency %+v, sent after the end %d: want 10 measured, none censored, 9 sent late", l, r.Summary.SentAfterEnd)
	}
	if l.Max < float64(stall.Milliseconds())/2 {
		t.Fatalf("max latency %.0f ms: the stall is missing", l.Max)
	}
}

// TestRetryKeepsTheFirstAttempt: at saturation the latency clock starts at
// the first attempt; a retry after a full mempool does not restart it.
func TestRetryKeepsTheFirstAttempt(t *testing.T) {
	var mu sync.Mutex
	var arrivals []time.Time
	srv := acceptingNode(t, 0, 0, func([][]byte) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
	})
	node := newRPC(srv.URL, 1)
	defer node.close()
	tx := &plannedTx{signer: 0, raw: []byte("full")}
	s := &sender{nodes: []submitter{node}, conns: 1, stats: newSendStats()}
	end := time.Now().Add(2 * time.Second)
	s.send(context.Background(), []*plannedTx{tx}, 0, end, end)
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != 2 || !tx.accepted.Load() {
		t.Fatalf("%d requests, accepted %v: want a refusal, then the retry taken", len(arrivals), tx.accepted.Load())
	}
	if sent := time.Unix(0, tx.sendNs.Load()); sent.After(arrivals[0]) {
		t.Errorf("latency clock starts %s after the first attempt arrived", sent.Sub(arrivals[0]))
	}
}

// TestRateIsOfferedOverUnevenWorkers: at a target rate the plan is one
// schedule, whatever the workers' shares. Signer 0 has 9 of every 10 txs
// and its own worker; paced per worker (2 workers at 200 tx/s: one tx
// every 10 ms each), it sent some 60 of its 90 in 600 ms while signer 1's
// worker ran dry. Each signer's txs still arrive in order.
func TestRateIsOfferedOverUnevenWorkers(t *testing.T) {
	var mu sync.Mutex
	next := map[byte]byte{}
	var outOfOrder int
	srv := acceptingNode(t, 0, 0, func(txs [][]byte) {
		mu.Lock()
		defer mu.Unlock()
		for _, tx := range txs {
			if tx[1] != next[tx[0]] {
				outOfOrder++
			}
			next[tx[0]] = tx[1] + 1
		}
	})
	node := newRPC(srv.URL, 2)
	defer node.close()
	var txs []*plannedTx
	var seqs [2]byte
	for i := range 100 {
		signer := int32(0)
		if i%10 == 9 {
			signer = 1
		}
		txs = append(txs, &plannedTx{signer: signer, raw: []byte{byte(signer), seqs[signer]}})
		seqs[signer]++
	}
	s := &sender{nodes: []submitter{node}, conns: 2, stats: newSendStats()}
	if s.workerOf(0) == s.workerOf(1) {
		t.Fatal("the two signers share a worker")
	}
	// The last tx is due at 495 ms.
	end := time.Now().Add(600 * time.Millisecond)
	s.send(context.Background(), txs, 200, end, end)
	if s.stats.accepted.Load() != 100 || s.stats.unsent.Load() != 0 {
		t.Errorf("accepted %d, unsent %d of 100 due within the run", s.stats.accepted.Load(), s.stats.unsent.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if outOfOrder > 0 {
		t.Errorf("%d txs arrived out of their signer's order", outOfOrder)
	}
}

// TestBatchInFlightAtDeadlineIsBooked: a batch sent before the deadline
// and answered after it is booked as answered (the node has it), not as
// unsent.
func TestBatchInFlightAtDeadlineIsBooked(t *testing.T) {
	var received atomic.Int64
	srv := acceptingNode(t, 0, 300*time.Millisecond, func(txs [][]byte) { received.Add(int64(len(txs))) })
	node := newRPC(srv.URL, 1)
	defer node.close()
	var txs []*plannedTx
	for i := range 5 {
		txs = append(txs, &plannedTx{signer: 0, seq: uint64(i), raw: []byte{byte(i)}})
	}
	s := &sender{nodes: []submitter{node}, conns: 1, stats: newSendStats()}
	end := time.Now().Add(100 * time.Millisecond)
	s.send(context.Background(), txs, 0, end, end)
	if received.Load() != 5 || s.stats.accepted.Load() != 5 || s.stats.unsent.Load() != 0 {
		t.Errorf("node received %d; accepted %d, unsent %d: want 5, 5, 0", received.Load(), s.stats.accepted.Load(), s.stats.unsent.Load())
	}
	for _, tx := range txs {
		if !tx.accepted.Load() {
			t.Fatalf("tx %d not marked accepted", tx.raw[0])
		}
	}
}

// TestOfferedCountsOnlyThePhase: the warning that senders offered less
// than the rate asked counts what was taken in the phase, not what they
// still sent after its end (within the drain), or it would hide exactly
// the run whose senders fell furthest behind.
func TestOfferedCountsOnlyThePhase(t *testing.T) {
	r := &Result{Summary: Summary{Name: "x", Mode: "rate", TargetRate: 10, DurationS: 1, Accepted: 10, SentAfterEnd: 9}}
	var out strings.Builder
	r.WriteText(&out)
	if !strings.Contains(out.String(), "offered    1 tx/s accepted, short of the 10 asked") {
		t.Fatalf("no warning for 1 of 10 txs taken in the phase:\n%s", out.String())
	}
}
