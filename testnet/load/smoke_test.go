package load_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/testnet"
	"github.com/emrchain/emrchain/testnet/load"
)

func TestMain(m *testing.M) { os.Exit(testnet.Main(m)) }

// oneValidator starts a one-validator testnet (the test is skipped with
// -short) and returns it with its load target.
func oneValidator(t *testing.T) (*testnet.Net, load.Target) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := testnet.Start(t, testnet.Options{Validators: 1, TimeoutCommit: 200 * time.Millisecond})
	target, err := load.ReadTestnet(n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return n, target
}

// TestSmoke runs the whole tool for a few seconds against a one-validator
// chain, with Watch following the same blocks: over gRPC (the default with
// the testnet's gRPC servers known), then over JSON-RPC.
func TestSmoke(t *testing.T) {
	n, target := oneValidator(t)
	if len(target.RPC) != 1 || len(target.GRPC) != 1 || len(target.Registrars) != 2 || target.ChainID != n.ChainID {
		t.Fatalf("target %+v", target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var (
		wg      sync.WaitGroup
		watched *load.Result
		werr    error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		watched, werr = load.Watch(ctx, load.WatchConfig{Name: "w", RPC: target.RPC[0], Duration: 6 * time.Second, Drain: time.Second})
	}()
	var pids []int // this process (the load tool; the node is another): checks the wiring of CPUPids
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		pids = []int{os.Getpid()}
	}
	run := func(submit, prefix string) *load.Result {
		r, err := load.Run(ctx, load.Config{
			Name:     "smoke",
			Target:   target,
			Prefix:   prefix,
			Plan:     load.PlanConfig{Clinicians: 8, PatientsPerClinician: 2, ConsentPatients: 8},
			Rate:     150,
			Duration: 4 * time.Second,
			Warmup:   time.Second,
			Conns:    2,
			Submit:   submit,
			Drain:    10 * time.Second,
			CPUPids:  pids,
			Log:      testWriter{t},
		})
		if err != nil {
			t.Fatalf("submit %q: %v", submit, err)
		}
		s := r.Summary
		t.Logf("%+v", s)
		if len(s.Rejected) != 0 || len(s.CommittedFailed) != 0 || s.RPCErrors != 0 {
			t.Fatalf("rejections or failures: %v %v %v, %d rpc errors", s.Rejected, s.RejectedLog, s.CommittedFailed, s.RPCErrors)
		}
		if s.Planned > 4*150*11/10+100 || s.Accepted == 0 || s.Committed == 0 || s.Uncommitted != 0 {
			t.Fatalf("planned %d accepted %d committed %d uncommitted %d", s.Planned, s.Accepted, s.Committed, s.Uncommitted)
		}
		if s.TPS <= 0 || s.Latency.Count == 0 || s.Latency.P50 <= 0 || s.Blocks.Count == 0 {
			t.Fatalf("nothing measured: %+v", s)
		}
		if s.LatencyFrom != "due" || s.TPSBasis != "blocks" || s.OutcomeUnknown != 0 || (pids != nil && (s.CPUPids != 1 || s.NodeCPUS <= 0)) {
			t.Fatalf("latency from %q, tps basis %q, unknown %d, cpu %d pids %.3f s", s.LatencyFrom, s.TPSBasis, s.OutcomeUnknown, s.CPUPids, s.NodeCPUS)
		}
		return r
	}
	if s := run("", "smoke-grpc").Summary; s.Submit != load.SubmitGRPC {
		t.Errorf("submitted over %q by default, want grpc", s.Submit)
	}
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	// The watcher saw the load's (and setup's) txs as foreign: they are
	// not loadtime payloads.
	if watched.Summary.Foreign == 0 || watched.Summary.Committed != 0 || len(watched.Blocks) == 0 {
		t.Fatalf("watch: %+v", watched.Summary)
	}
	if s := run(load.SubmitJSONRPC, "smoke-jsonrpc").Summary; s.Submit != load.SubmitJSONRPC {
		t.Errorf("submitted over %q, want jsonrpc", s.Submit)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
