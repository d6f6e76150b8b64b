package load_test

import (
	"context"
	"testing"
	"time"

	"github.com/emrchain/emrchain/testnet/load"
)

// TestRateGoesOnAfterThePhase: at a rate, the load does not stop at the end
// of the measured phase. The txs due in its last seconds commit after it;
// with no new txs coming in then, the nodes would no longer check
// arrivals, and those txs would be measured on a lighter chain than every
// earlier one (the warm-up leaves the start's transient out, nothing left
// the end's out). The plan's spare txs (planned: rate x duration + 10 %)
// go on at the rate after the end, and enter no figure: the latencies are
// still those of the txs due in the window.
func TestRateGoesOnAfterThePhase(t *testing.T) {
	_, target := oneValidator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const rate = 100.0
	duration, warmup := 3*time.Second, time.Second
	r, err := load.Run(ctx, load.Config{
		Name: "trailing", Target: target, Prefix: "trailing",
		Plan: load.PlanConfig{Clinicians: 8, PatientsPerClinician: 2, ConsentPatients: 8},
		Rate: rate, Duration: duration, Warmup: warmup, Conns: 2, Drain: 10 * time.Second,
		Log: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Summary
	due := int64(rate*duration.Seconds()) + 1 // txs 0 to 300 fall due in the phase
	if s.Accepted <= due {
		t.Errorf("%d txs accepted of %d planned: the load stopped with the %d due in the phase", s.Accepted, s.Planned, due)
	}
	// Txs 100 to 300 fall due in the window, the last (or the first) one
	// at its very edge: the sender's schedule starts a moment after the
	// phase's clock.
	inWindow := int(rate*(duration-warmup).Seconds()) + 1
	if s.Latency.Count < inWindow-1 || s.Latency.Count > inWindow || s.Latency.Censored != 0 {
		t.Errorf("latency of %d txs (%d censored), want the %d due in the window, all committed", s.Latency.Count, s.Latency.Censored, inWindow)
	}
}
