package load

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is what a run measured.
type Result struct {
	Summary Summary
	// Series is the run second by second, from the start of the measured
	// phase to the end of the drain.
	Series []Point
	// Blocks are the blocks observed from the start of the measured phase.
	Blocks []BlockRow
}

// Summary is the JSON summary of a run.
type Summary struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"` // "saturation", "rate" or "watch"
	Nodes int    `json:"nodes"`
	// TargetRate in tx/s (0: as fast as accepted).
	TargetRate   float64 `json:"target_rate"`
	DurationS    float64 `json:"duration_s"`
	WarmupS      float64 `json:"warmup_s"`
	Mix          string  `json:"mix,omitempty"`
	Signers      int     `json:"signers,omitempty"`
	ConnsPerNode int     `json:"conns_per_node,omitempty"`
	// Submit is how the txs went to the nodes: "grpc" or "jsonrpc".
	Submit        string         `json:"submit,omitempty"`
	Planned       int            `json:"planned"`
	PlannedByKind map[string]int `json:"planned_by_kind,omitempty"`
	MeanTxBytes   float64        `json:"mean_tx_bytes"`
	// Exhausted: every signed tx was sent before the duration was over.
	Exhausted bool `json:"exhausted"`

	Attempts    int64 `json:"attempts"`
	Accepted    int64 `json:"accepted"`
	MempoolFull int64 `json:"mempool_full_retries"`
	RPCErrors   int64 `json:"rpc_errors"`
	// RPCErrorFirst is the first of them.
	RPCErrorFirst string `json:"rpc_error_first,omitempty"`
	Skipped       int64  `json:"skipped_after_rejection"`
	Unsent        int64  `json:"unsent"`
	// SentAfterEnd counts, at a rate, the txs due in the measured phase
	// that first went out after its end, within the drain: a sender held
	// them behind a node that was slow to answer. Their latency runs
	// from when they were due, like every other.
	SentAfterEnd int `json:"sent_after_end,omitempty"`
	// Trailing counts, at a rate, the txs due after the measured phase
	// that the nodes accepted: the plan's spare, sent after the end to
	// keep the load on while the phase's last txs commit. They are in no
	// figure (not the window's, not the latencies).
	Trailing int `json:"trailing_accepted,omitempty"`
	// Rejected by CheckTx, by "codespace/code"; RejectedLog has one log
	// line per code.
	Rejected    map[string]int    `json:"rejected"`
	RejectedLog map[string]string `json:"rejected_log,omitempty"`

	// Committed counts the load's txs found in blocks (whenever);
	// CommittedFailed those among them with a non-zero code, by code.
	Committed       int            `json:"committed"`
	CommittedFailed map[string]int `json:"committed_failed"`
	Uncommitted     int64          `json:"accepted_not_committed"`
	Foreign         int            `json:"foreign_txs"`
	// OutcomeUnknown counts the load's txs found in blocks whose results
	// never came: in Committed, but not in CommittedInWindow, TPS or the
	// latencies, which count successes only.
	OutcomeUnknown int `json:"outcome_unknown"`
	// The window runs from the end of the warm-up to the end of the
	// measured phase; CommittedInWindow counts the successful commits
	// observed in it.
	WindowS           float64 `json:"window_s"`
	CommittedInWindow int     `json:"committed_in_window"`
	// TPS is committed tx/s over whole block intervals (TPSBasis
	// "blocks"): the successful txs of the blocks observed after the last
	// block before the window and up to the last block of the window
	// (TPSCommitted, in TPSBlocks blocks), divided by the time between
	// those two blocks (TPSSpanS). With fewer than two blocks to span,
	// TPSBasis is "window": CommittedInWindow / WindowS.
	TPS          float64 `json:"tps"`
	TPSBasis     string  `json:"tps_basis"`
	TPSBlocks    int     `json:"tps_blocks"`
	TPSCommitted int     `json:"tps_committed"`
	TPSSpanS     float64 `json:"tps_span_s"`

	// LatencyFrom says where the latency clock of a tx starts: "due" (at a
	// target rate: when the schedule had it due, so time spent waiting in
	// the sender counts), "first_send" (at saturation: its first
	// broadcast attempt) or "loadtime_payload" (watching: the timestamp
	// CometBFT's loadtime put in the tx).
	LatencyFrom string       `json:"latency_from"`
	Latency     LatencyStats `json:"latency_ms"`
	Blocks      BlockStats   `json:"blocks"`

	ObserverErrors int    `json:"observer_errors"`
	ObserverError  string `json:"observer_last_error,omitempty"`

	// With --cpu-pids: the CPU time (user + system) of those processes
	// (the nodes) over the window, in seconds, and per committed tx, in
	// ms: per second of the window over TPS (cpuWindow.set).
	CPUPids      int     `json:"cpu_pids,omitempty"`
	NodeCPUS     float64 `json:"node_cpu_s,omitempty"`
	NodeCPUMsPTx float64 `json:"node_cpu_ms_per_tx,omitempty"`

	// With --metrics: one node's FinalizeBlock and Commit over the window.
	ABCI *ABCIStats `json:"abci,omitempty"`
}

