package load

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
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
// setup and signing burn it) is not in the window's figure (TestCPUPerTx
// checks the division by the txs committed in the window).
func TestCPUOverTheWindowOnly(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	pids := []int{os.Getpid()}
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
	all, err := processesCPU(pids)
	if err != nil || all < 100*time.Millisecond {
		t.Errorf("process CPU %s, %v: it burnt some 180 ms", all, err)
	}
}

// TestCPUPerTx: the CPU per tx is the window's CPU time over the txs
// committed in it, in ms; with none committed it is left out of the JSON
// (the CPU time itself stays).
func TestCPUPerTx(t *testing.T) {
	window := func() *cpuWindow {
		e := &windowEdges[time.Duration]{done: make(chan struct{}), first: time.Second, last: 2500 * time.Millisecond}
		close(e.done)
		return &cpuWindow{pids: 4, edges: e}
	}
	s := Summary{CommittedInWindow: 300}
	if err := window().set(&s); err != nil {
		t.Fatal(err)
	}
	if s.NodeCPUMsPTx != 5 || s.NodeCPUS != 1.5 || s.CPUPids != 4 {
		t.Errorf("%.3f ms per tx, %.3f s, %d pids: want 5, 1.5, 4", s.NodeCPUMsPTx, s.NodeCPUS, s.CPUPids)
	}
	s = Summary{}
	if err := window().set(&s); err != nil {
		t.Fatal(err)
	}
	raw, m := summaryJSON(t, s)
	if _, ok := m["node_cpu_ms_per_tx"]; ok || m["node_cpu_s"] != 1.5 {
		t.Errorf("no tx committed: %s", raw)
	}
	var text bytes.Buffer
	(&Result{Summary: s}).WriteText(&text)
	if !bytes.Contains(text.Bytes(), []byte("n/a per tx")) {
		t.Errorf("no tx committed, the text says:\n%s", text.String())
	}
	if err := (*cpuWindow)(nil).set(&s); err != nil {
		t.Errorf("a nil window (no pids): %v", err)
	}
}

// TestBadCPUPidsRefusedFirst: Run and Watch refuse a process that is not
// there, or one given twice, before they start: before reading the
// registrar key (missing here) or asking the node (nothing listens).
func TestBadCPUPidsRefusedFirst(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	me := os.Getpid()
	for _, tc := range []struct {
		pids []int
		why  string
	}{{[]int{-1}, "--cpu-pids"}, {[]int{me, me}, "twice"}} {
		pids := tc.pids
		cfg := Config{
			Target:   Target{ChainID: "x", RPC: []string{url}, Registrars: []string{filepath.Join(t.TempDir(), "missing.json")}},
			Duration: time.Second,
			CPUPids:  pids,
		}
		refused := func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "--cpu-pids") && strings.Contains(err.Error(), tc.why)
		}
		if _, err := Run(context.Background(), cfg); !refused(err) {
			t.Errorf("Run with pids %v: %v, want a refusal naming --cpu-pids and saying %q", pids, err, tc.why)
		}
		wcfg := WatchConfig{RPC: url, Duration: time.Second, CPUPids: pids}
		if _, err := Watch(context.Background(), wcfg); !refused(err) {
			t.Errorf("Watch with pids %v: %v, want a refusal naming --cpu-pids and saying %q", pids, err, tc.why)
		}
	}
}
