package load

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/test/loadtime/payload"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// blocksEvery2s is a chain committing 500 txs every 2 s, seen at 0.1 s,
// 2.1 s, ... 10.1 s after start, all of them successful txs of the load:
// 250 tx/s. The txs are returned with their commit times, and the
// observer has them as planned txs (watch false) or as loadtime payloads
// (watch true).
func blocksEvery2s(start time.Time, watch bool) (*observer, []*plannedTx) {
	o := newObserver(nil, watch)
	var txs []*plannedTx
	for h := range 6 {
		seen := start.Add(time.Duration(h)*2*time.Second + 100*time.Millisecond)
		o.blocks = append(o.blocks, blockStat{Height: int64(h + 1), Time: seen.Add(-time.Second), Observed: seen, Txs: 500, Ours: 500})
		for range 500 {
			if watch {
				o.watched = append(o.watched, watchedTx{sendNs: seen.Add(-time.Second).UnixNano(), commitNs: seen.UnixNano()})
				continue
			}
			tx := &plannedTx{}
			tx.sendNs.Store(seen.Add(-time.Second).UnixNano())
			tx.accepted.Store(true)
			tx.commitNs = seen.UnixNano()
			txs = append(txs, tx)
		}
	}
	return o, txs
}

// TestTPSOverWholeBlockIntervals: committed tx/s is counted over whole
// block intervals, for load and load watch alike. The window [1 s, 9.9 s]
// holds 4 blocks, 2,000 txs: over the fixed 8.9 s that is 225 tx/s, 10 %
// short of the chain's 250, because the window holds 4.45 intervals but
// only 4 blocks. From the block before the window (0.1 s) to the last in
// it (8.1 s): 2,000 txs in 8 s.
func TestTPSOverWholeBlockIntervals(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, watch := range []bool{false, true} {
		o, txs := blocksEvery2s(start, watch)
		if watch {
			txs = nil
		}
		cfg := Config{Name: "x", Duration: 9900 * time.Millisecond, Warmup: time.Second}
		s := buildResult(cfg, o, newSendStats(), txs, start, start.Add(cfg.Duration), start.Add(cfg.Duration)).Summary
		if s.CommittedInWindow != 2000 || math.Abs(s.TPS-250) > 1e-9 {
			t.Errorf("watch %v: %d committed in the window, %.1f tx/s, want 2000 and 250", watch, s.CommittedInWindow, s.TPS)
		}
		if s.TPSBasis != "blocks" || s.TPSBlocks != 4 || s.TPSCommitted != 2000 || s.TPSSpanS != 8 {
			t.Errorf("watch %v: basis %q, %d blocks, %d txs, %.1fs", watch, s.TPSBasis, s.TPSBlocks, s.TPSCommitted, s.TPSSpanS)
		}
	}
}

// TestTPSFallsBackToTheWindow: with fewer than two blocks to span, tx/s is
// counted over the fixed window; with no block before the window, the
// first block of the window starts the span.
func TestTPSFallsBackToTheWindow(t *testing.T) {
	start := time.Unix(1000, 0)
	o, txs := blocksEvery2s(start, false)
	cfg := Config{Name: "x", Duration: 4 * time.Second, Warmup: time.Second}
	o.blocks, txs = o.blocks[1:2], txs[500:1000] // one block, at 2.1 s
	s := buildResult(cfg, o, newSendStats(), txs, start, start.Add(cfg.Duration), start.Add(cfg.Duration)).Summary
	if s.TPSBasis != "window" || s.TPS != 500.0/3 || s.TPSCommitted != 500 {
		t.Errorf("one block: basis %q, %.1f tx/s, %d txs", s.TPSBasis, s.TPS, s.TPSCommitted)
	}
	o, txs = blocksEvery2s(start, false)
	cfg = Config{Name: "x", Duration: 9 * time.Second} // no warm-up: no block before the window
	s = buildResult(cfg, o, newSendStats(), txs, start, start.Add(cfg.Duration), start.Add(cfg.Duration)).Summary
	if s.TPSBasis != "blocks" || s.TPSBlocks != 4 || s.TPS != 250 {
		t.Errorf("no block before: basis %q, %d blocks, %.1f tx/s", s.TPSBasis, s.TPSBlocks, s.TPS)
	}
}