// ABCIStats are one node's FinalizeBlock and Commit times over the
// window, from its CometBFT metrics (abciWindow).
type ABCIStats struct {
	// Blocks is how many blocks it finalized in the window.
	Blocks int `json:"blocks"`
	// Mean milliseconds per call.
	FinalizeBlockMs float64 `json:"finalize_block_ms"`
	CommitMs        float64 `json:"commit_ms"`
	// PerTxUs is the two together per tx of the window's blocks, in µs
	// (abciWindow.set).
	PerTxUs float64 `json:"per_tx_us"`
	// BlockMs is the node's whole ABCI work per block: PrepareProposal (as
	// proposer) and ProcessProposal, where the block's transactions
	// execute, FinalizeBlock, which reuses that execution, and Commit;
	// BlockPerTxUs the same per tx.
	BlockMs      float64 `json:"block_ms"`
	BlockPerTxUs float64 `json:"block_per_tx_us"`
}

// LatencyStats are submit-to-commit latencies, in milliseconds, of the txs
// whose latency clock (Summary.LatencyFrom: the due time at a rate, the
// first send at saturation) started in the window: the successful ones,
// and the censored ones (below).
type LatencyStats struct {
	// Count includes the censored txs.
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Mean  float64 `json:"mean"`
	Max   float64 `json:"max"`
	// Censored counts the txs of the load whose latency clock started in
	// the window but that were not committed when the observation ended:
	// never sent (the time was up), sent and never taken (a full mempool,
	// RPC errors) or accepted and not committed. Each enters the statistics
	// with the time from its start to the end of the observation, a lower
	// bound of its latency. A statistic that may be higher for that reason
	// is named in AtLeast: a percentile at or above the rank of the lowest
	// censored value (that tx's true latency may sort above it), and the
	// max and the mean when any tx is censored. Txs refused by CheckTx, or
	// not sent after an earlier tx of their signer was, have no latency.
	// Watching someone else's load, nothing is known about txs that never
	// committed.
	Censored int      `json:"censored"`
	AtLeast  []string `json:"at_least,omitempty"`
}

