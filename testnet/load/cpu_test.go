package load

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestStatCPUTicks(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 56.
	stat := "4242 (emr (x) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 12 0 100 1000 200\n"
	if got, err := statCPUTicks(stat); err != nil || got != 1290 {
		t.Fatalf("statCPUTicks = %d, %v; want 1290", got, err)
	}
	for _, bad := range []string{"", "4242 (x) S 1 2", "4242 (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 u 56 0"} {
		if _, err := statCPUTicks(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCPUOverTheWindowOnly: CPU burnt before the window (as the load's
// setup and signing burn it) is not in the window's figure; per tx it is
// divided by the txs committed in the window.
func TestCPUOverTheWindowOnly(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	pids := []int{os.Getpid()}
	if _, err := processesCPU([]int{-1}); err == nil {
		t.Fatal("a process that does not exist has a CPU time")
	}
	from := time.Now().Add(200 * time.Millisecond)
	c := sampleCPU(context.Background(), pids, from, from.Add(100*time.Millisecond))
	for time.Now().Before(from.Add(-20 * time.Millisecond)) { // burn before the window
	}
	s := Summary{CommittedInWindow: 100}
	if err := c.set(&s); err != nil {
		t.Fatal(err)
	}
	if s.CPUPids != 1 || s.NodeCPUS > 0.06 {
		t.Errorf("%d pids, %.3f s of CPU in a window the process slept through", s.CPUPids, s.NodeCPUS)
	}
	if s.NodeCPUMsPTx != s.NodeCPUS*1000/100 {
		t.Errorf("%.3f ms per tx of %.3f s over 100 txs", s.NodeCPUMsPTx, s.NodeCPUS)
	}
	all, err := processesCPU(pids)
	if err != nil || all < 100*time.Millisecond {
		t.Errorf("process CPU %s, %v: it burnt some 180 ms", all, err)
	}
}
