package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// abciTiming is a node's cumulative ABCI time of the block's methods,
// from CometBFT's Prometheus metrics
// (cometbft_abci_connection_method_timing_seconds, type "sync"). The
// block's transactions execute in PrepareProposal (on its proposer) or
// ProcessProposal, which FinalizeBlock then reuses (abci/), so all four
// together are the node's work per block.
type abciTiming struct {
	finalizeS, commitS float64 // seconds spent so far
	finalizeN, commitN float64 // calls so far
	proposalS          float64 // seconds in PrepareProposal and ProcessProposal
}

// parseABCITiming reads abciTiming from a Prometheus text exposition.
func parseABCITiming(r io.Reader) (abciTiming, error) {
	const name = "cometbft_abci_connection_method_timing_seconds_"
	var t abciTiming
	var seen int
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || !strings.Contains(line, `type="sync"`) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return t, fmt.Errorf("metrics line %q: %w", line, err)
		}
		var field *float64
		switch kind := line[len(name):]; {
		case strings.Contains(line, `method="finalize_block"`) && strings.HasPrefix(kind, "sum{"):
			field = &t.finalizeS
		case strings.Contains(line, `method="finalize_block"`) && strings.HasPrefix(kind, "count{"):
			field = &t.finalizeN
		case strings.Contains(line, `method="commit"`) && strings.HasPrefix(kind, "sum{"):
			field = &t.commitS
		case strings.Contains(line, `method="commit"`) && strings.HasPrefix(kind, "count{"):
			field = &t.commitN
		case (strings.Contains(line, `method="prepare_proposal"`) || strings.Contains(line, `method="process_proposal"`)) &&
			strings.HasPrefix(kind, "sum{"):
			t.proposalS += v
			continue
		default:
			continue
		}
		*field = v
		seen++
	}
	if err := sc.Err(); err != nil {
		return t, err
	}
	if seen < 4 {
		return t, fmt.Errorf("no FinalizeBlock and Commit timing in the metrics (is [instrumentation] prometheus on?)")
	}
	return t, nil
}

// scrapeABCITiming fetches url (a node's /metrics) and parses it.
func scrapeABCITiming(ctx context.Context, url string) (abciTiming, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return abciTiming{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return abciTiming{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return abciTiming{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseABCITiming(io.LimitReader(resp.Body, 16<<20))
}

// checkMetricsURL refuses, before anything starts, a --metrics URL that
// is not on this machine or answers no ABCI timing.
func checkMetricsURL(ctx context.Context, url string) error {
	if url == "" {
		return nil
	}
	if err := checkLoopback(url); err != nil {
		return fmt.Errorf("--metrics: %w", err)
	}
	if _, err := scrapeABCITiming(ctx, url); err != nil {
		return fmt.Errorf("--metrics: %w", err)
	}
	return nil
}

// since is t's growth since t0.
func (t abciTiming) since(t0 abciTiming) abciTiming {
	return abciTiming{
		finalizeS: t.finalizeS - t0.finalizeS, commitS: t.commitS - t0.commitS,
		finalizeN: t.finalizeN - t0.finalizeN, commitN: t.commitN - t0.commitN,
		proposalS: t.proposalS - t0.proposalS,
	}
}

// abciWindow is a node's ABCI timing over the measured window only
// (windowEdges), so that setup, signing and the drain's small blocks stay
// out of it.
type abciWindow struct{ edges *windowEdges[abciTiming] }

// startABCI samples url's ABCI timing over [from, to]; nil, whose set does
// nothing, when url is empty.
func startABCI(ctx context.Context, url string, from, to time.Time) *abciWindow {
	if url == "" {
		return nil
	}
	return &abciWindow{sampleEdges(ctx, from, to, func(ctx context.Context) (abciTiming, error) {
		return scrapeABCITiming(ctx, url)
	})}
}

// set waits for the window's end and puts the timing into s: the means per
// block, and per tx: the mean per block over the mean txs per block of the
// window's blocks (Blocks; set before). Not the window's sum over the txs
// committed in it: the node finalizes a block a moment after the observer
// sees it decided, so the blocks of one and the txs of the other differ by
// a block at either end (some 5 % of a 35-s window at saturation). Without
// blocks in the window, per tx of CommittedInWindow.
func (w *abciWindow) set(s *Summary) error {
	if w == nil {
		return nil
	}
	t0, t1, err := w.edges.wait()
	if err != nil {
		return fmt.Errorf("--metrics: %w", err)
	}
	d := t1.since(t0)
	a := &ABCIStats{Blocks: int(d.finalizeN)}
	round := func(v float64) float64 { return math.Round(v*10) / 10 }
	if d.finalizeN > 0 {
		a.FinalizeBlockMs = round(1000 * d.finalizeS / d.finalizeN)
		a.BlockMs = round(1000 * (d.proposalS + d.finalizeS + d.commitS) / d.finalizeN)
	}
	if d.commitN > 0 {
		a.CommitMs = round(1000 * d.commitS / d.commitN)
	}
	switch {
	case s.Blocks.Count > 0 && s.Blocks.MeanTxs > 0 && d.finalizeN > 0 && d.commitN > 0:
		a.PerTxUs = round(1e6 * (d.finalizeS/d.finalizeN + d.commitS/d.commitN) / s.Blocks.MeanTxs)
		a.BlockPerTxUs = round(1e6 * (d.proposalS + d.finalizeS + d.commitS) / d.finalizeN / s.Blocks.MeanTxs)
	case s.CommittedInWindow > 0:
		a.PerTxUs = round(1e6 * (d.finalizeS + d.commitS) / float64(s.CommittedInWindow))
		a.BlockPerTxUs = round(1e6 * (d.proposalS + d.finalizeS + d.commitS) / float64(s.CommittedInWindow))
	}
	s.ABCI = a
	return nil
}