// show formats the statistic name of value ms, "≥" before it when it is
// a lower bound (AtLeast), and "n/a" when there is no latency at all: a
// p99 of "0 ms" would read as a met target.
func (l LatencyStats) show(name string, ms float64) string {
	if l.Count == 0 {
		return "n/a"
	}
	if slices.Contains(l.AtLeast, name) {
		return fmt.Sprintf("≥%.0f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// BlockStats describe the blocks observed in the window.
type BlockStats struct {
	Count          int     `json:"count"`
	MeanIntervalMs float64 `json:"mean_interval_ms"`
	P50IntervalMs  float64 `json:"p50_interval_ms"`
	MaxIntervalMs  float64 `json:"max_interval_ms"`
	MeanTxs        float64 `json:"mean_txs"`
	MaxTxs         int     `json:"max_txs"`
	MeanBytes      float64 `json:"mean_bytes"`
	MaxBytes       int     `json:"max_bytes"`
	// ExecMs is the mean time from a block being served (decided) to its
	// results being served (executed and committed by the node).
	ExecMs float64 `json:"mean_exec_ms"`
	// LateRounds: blocks decided after round 0 (a missed or late
	// proposal, or split votes), each at least timeout_propose late.
	LateRounds int `json:"late_rounds"`
}

// Point is one second of a run.
type Point struct {
	T int `json:"t_s"` // seconds since the start of the measured phase
	// Sent: txs first sent in this second (a retry is not counted again).
	Sent int `json:"sent"`
	// Committed: successful txs seen committed in this second; the
	// percentiles are of their latencies (from Summary.LatencyFrom).
	Committed int     `json:"committed"`
	Blocks    int     `json:"blocks"`
	P50       float64 `json:"p50_ms"`
	P95       float64 `json:"p95_ms"`
	P99       float64 `json:"p99_ms"`
}

// BlockRow is one observed block.
type BlockRow struct {
	Height     int64   `json:"height"`
	T          float64 `json:"t_s"` // observed, seconds since the start
	IntervalMs float64 `json:"interval_ms"`
	Txs        int     `json:"txs"`
	Bytes      int     `json:"bytes"`
	Ours       int     `json:"ours"`
	Failed     int     `json:"failed"`
	ExecMs     float64 `json:"exec_ms"`
	Unknown    int     `json:"unknown"` // txs of the load whose outcome is unknown (no results)
	Round      int32   `json:"round"`   // the consensus round it was decided in
}

// buildResult summarises a run whose measured phase went from start to
// end, and whose observer followed the blocks until observedTo.
func buildResult(cfg Config, obs *observer, st *sendStats, txs []*plannedTx, start, end, observedTo time.Time) *Result {
	obs.mu.Lock()
	defer obs.mu.Unlock()
	s := Summary{
		Name: cfg.Name, Nodes: len(cfg.Target.RPC), TargetRate: cfg.Rate,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(),
		Planned: len(txs), Attempts: st.attempts.Load(), Accepted: st.accepted.Load(),
		MempoolFull: st.full.Load(), RPCErrors: st.rpcErrors.Load(), RPCErrorFirst: st.firstError(), Skipped: st.skipped.Load(), Unsent: st.unsent.Load(),
		Rejected: map[string]int{}, RejectedLog: map[string]string{}, CommittedFailed: map[string]int{},
		Foreign: obs.foreign, ObserverErrors: obs.errs,
	}
	switch {
	case txs == nil:
		s.Mode, s.LatencyFrom = "watch", "loadtime_payload"
	case cfg.Rate > 0:
		s.Mode, s.LatencyFrom = "rate", "due"
	default:
		s.Mode, s.LatencyFrom = "saturation", "first_send"
	}
	if txs != nil {
		s.Mix, s.ConnsPerNode, s.Submit, s.PlannedByKind = cfg.Mix.String(), cfg.Conns, cfg.Submit, kindCounts(txs)
	}
	if obs.lastErr != nil {
		s.ObserverError = obs.lastErr.Error()
	}
	st.mu.Lock()
	for k, v := range st.rejected {
		s.Rejected[k] = v
		s.RejectedLog[k] = st.sampleLog[k]
	}
	st.mu.Unlock()
	for k, v := range obs.failed {
		s.CommittedFailed[k] = v
	}

	from, to := start.Add(cfg.Warmup).UnixNano(), end.UnixNano()
	s.WindowS = float64(to-from) / 1e9
	for _, t := range txs {
		if t.dueNs != 0 && t.dueNs <= to && t.sendNs.Load() > to {
			s.SentAfterEnd++
		}
		if t.dueNs > to && t.accepted.Load() {
			s.Trailing++
		}
	}
	startNs := start.UnixNano()

	// Every committed (or watched) tx as (latency start, commit, ok).
	type sample struct {
		send, commit int64
		ok           bool
	}
	var samples []sample
	// The txs that started their latency clock in the window and never
	// committed, each with its lower bound (LatencyStats.Censored).
	var censored []float64
	var bytes int
	for _, t := range txs {
		if t.commitNs != 0 {
			s.Committed++
			bytes += len(t.raw)
			samples = append(samples, sample{t.latencyFromNs(), t.commitNs, t.code == 0 && !t.unknown})
			continue
		}
		if t.accepted.Load() {
			s.Uncommitted++
		}
		if ls := t.latencyFromNs(); ls >= from && ls <= to && !t.refused.Load() {
			censored = append(censored, float64(observedTo.UnixNano()-ls)/1e6)
		}
	}
	if s.Committed > 0 {
		s.MeanTxBytes = float64(bytes) / float64(s.Committed)
	}
	for _, w := range obs.watched {
		s.Committed++
		samples = append(samples, sample{w.sendNs, w.commitNs, true})
	}
	if txs == nil {
		var n, b int
		for _, bl := range obs.blocks {
			n += bl.Ours
			b += bl.Bytes
		}
		if n > 0 {
			s.MeanTxBytes = float64(b) / float64(n)
		}
	}

	var lat []float64
	horizon := int(math.Ceil(float64(end.Sub(start))/float64(time.Second))) + 1
	buckets := make([][]float64, horizon)
	series := make([]Point, horizon)
	for i := range series {
		series[i].T = i
	}
	bucket := func(ns int64) int {
		if ns < startNs {
			return -1
		}
		return int((ns - startNs) / int64(time.Second))
	}
	for _, sm := range samples {
		if !sm.ok {
			continue
		}
		ms := float64(sm.commit-sm.send) / 1e6
		if sm.commit >= from && sm.commit <= to {
			s.CommittedInWindow++
		}
		if sm.send >= from && sm.send <= to {
			lat = append(lat, ms)
		}
		if b := bucket(sm.commit); b >= 0 {
			for b >= len(series) {
				series = append(series, Point{T: len(series)})
				buckets = append(buckets, nil)
			}
			series[b].Committed++
			buckets[b] = append(buckets[b], ms)
		}
	}
	for _, t := range txs {
		if ns := t.sendNs.Load(); ns != 0 {
			if b := bucket(ns); b >= 0 && b < len(series) {
				series[b].Sent++
			}
		}
	}
	for i, b := range buckets {
		slices.Sort(b) // b is this second's own: no copy needed
		series[i].P50, series[i].P95, series[i].P99 = pctSorted(b, 50), pctSorted(b, 95), pctSorted(b, 99)
	}
	s.setTPS(obs.blocks, from, to)
	s.Latency = latencyStats(lat, censored)

	var rows []BlockRow
	var intervals []float64
	var prev time.Time
	for _, b := range obs.blocks {
		s.OutcomeUnknown += b.Unknown
		row := BlockRow{Height: b.Height, T: float64(b.Observed.UnixNano()-startNs) / 1e9, Txs: b.Txs, Bytes: b.Bytes, Ours: b.Ours, Failed: b.Failed, Unknown: b.Unknown, Round: b.Round}
		if !b.Executed.IsZero() {
			row.ExecMs = float64(b.Executed.Sub(b.Observed)) / 1e6
		}
		if !prev.IsZero() {
			row.IntervalMs = float64(b.Time.Sub(prev)) / 1e6
		}
		prev = b.Time
		if b.Observed.UnixNano() < startNs {
			continue
		}
		if bk := bucket(b.Observed.UnixNano()); bk >= 0 && bk < len(series) {
			series[bk].Blocks++
		}
		rows = append(rows, row)
		if ns := b.Observed.UnixNano(); ns >= from && ns <= to {
			s.Blocks.Count++
			s.Blocks.MeanTxs += float64(b.Txs)
			s.Blocks.MeanBytes += float64(b.Bytes)
			s.Blocks.MaxTxs = max(s.Blocks.MaxTxs, b.Txs)
			s.Blocks.MaxBytes = max(s.Blocks.MaxBytes, b.Bytes)
			s.Blocks.ExecMs += row.ExecMs
			if b.Round > 0 {
				s.Blocks.LateRounds++
			}
			if row.IntervalMs > 0 {
				intervals = append(intervals, row.IntervalMs)
			}
		}
	}
	if s.Blocks.Count > 0 {
		s.Blocks.MeanTxs /= float64(s.Blocks.Count)
		s.Blocks.MeanBytes /= float64(s.Blocks.Count)
		s.Blocks.ExecMs = round1(s.Blocks.ExecMs / float64(s.Blocks.Count))
	}
	if len(intervals) > 0 {
		il := latencyStats(intervals, nil)
		s.Blocks.MeanIntervalMs, s.Blocks.P50IntervalMs, s.Blocks.MaxIntervalMs = il.Mean, il.P50, il.Max
	}
	return &Result{Summary: s, Series: series, Blocks: rows}
}

// setTPS sets the committed tx/s (TPS, TPSBasis, TPSBlocks, TPSCommitted,
// TPSSpanS) over whole block intervals, from the blocks observed (in
// height order) and the window [from, to] (unix ns): block 0 is the last
// block observed before from, block k the last observed at or before to;
// the rate is the successful txs of blocks 1..k over the time from block 0
// to block k. A fixed window would count a block more or less at either
// end (with 2-s blocks of up to 5,000 txs, some 8 % of a 60-s figure);
// whole intervals count each block with its own time.
//
// The times are the observer's sightings, not the header (BFT) times: the
// same clock as the window and the latencies, and a block counts as
// committed when it is first served, as for latency. A header's time is
// the median of the precommits of the block before it, so it would lag a
// block and select blocks by another clock. The sightings' error (at
// most pollInterval) is at the two ends only: the intervals in between
// add up exactly.
//
// With no block before from, block 0 is the first block of the window
// (the first observed). Fewer than two blocks to span: basis "window",
// CommittedInWindow over the fixed window WindowS (both set before).
func (s *Summary) setTPS(blocks []blockStat, from, to int64) {
	first, last := 0, -1
	for i, b := range blocks {
		ns := b.Observed.UnixNano()
		if ns < from {
			first = i
		}
		if ns <= to {
			last = i
		}
	}
	var span time.Duration
	if last > first {
		span = blocks[last].Observed.Sub(blocks[first].Observed)
	}
	if span <= 0 {
		s.TPS, s.TPSBasis, s.TPSBlocks, s.TPSCommitted, s.TPSSpanS = 0, "window", 0, 0, 0
		if s.WindowS > 0 {
			s.TPS, s.TPSCommitted = float64(s.CommittedInWindow)/s.WindowS, s.CommittedInWindow
		}
		return
	}
	committed := 0
	for _, b := range blocks[first+1 : last+1] {
		committed += b.succeeded()
	}
	s.TPSSpanS = span.Seconds()
	s.TPS, s.TPSBasis, s.TPSBlocks, s.TPSCommitted = float64(committed)/s.TPSSpanS, "blocks", last-first, committed
}

// latencyStats are the statistics of the values done and of the lower
// bounds censored (see LatencyStats.Censored), together.
func latencyStats(done, censored []float64) LatencyStats {
	type value struct {
		ms       float64
		censored bool
	}
	all := make([]value, 0, len(done)+len(censored))
	var sum float64
	for _, ms := range done {
		all = append(all, value{ms, false})
		sum += ms
	}
	for _, ms := range censored {
		all = append(all, value{ms, true})
		sum += ms
	}
	if len(all) == 0 {
		return LatencyStats{}
	}
	// Ties: the exact values first, so a censored one counts from where it
	// may rise.
	slices.SortFunc(all, func(a, b value) int {
		if c := cmp.Compare(a.ms, b.ms); c != 0 || a.censored == b.censored {
			return c
		}
		if a.censored {
			return 1
		}
		return -1
	})
	firstCensored := slices.IndexFunc(all, func(v value) bool { return v.censored })
	s := LatencyStats{Count: len(all), Censored: len(censored), Mean: round1(sum / float64(len(all)))}
	pick := func(name string, i int) float64 {
		if firstCensored >= 0 && i >= firstCensored {
			s.AtLeast = append(s.AtLeast, name)
		}
		return round1(all[i].ms)
	}
	s.P50, s.P95, s.P99 = pick("p50", pctRank(len(all), 50)), pick("p95", pctRank(len(all), 95)), pick("p99", pctRank(len(all), 99))
	s.Max = pick("max", len(all)-1)
	if len(censored) > 0 {
		s.AtLeast = append(s.AtLeast, "mean")
	}
	return s
}

// pctSorted is the p-th percentile (nearest rank) of v, sorted; 0 for
// none.
func pctSorted(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return round1(v[pctRank(len(v), p)])
}

// pctRank is the index of the p-th percentile (nearest rank) of n sorted
// values, n > 0.
func pctRank(n int, p float64) int {
	rank := int(math.Ceil(p / 100 * float64(n)))
	return min(max(rank, 1), n) - 1
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// WriteJSON writes the summary as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.Summary)
}

// SeriesHeader is the header of the time-series CSV.
var SeriesHeader = []string{"t_s", "sent", "committed", "blocks", "p50_ms", "p95_ms", "p99_ms"}

// WriteSeriesCSV writes the per-second series.
func (r *Result) WriteSeriesCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(SeriesHeader)
	for _, p := range r.Series {
		_ = cw.Write([]string{strconv.Itoa(p.T), strconv.Itoa(p.Sent), strconv.Itoa(p.Committed), strconv.Itoa(p.Blocks),
			ff(p.P50), ff(p.P95), ff(p.P99)})
	}
	cw.Flush()
	return cw.Error()
}

// WriteBlocksCSV writes the observed blocks.
func (r *Result) WriteBlocksCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"height", "t_s", "interval_ms", "txs", "bytes", "ours", "failed", "exec_ms", "unknown", "round"})
	for _, b := range r.Blocks {
		_ = cw.Write([]string{strconv.FormatInt(b.Height, 10), strconv.FormatFloat(b.T, 'f', 3, 64), ff(b.IntervalMs),
			strconv.Itoa(b.Txs), strconv.Itoa(b.Bytes), strconv.Itoa(b.Ours), strconv.Itoa(b.Failed), ff(b.ExecMs), strconv.Itoa(b.Unknown), strconv.Itoa(int(b.Round))})
	}
	cw.Flush()
	return cw.Error()
}

