package load

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// TestCPUPerTxDoesNotMoveWithTheWindowsBlocks: the nodes burn CPU all the
// time (here one CPU-second per second), and the chain commits 250 tx/s in
// blocks of 500 every 2 s, so a tx costs 4 ms. A fixed window of 8.9 s
// holds 4 blocks and one of 9.2 s holds 5: CPU over the txs committed in
// the window said 4.45 ms and 3.68 ms, the same block-alignment error
// that whole block intervals removed from tx/s. Per second over TPS it is
// 4 ms in both.
func TestCPUPerTxDoesNotMoveWithTheWindowsBlocks(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, d := range []time.Duration{9900 * time.Millisecond, 10200 * time.Millisecond} {
		o, txs := blocksEvery2s(start, false)
		cfg := Config{Name: "x", Duration: d, Warmup: time.Second}
		s := buildResult(cfg, o, newSendStats(), txs, start, start.Add(d), start.Add(d)).Summary
		window := d - cfg.Warmup
		e := &windowEdges[time.Duration]{done: make(chan struct{}), first: time.Minute, last: time.Minute + window}
		close(e.done)
		if err := (&cpuWindow{pids: 4, edges: e}).set(&s); err != nil {
			t.Fatal(err)
		}
		if math.Abs(s.NodeCPUMsPTx-4) > 1e-9 {
			t.Errorf("window %s (%d txs committed in it, %.0f tx/s): %.3f ms of CPU per tx, want 4", window, s.CommittedInWindow, s.TPS, s.NodeCPUMsPTx)
		}
	}
}

// TestNoLatencyIsNotShownAsZero: a run with no latency at all (every tx
// refused, or none due in the window) has no p99; "p99 0 ms" in the text
// and in the comparison would read as a met target.
func TestNoLatencyIsNotShownAsZero(t *testing.T) {
	s := Summary{Name: "x", Mode: "rate", TargetRate: 100, DurationS: 10, LatencyFrom: "due"}
	var text, compared bytes.Buffer
	(&Result{Summary: s}).WriteText(&text)
	Compare(&compared, &s, &s)
	for what, out := range map[string]string{"text": text.String(), "comparison": compared.String()} {
		if strings.Contains(out, "p99 0 ms") || !strings.Contains(out, "p99 n/a") {
			t.Errorf("%s with no latency:\n%s", what, out)
		}
	}
}

// TestRatioIsNotRoundedUpToTheTarget: the target is a ratio of 0.7; 0.6951
// must not print as 0.70, and the bench scripts take the median of the
// rounds' printed ratios.
func TestRatioIsNotRoundedUpToTheTarget(t *testing.T) {
	var out bytes.Buffer
	Compare(&out, &Summary{Name: "emrchain", TPS: 6951}, &Summary{Name: "kvstore", TPS: 10000})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, "ratio 0.695") {
		t.Errorf("last line %q, want it to end in ratio 0.695", last)
	}
}

// TestTrailingTxsAreInNoFigure: at a rate, the plan's txs due after the
// end are sent to keep the load on while the phase's last txs commit.
// They enter no latency (not even as censored), no window count, and not
// what was offered in the phase: here the senders got 80 of the 101 txs
// due in 10 s out (the rest held until the deadline), and 20 trailing txs
// must not hide that shortfall.
func TestTrailingTxsAreInNoFigure(t *testing.T) {
	start := time.Unix(1000, 0)
	end := start.Add(10 * time.Second)
	const rate = 10.0
	st := newSendStats()
	var txs []*plannedTx
	for i := range 121 {
		tx := &plannedTx{dueNs: start.Add(dueAfter(i, rate)).UnixNano()}
		txs = append(txs, tx)
		if i >= 80 && i <= 100 {
			continue // due in the phase, never sent: censored
		}
		tx.sendNs.Store(tx.dueNs)
		tx.accepted.Store(true)
		st.accepted.Add(1)
		if i < 80 {
			tx.commitNs = tx.dueNs + int64(100*time.Millisecond)
		} else if i < 110 {
			tx.commitNs = tx.dueNs + int64(5*time.Second) // slow, but after the phase
		}
	}
	cfg := Config{Name: "x", Rate: rate, Duration: end.Sub(start)}
	r := buildResult(cfg, newObserver(nil, false), st, txs, start, end, end.Add(3*time.Second))
	l := r.Summary.Latency
	if l.Count != 101 || l.Censored != 21 || l.P50 != 100 {
		t.Errorf("latency %+v: want the 101 txs due in the phase, 21 of them censored, p50 100 ms", l)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "offered    8 tx/s accepted, short of the 10 asked") {
		t.Errorf("the senders' shortfall in the phase is not told:\n%s", text.String())
	}
	if !strings.Contains(text.String(), "20 txs due after the end") {
		t.Errorf("the trailing txs are not told:\n%s", text.String())
	}
}

// TestABCIPerTxDoesNotMoveWithTheWindowsBlocks: node1 finalized 20 blocks
// of 1,500 txs in the window, at 210 ms of FinalizeBlock and 90 ms of
// Commit each: 200 µs per tx. The observer sees a block decided a moment
// before the node finalizes it, so the txs it counts in the same window
// are a block more or fewer (28,500 or 31,500); over those the figure was
// 210.5 or 190.5 µs. Over the window's blocks it is 200.
func TestABCIPerTxDoesNotMoveWithTheWindowsBlocks(t *testing.T) {
	for _, committed := range []int{28_500, 31_500} {
		e := &windowEdges[abciTiming]{done: make(chan struct{}),
			first: abciTiming{finalizeS: 10, finalizeN: 100, commitS: 5, commitN: 100, proposalS: 20},
			last:  abciTiming{finalizeS: 10 + 4.2, finalizeN: 120, commitS: 5 + 1.8, commitN: 120, proposalS: 26}}
		close(e.done)
		s := &Summary{CommittedInWindow: committed, Blocks: BlockStats{Count: 20, MeanTxs: 1500}}
		if err := (&abciWindow{edges: e}).set(s); err != nil {
			t.Fatal(err)
		}
		if s.ABCI.PerTxUs != 200 || s.ABCI.BlockPerTxUs != 400 {
			t.Errorf("%d txs committed in the window: %.1f µs (with the execution %.1f) per tx, want 200 (400)", committed, s.ABCI.PerTxUs, s.ABCI.BlockPerTxUs)
		}
	}
}
