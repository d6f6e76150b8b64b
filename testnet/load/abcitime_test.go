package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// metricsText is CometBFT's exposition of the ABCI timing (lines as a
// node serves them, with methods and types the sampler must skip).
func metricsText(finalizeS, finalizeN, commitS, commitN, proposalS float64) string {
	return fmt.Sprintf(`# HELP cometbft_abci_connection_method_timing_seconds Timing for each ABCI method.
# TYPE cometbft_abci_connection_method_timing_seconds histogram
cometbft_abci_connection_method_timing_seconds_bucket{chain_id="emrchain-bench",method="commit",type="sync",le="0.1"} 3
cometbft_abci_connection_method_timing_seconds_sum{chain_id="emrchain-bench",method="check_tx",type="async"} 56.50454983099962
cometbft_abci_connection_method_timing_seconds_count{chain_id="emrchain-bench",method="check_tx",type="async"} 141629
cometbft_abci_connection_method_timing_seconds_sum{chain_id="emrchain-bench",method="commit",type="sync"} %g
cometbft_abci_connection_method_timing_seconds_count{chain_id="emrchain-bench",method="commit",type="sync"} %g
cometbft_abci_connection_method_timing_seconds_sum{chain_id="emrchain-bench",method="finalize_block",type="sync"} %g
cometbft_abci_connection_method_timing_seconds_count{chain_id="emrchain-bench",method="finalize_block",type="sync"} %g
cometbft_abci_connection_method_timing_seconds_sum{chain_id="emrchain-bench",method="process_proposal",type="sync"} %g
cometbft_abci_connection_method_timing_seconds_sum{chain_id="emrchain-bench",method="prepare_proposal",type="sync"} %g
`, commitS, commitN, finalizeS, finalizeN, proposalS*0.75, proposalS*0.25)
}

func TestParseABCITiming(t *testing.T) {
	got, err := parseABCITiming(strings.NewReader(metricsText(12.5, 40, 3.0625, 37, 8)))
	if err != nil {
		t.Fatal(err)
	}
	if want := (abciTiming{finalizeS: 12.5, finalizeN: 40, commitS: 3.0625, commitN: 37, proposalS: 8}); got != want {
		t.Fatalf("parsed %+v, want %+v", got, want)
	}
	if _, err := parseABCITiming(strings.NewReader("go_goroutines 12\n")); err == nil || !strings.Contains(err.Error(), "prometheus") {
		t.Fatalf("metrics without ABCI timing: %v, want an error naming the setting", err)
	}
}

// TestABCIWindow: the timing reported is the difference between the
// node's metrics at the window's start and end, per call and per tx
// committed in the window, not what the node did before or after.
func TestABCIWindow(t *testing.T) {
	var scrapes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if scrapes.Add(1) == 1 { // the window's start: setup blocks already done
			fmt.Fprint(w, metricsText(10, 100, 5, 100, 20))
			return
		}
		fmt.Fprint(w, metricsText(10+4.2, 100+20, 5+1.8, 100+20, 20+6)) // 20 blocks in the window
	}))
	defer srv.Close()
	url := srv.URL + "/metrics"
	if err := checkMetricsURL(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	scrapes.Store(0)
	now := time.Now()
	w := startABCI(context.Background(), url, now, now.Add(50*time.Millisecond))
	s := &Summary{CommittedInWindow: 30000}
	if err := w.set(s); err != nil {
		t.Fatal(err)
	}
	want := ABCIStats{Blocks: 20, FinalizeBlockMs: 210, CommitMs: 90, PerTxUs: 200, BlockMs: 600, BlockPerTxUs: 400}
	if s.ABCI == nil || *s.ABCI != want {
		t.Fatalf("ABCI over the window = %+v, want %+v", s.ABCI, want)
	}
	if err := checkMetricsURL(context.Background(), "http://10.0.0.1:26660/metrics"); err == nil {
		t.Fatal("a --metrics URL off this machine was accepted")
	}
}