func ff(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

// WriteText writes a human summary.
func (r *Result) WriteText(w io.Writer) {
	s := r.Summary
	mode := s.Mode
	if s.Mode == "rate" {
		mode = fmt.Sprintf("rate %.0f tx/s", s.TargetRate)
	}
	fmt.Fprintf(w, "%s: %s, %d node(s), %.0fs (warm-up %.0fs)", s.Name, mode, s.Nodes, s.DurationS, s.WarmupS)
	if s.Mix != "" {
		fmt.Fprintf(w, ", mix %s, %d signers, %d senders/node over %s", s.Mix, s.Signers, s.ConnsPerNode, s.Submit)
	}
	fmt.Fprintln(w)
	if s.Mode != "watch" {
		fmt.Fprintf(w, "  sent       %d accepted of %d signed (%d attempts, %d mempool-full retries, %d rpc errors, %d unsent, %d skipped)%s\n",
			s.Accepted, s.Planned, s.Attempts, s.MempoolFull, s.RPCErrors, s.Unsent, s.Skipped, map[bool]string{true: " EXHAUSTED", false: ""}[s.Exhausted])
		if s.RPCErrorFirst != "" {
			fmt.Fprintf(w, "  rpc error  the first: %s\n", s.RPCErrorFirst)
		}
		if s.SentAfterEnd > 0 {
			fmt.Fprintf(w, "  late       %d txs due in the phase went out after its end (the senders were behind; latency counts from due)\n", s.SentAfterEnd)
		}
		if s.Trailing > 0 {
			fmt.Fprintf(w, "  trailing   %d txs due after the end kept the load on while the phase's last txs committed (in no figure)\n", s.Trailing)
		}
		// Offered in the phase: what senders still held at its end and
		// sent after it (SentAfterEnd) is what they did not keep up with;
		// the txs due after it (Trailing) were not asked in it.
		if offered := float64(s.Accepted-int64(s.SentAfterEnd)-int64(s.Trailing)) / s.DurationS; s.Mode == "rate" && s.DurationS > 0 && offered < 0.95*s.TargetRate {
			// Senders wait for CheckTx: on busy nodes they fall behind the
			// rate, and latency is then measured at a lower one.
			fmt.Fprintf(w, "  offered    %.0f tx/s accepted, short of the %.0f asked: the nodes took them in more slowly (more --conns?)\n",
				offered, s.TargetRate)
		}
		fmt.Fprintf(w, "  rejected   %s\n", formatCounts(s.Rejected))
	}
	fmt.Fprintf(w, "  committed  %d (%d in the %.0fs window), failed in blocks %s, outcome unknown %d, accepted but not committed %d, foreign %d\n",
		s.Committed, s.CommittedInWindow, s.WindowS, formatCounts(s.CommittedFailed), s.OutcomeUnknown, s.Uncommitted, s.Foreign)
	if s.TPSBasis == "blocks" {
		fmt.Fprintf(w, "  throughput %.0f tx/s committed (%d txs in %d whole block intervals, %.1fs)\n", s.TPS, s.TPSCommitted, s.TPSBlocks, s.TPSSpanS)
	} else {
		fmt.Fprintf(w, "  throughput %.0f tx/s committed (%d txs in the fixed %.0fs window: too few blocks)\n", s.TPS, s.TPSCommitted, s.WindowS)
	}
	from := map[string]string{"due": "due time to commit", "first_send": "first send to commit", "loadtime_payload": "loadtime timestamp to commit"}[s.LatencyFrom]
	if from == "" {
		from = "submit to commit"
	}
	l := s.Latency
	censored := ""
	if l.Censored > 0 {
		censored = fmt.Sprintf("; %d of them not committed when the observation ended, counted until then", l.Censored)
	}
	fmt.Fprintf(w, "  latency    p50 %s, p95 %s, p99 %s, max %s (%d txs, %s%s)\n",
		l.show("p50", l.P50), l.show("p95", l.P95), l.show("p99", l.P99), l.show("max", l.Max), l.Count, from, censored)
	fmt.Fprintf(w, "  blocks     %d, interval mean %.0f ms (p50 %.0f, max %.0f), %.0f txs and %.0f KiB per block (max %d txs), %.0f B/tx, results %.0f ms after the block, %d decided after round 0\n",
		s.Blocks.Count, s.Blocks.MeanIntervalMs, s.Blocks.P50IntervalMs, s.Blocks.MaxIntervalMs, s.Blocks.MeanTxs, s.Blocks.MeanBytes/1024, s.Blocks.MaxTxs, s.MeanTxBytes, s.Blocks.ExecMs, s.Blocks.LateRounds)
	if s.CPUPids > 0 {
		perTx := fmt.Sprintf("%.3f ms per committed tx", s.NodeCPUMsPTx)
		if s.CommittedInWindow == 0 {
			perTx = "n/a per tx (none committed in the window)"
		}
		fmt.Fprintf(w, "  node cpu   %.2f s over the window in %d processes, %s\n", s.NodeCPUS, s.CPUPids, perTx)
	}
	if a := s.ABCI; a != nil {
		fmt.Fprintf(w, "  abci       %d blocks in the window: FinalizeBlock %.1f ms, Commit %.1f ms per block (%.1f µs per tx of the blocks); with the proposal's execution %.1f ms per block (%.1f µs per tx)\n",
			a.Blocks, a.FinalizeBlockMs, a.CommitMs, a.PerTxUs, a.BlockMs, a.BlockPerTxUs)
	}
	if s.ObserverErrors > 0 {
		fmt.Fprintf(w, "  observer   %d RPC errors, last: %s\n", s.ObserverErrors, s.ObserverError)
	}
}

func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// WriteFiles writes the summary JSON, the series CSV and the blocks CSV to
// the paths that are not empty.
func (r *Result) WriteFiles(jsonPath, seriesPath, blocksPath string) error {
	for _, f := range []struct {
		path  string
		write func(io.Writer) error
	}{{jsonPath, r.WriteJSON}, {seriesPath, r.WriteSeriesCSV}, {blocksPath, r.WriteBlocksCSV}} {
		if f.path == "" {
			continue
		}
		out, err := os.Create(f.path)
		if err != nil {
			return err
		}
		if err := f.write(out); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
	return nil
}

// ReadSummary reads a summary JSON written by WriteJSON.
func ReadSummary(path string) (*Summary, error) {
	var s Summary
	if err := readJSON(path, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Compare writes the latencies of both runs and the final line
// "emrchain <N> tx/s, kvstore <M> tx/s, ratio <N/M>".
func Compare(w io.Writer, emr, kv *Summary) {
	for _, s := range []*Summary{emr, kv} {
		l := s.Latency
		fmt.Fprintf(w, "%-9s %6.0f tx/s committed (%s), latency p50 %s, p95 %s, p99 %s; blocks every %.0f ms, %.0f txs each, %.0f B/tx\n",
			s.Name, s.TPS, s.Mode, l.show("p50", l.P50), l.show("p95", l.P95), l.show("p99", l.P99), s.Blocks.MeanIntervalMs, s.Blocks.MeanTxs, s.MeanTxBytes)
	}
	ratio := 0.0
	if kv.TPS > 0 {
		ratio = emr.TPS / kv.TPS
	}
	// Three decimals: the target is a threshold (0.7), and 0.695 must
	// not print as 0.70; the bench scripts take medians of this figure.
	fmt.Fprintf(w, "emrchain %.0f tx/s, kvstore %.0f tx/s, ratio %.3f\n", emr.TPS, kv.TPS, ratio)
}

// readJSON decodes the JSON file at path into v; its errors name the file.
func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