// TestUnknownOutcomeIsNotASuccess: when a block's results never come (the
// observer gives up after resultsWait), its txs are booked as outcome
// unknown: committed, but not successes in the window, tx/s or latency.
func TestUnknownOutcomeIsNotASuccess(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, watch := range []bool{false, true} {
		o := newObserver(nil, watch)
		var b block
		var txs []*plannedTx
		if watch {
			b.Data.Txs = [][]byte{loadtimeTx(t, start.Add(2*time.Second))}
		} else {
			tx := &plannedTx{raw: []byte("x")}
			tx.hash = sha256.Sum256(tx.raw)
			tx.sendNs.Store(start.Add(2 * time.Second).UnixNano())
			tx.accepted.Store(true)
			o.track([]*plannedTx{tx})
			txs = []*plannedTx{tx}
			b.Data.Txs = [][]byte{tx.raw}
		}
		o.record(5, &b, nil, start.Add(3*time.Second), time.Time{}) // results never came
		s := buildResult(Config{Name: "x", Duration: 10 * time.Second, Rate: 1}, o, newSendStats(), txs, start, start.Add(10*time.Second), start.Add(10*time.Second)).Summary
		if s.CommittedInWindow != 0 || s.Latency.Count != 0 || s.OutcomeUnknown != 1 || len(s.CommittedFailed) != 0 {
			t.Errorf("watch %v: in window %d, latencies %d, unknown %d, failed %v: want 0, 0, 1, none",
				watch, s.CommittedInWindow, s.Latency.Count, s.OutcomeUnknown, s.CommittedFailed)
		}
	}
}

// TestSummarySaysWhereLatencyStarts: the summary and its text name the
// latency clock of the mode.
func TestSummarySaysWhereLatencyStarts(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, c := range []struct {
		rate  float64
		watch bool
		from  string
		text  string
	}{{100, false, "due", "due time to commit"}, {0, false, "first_send", "first send to commit"}, {0, true, "loadtime_payload", "loadtime timestamp to commit"}} {
		var txs []*plannedTx
		if !c.watch {
			txs = []*plannedTx{}
		}
		r := buildResult(Config{Name: "x", Duration: time.Second, Rate: c.rate}, newObserver(nil, c.watch), newSendStats(), txs, start, start.Add(time.Second), start.Add(time.Second))
		var text bytes.Buffer
		r.WriteText(&text)
		if r.Summary.LatencyFrom != c.from || !bytes.Contains(text.Bytes(), []byte(c.text)) {
			t.Errorf("rate %v watch %v: latency_from %q, text %q", c.rate, c.watch, r.Summary.LatencyFrom, text.String())
		}
	}
}

// loadtimeTx is a tx of CometBFT's loadtime tool, stamped sent.
func loadtimeTx(t *testing.T, sent time.Time) []byte {
	t.Helper()
	raw, err := payload.NewBytes(&payload.Payload{Size: 300, Time: timestamppb.New(sent)})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestSummaryKeys: the summary JSON has the keys the bench scripts
// (testnet/bench_*.sh, through jq; JQ_LATENCY reads at_least) and
// BENCHMARKS.md read: a renamed field would turn their figures into null,
// or drop their "≥".
func TestSummaryKeys(t *testing.T) {
	s := Summary{
		Name: "x", Mode: "rate", TargetRate: 100, MeanTxBytes: 300, Committed: 10,
		OutcomeUnknown: 1, LatencyFrom: "due", Latency: LatencyStats{Count: 1, P50: 1, P95: 2, P99: 3, Censored: 1, AtLeast: []string{"p99"}},
		TPS: 250, TPSBasis: "blocks", TPSBlocks: 4, TPSCommitted: 2000, TPSSpanS: 8,
		Blocks:  BlockStats{Count: 4, MeanIntervalMs: 2000, MeanTxs: 500},
		CPUPids: 4, NodeCPUS: 1.5, NodeCPUMsPTx: 5,
	}
	raw, m := summaryJSON(t, s)
	for _, path := range [][]string{
		{"node_cpu_ms_per_tx"}, {"latency_from"}, {"tps_basis"}, {"tps_blocks"}, {"outcome_unknown"},
		{"tps_committed"}, {"tps_span_s"}, {"name"}, {"mode"}, {"target_rate"}, {"tps"}, {"mean_tx_bytes"}, {"committed"},
		{"latency_ms", "p50"}, {"latency_ms", "p95"}, {"latency_ms", "p99"}, {"latency_ms", "at_least"}, {"latency_ms", "censored"},
		{"blocks", "mean_interval_ms"}, {"blocks", "mean_txs"},
	} {
		v := any(m)
		for _, k := range path {
			obj, _ := v.(map[string]any)
			v = obj[k]
		}
		if v == nil {
			t.Errorf("no %s in %s", strings.Join(path, "."), raw)
		}
	}
}

// summaryJSON is s as the JSON file holds it, raw and decoded generically,
// as the bench scripts read it.
func summaryJSON(t *testing.T, s Summary) ([]byte, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return raw, m
}

// TestTxsNeverCommittedAreCensored: at a target rate, a tx due in the window
// that was never sent, or accepted and never committed, has a latency of at
// least the time from its due time to the end of the observation. It counts
// in the percentiles with that bound, and a percentile that falls on one is
// marked as a lower bound (JSON at_least, "≥" in the text). Before, such txs
// were left out, and a chain that fell behind showed the latency of the txs
// it did commit. A tx refused by CheckTx, or due before the window, has no
// latency.
func TestTxsNeverCommittedAreCensored(t *testing.T) {
	start := time.Unix(1000, 0)
	end, observedTo := start.Add(10*time.Second), start.Add(15*time.Second)
	due := func(s float64) int64 { return start.Add(time.Duration(s * float64(time.Second))).UnixNano() }
	var txs []*plannedTx
	add := func(n int, dueS float64, f func(*plannedTx)) {
		for range n {
			tx := &plannedTx{dueNs: due(dueS)}
			f(tx)
			txs = append(txs, tx)
		}
	}
	add(90, 2, func(tx *plannedTx) { // committed 100 ms after due
		tx.sendNs.Store(tx.dueNs)
		tx.accepted.Store(true)
		tx.commitNs = tx.dueNs + int64(100*time.Millisecond)
	})
	add(5, 9, func(*plannedTx) {})  // due at 9 s, never sent: at least 6 s
	add(3, 8, func(tx *plannedTx) { // accepted, never committed: at least 7 s
		tx.sendNs.Store(tx.dueNs)
		tx.accepted.Store(true)
	})
	add(2, 5, func(tx *plannedTx) { // refused by CheckTx
		tx.sendNs.Store(tx.dueNs)
		tx.refused.Store(true)
	})
	add(4, 0.5, func(*plannedTx) {}) // due in the warm-up, never sent
	cfg := Config{Name: "x", Rate: 10, Duration: end.Sub(start), Warmup: time.Second}
	r := buildResult(cfg, newObserver(nil, false), newSendStats(), txs, start, end, observedTo)
	l := r.Summary.Latency
	if l.Count != 98 || l.Censored != 8 || l.P50 != 100 || l.P95 != 6000 || l.P99 != 7000 || l.Max != 7000 {
		t.Fatalf("latency %+v: want 98 txs, 8 censored, p50 100, p95 6000, p99 and max 7000", l)
	}
	if !slices.Equal(l.AtLeast, []string{"p95", "p99", "max", "mean"}) {
		t.Errorf("at_least %q, want p95, p99, max and mean", l.AtLeast)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "p50 100 ms, p95 ≥6000 ms, p99 ≥7000 ms, max ≥7000 ms (98 txs") ||
		!strings.Contains(text.String(), "8 of them not committed") {
		t.Errorf("text: %s", text.String())
	}
	var compared bytes.Buffer
	Compare(&compared, &r.Summary, &r.Summary)
	if !strings.Contains(compared.String(), "p99 ≥7000 ms") {
		t.Errorf("comparison: %s", compared.String())
	}

	// A censored tx whose bound sorts low (here 50 ms, below every committed
	// value) may have any latency: every percentile and the max are bounds.
	low := &plannedTx{dueNs: due(9.95)}
	r = buildResult(cfg, newObserver(nil, false), newSendStats(), append(slices.Clone(txs[:90]), low), start, end, start.Add(10*time.Second))
	if l := r.Summary.Latency; l.Censored != 1 || l.P50 != 100 || !slices.Equal(l.AtLeast, []string{"p50", "p95", "p99", "max", "mean"}) {
		t.Errorf("a censored tx below the committed ones: %+v, want every statistic a bound", l)
	}

	// All committed: nothing is a bound.
	r = buildResult(cfg, newObserver(nil, false), newSendStats(), txs[:90], start, end, observedTo)
	if l := r.Summary.Latency; l.Censored != 0 || l.AtLeast != nil || l.P99 != 100 {
		t.Errorf("latency of committed txs only: %+v", l)
	}
}

// TestLateRoundsCounted: a block's round is the one its successor's last
// commit names; the summary counts the blocks of the window decided after
// round 0, the text says so, and the blocks CSV has each block's round.
func TestLateRoundsCounted(t *testing.T) {
	start := time.Unix(1000, 0)
	o := newObserver(nil, false)
	for h, round := range []int32{0, 2, 0, 1, 0} { // the last commits of blocks 1 to 5
		var b block
		b.LastCommit.Round = round
		seen := start.Add(time.Duration(h+1) * time.Second)
		o.record(int64(h+1), &b, nil, seen, seen)
	}
	r := buildResult(Config{Name: "x", Duration: 10 * time.Second, Rate: 1}, o, newSendStats(), nil, start, start.Add(10*time.Second), start.Add(10*time.Second))
	var rounds []int32
	for _, b := range r.Blocks {
		rounds = append(rounds, b.Round)
	}
	// Block 1 was decided in round 2 (block 2's last commit), block 3 in
	// round 1; block 5's round is not known yet.
	if want := []int32{2, 0, 1, 0, 0}; !slices.Equal(rounds, want) || r.Summary.Blocks.LateRounds != 2 {
		t.Fatalf("rounds %v, late %d: want %v, 2", rounds, r.Summary.Blocks.LateRounds, want)
	}
	var text, csv bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "2 decided after round 0") {
		t.Fatalf("text summary lacks the late rounds:\n%s", text.String())
	}
	if err := r.WriteBlocksCSV(&csv); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(csv.String()), "\n"); !strings.HasSuffix(lines[0], ",round") || !strings.HasSuffix(lines[1], ",2") {
		t.Fatalf("blocks CSV:\n%s", csv.String())
	}
}
