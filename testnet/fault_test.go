package testnet_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/testnet"
	"github.com/emrchain/emrchain/testnet/scenario"
)

// The fault tests run a 4-validator testnet of real processes each; they
// run one after another (the machine may have two cores) and each is
// bounded by testTimeout.

const testTimeout = 3 * time.Minute

func TestMain(m *testing.M) { os.Exit(testnet.Main(m)) }

func setup(t *testing.T) (context.Context, *testnet.Net) {
	t.Helper()
	return setupWith(t, testnet.Options{Validators: 4})
}

// setupWith starts a testnet of o (skipped under -short) and returns it
// with a context bounded by testTimeout.
func setupWith(t *testing.T, o testnet.Options) (context.Context, *testnet.Net) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a testnet of real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx, testnet.Start(t, o)
}

// mustSubmit submits msg signed by a through tr and fails the test unless
// it is committed with code 0.
func mustSubmit(t *testing.T, tr testnet.Transport, step string, a *apptest.Actor, msg *emrv1.Msg) {
	t.Helper()
	if out, err := tr.Submit(a, msg); err != nil || out.Code != 0 {
		t.Fatalf("%s: %v, code %d %s", step, err, out.Code, out.Log)
	}
}

// careTeam has org's registrar register NAME-clinician and enrolls
// NAME-patient, who grants the clinician read and write for a day.
func careTeam(t *testing.T, tr testnet.Transport, org, name string) (clinician, patient *apptest.Actor, id []byte) {
	t.Helper()
	clinician = apptest.NewActor(name + "-clinician")
	patient = apptest.NewActor(name + "-patient")
	id = apptest.PatientID(patient.Name)
	mustSubmit(t, tr, "register clinician", tr.Net.Registrar(org), apptest.RegisterMember(clinician, emrv1.Role_ROLE_CLINICIAN, org))
	mustSubmit(t, tr, "enroll", patient, apptest.Enroll(patient))
	mustSubmit(t, tr, "grant", patient, apptest.Grant(id, clinician, apptest.GrantSpec{
		Rights: []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE}, NotAfter: time.Now().Add(24 * time.Hour),
	}))
	return clinician, patient, id
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitCommitted waits until the load has committed at least n txs.
func waitCommitted(ctx context.Context, t *testing.T, l *testnet.Load, n int) {
	t.Helper()
	waitFor(ctx, t, strconv.Itoa(n)+" committed txs", func() bool {
		if err := l.Err(); err != nil {
			t.Fatalf("load: %v", err)
		}
		return l.Committed() >= n
	})
}

// catchUp waits until node i has reached the height the others had when
// it was called.
func catchUp(ctx context.Context, t *testing.T, net *testnet.Net, i int) int64 {
	t.Helper()
	target := net.MaxHeight()
	if err := net.WaitHeight(ctx, i, target); err != nil {
		t.Fatal(err)
	}
	return target
}

// agree checks that the running nodes agree at every common height.
func agree(ctx context.Context, t *testing.T, net *testnet.Net) {
	t.Helper()
	heights, err := net.CheckAgreement(ctx)
	if err != nil {
		t.Fatalf("nodes diverge: %v", err)
	}
	t.Logf("running nodes agree on blocks, app hashes and results at all %d heights", heights)
}

// TestKillValidatorUnderLoad: a validator is SIGKILLed while the load runs;
// the other three keep making blocks and committing the load; restarted,
// the victim catches up; all four agree at every height and every tx the
// load saw committed is in every node's index, at the same height.
func TestKillValidatorUnderLoad(t *testing.T) {
	ctx, net := setup(t)
	load := startLoad(ctx, t, net, 4)
	waitCommitted(ctx, t, load, 12)

	const victim = 3
	net.Kill(victim)
	killedAt := net.MaxHeight()
	before := load.Committed()
	for i := range victim {
		if err := net.WaitHeight(ctx, i, killedAt+5); err != nil {
			t.Fatalf("blocks stopped after a validator was killed: %v", err)
		}
	}
	waitCommitted(ctx, t, load, before+12)
	t.Logf("node%d killed at height %d; the others reached %d and committed %d more txs", victim, killedAt, net.MaxHeight(), load.Committed()-before)

	net.Start(victim)
	caught := catchUp(ctx, t, net, victim)
	t.Logf("node%d restarted and caught up to %d", victim, caught)
	waitCommitted(ctx, t, load, load.Committed()+4) // the load goes on with four nodes
	stopAndVerify(ctx, t, net, load, victim)
}

// startLoad sets up and starts a load of workers on net; it is stopped at
// the end of the test at the latest.
func startLoad(ctx context.Context, t *testing.T, net *testnet.Net, workers int) *testnet.Load {
	t.Helper()
	load := testnet.NewLoad(net, testnet.LoadOptions{Workers: workers})
	if err := load.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	load.Start(ctx)
	t.Cleanup(func() { load.Stop() })
	return load
}

// stopAndVerify stops the load, lets the restarted victim catch up and
// checks that the running nodes agree and all have every transaction the
// load saw committed.
func stopAndVerify(ctx context.Context, t *testing.T, net *testnet.Net, load *testnet.Load, victim int) {
	t.Helper()
	if err := load.Stop(); err != nil {
		t.Fatalf("load: %v", err)
	}
	catchUp(ctx, t, net, victim)
	agree(ctx, t, net)
	if err := load.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("all %d txs the load saw committed are in every node's tx index (%d admitted again after a lost admission)",
		load.Committed(), net.Rebroadcasts())
}

// TestTwoOfFourStopped: with half the voting power gone the chain halts
// (no block for several seconds) without diverging; one validator back
// restores a two-thirds majority and the chain resumes.
func TestTwoOfFourStopped(t *testing.T) {
	ctx, net := setup(t)
	if err := net.WaitHeight(ctx, 0, 5); err != nil {
		t.Fatal(err)
	}
	net.Stop(2)
	net.Stop(3)
	// A block whose votes were already cast may still commit, and reach the
	// other node a moment later; then nothing.
	time.Sleep(1500 * time.Millisecond)
	h0, h1 := mustHeight(t, net, 0), mustHeight(t, net, 1)
	if h0 != h1 {
		time.Sleep(2 * time.Second)
		h0, h1 = mustHeight(t, net, 0), mustHeight(t, net, 1)
	}
	time.Sleep(5 * time.Second)
	if g0, g1 := mustHeight(t, net, 0), mustHeight(t, net, 1); g0 != h0 || g1 != h1 {
		t.Fatalf("blocks were committed with half the validators stopped: node0 %d -> %d, node1 %d -> %d", h0, g0, h1, g1)
	}
	t.Logf("two of four stopped: the chain stalled at heights %d/%d for 5s", h0, h1)
	agree(ctx, t, net)

	net.Start(2)
	stalled := max(h0, h1)
	for _, i := range []int{0, 1, 2} {
		if err := net.WaitHeight(ctx, i, stalled+3); err != nil {
			t.Fatalf("chain did not resume with three of four validators: %v", err)
		}
	}
	t.Logf("node2 back: the chain resumed past %d", stalled+3)
	net.Start(3)
	catchUp(ctx, t, net, 3)
	agree(ctx, t, net)
}

func mustHeight(t *testing.T, net *testnet.Net, i int) int64 {
	t.Helper()
	h, err := net.Height(i)
	if err != nil {
		t.Fatalf("node%d: %v", i, err)
	}
	return h
}

// TestRandomKillsUnderLoad: one validator is SIGKILLed at random moments of
// a load, three times, and restarted each time; every restart goes through
// the ABCI handshake and the nodes never diverge. The seed is logged.
func TestRandomKillsUnderLoad(t *testing.T) {
	ctx, net := setup(t)
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 3))
	victim := rnd.IntN(net.Len())
	t.Logf("seed %d: victim node%d", seed, victim)
	load := startLoad(ctx, t, net, 3)
	waitCommitted(ctx, t, load, 6)

	handshake := []byte("Completed ABCI Handshake")
	for k := range 3 {
		time.Sleep(time.Duration(200+rnd.IntN(2500)) * time.Millisecond)
		h := mustHeight(t, net, victim)
		net.Kill(victim)
		time.Sleep(time.Duration(200+rnd.IntN(1500)) * time.Millisecond)
		net.Start(victim)
		caught := catchUp(ctx, t, net, victim)
		log, err := os.ReadFile(net.LogFile(victim))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(log, handshake) {
			t.Fatalf("kill %d: no %q in %s", k+1, handshake, net.LogFile(victim))
		}
		t.Logf("kill %d at height %d: restarted through the handshake, caught up to %d; %d txs committed so far", k+1, h, caught, load.Committed())
		agree(ctx, t, net)
	}
	stopAndVerify(ctx, t, net, load, victim)
}

var switchRE = regexp.MustCompile(`Time to switch to consensus mode!.*\bheight=(\d+)`)

// TestIsolatedValidatorCatchesUp: a validator cut off from its peers (see
// Net.Isolate) stays behind while the others go on; reconnected, it catches
// up by block sync and agrees with them.
func TestIsolatedValidatorCatchesUp(t *testing.T) {
	ctx, net := setup(t)
	const victim = 3
	if err := net.WaitHeight(ctx, victim, 5); err != nil {
		t.Fatal(err)
	}
	net.Isolate(victim)
	var isolatedAt int64
	waitFor(ctx, t, "the isolated node's RPC", func() bool {
		h, err := net.Height(victim)
		isolatedAt = h
		return err == nil
	})
	for i := range victim {
		if err := net.WaitHeight(ctx, i, isolatedAt+10); err != nil {
			t.Fatal(err)
		}
	}
	if h := mustHeight(t, net, victim); h != isolatedAt {
		t.Fatalf("the isolated node moved from %d to %d", isolatedAt, h)
	}
	t.Logf("node%d isolated at height %d while the others reached %d", victim, isolatedAt, net.MaxHeight())

	net.Heal(victim)
	// Block sync fetches the blocks, then hands over to consensus (checked
	// once a second) and says so in the log.
	var m [][]byte
	waitFor(ctx, t, "block sync to hand over to consensus", func() bool {
		log, err := os.ReadFile(net.LogFile(victim))
		if err != nil {
			t.Fatal(err)
		}
		m = switchRE.FindSubmatch(log)
		return m != nil
	})
	if synced, _ := strconv.ParseInt(string(m[1]), 10, 64); synced <= isolatedAt+5 {
		t.Fatalf("block sync ended at height %d; the node was at %d, far behind", synced, isolatedAt)
	}
	caught := catchUp(ctx, t, net, victim)
	t.Logf("reconnected: block sync took node%d from %d to %s, then consensus to %d", victim, isolatedAt, m[1], caught)
	agree(ctx, t, net)
}

// TestDeterminismAcrossNodes runs the randomized valid/invalid workload
// (fixed seed) against four real nodes: they agree on every block, app
// hash and results hash.
func TestDeterminismAcrossNodes(t *testing.T) {
	ctx, net := setup(t)
	w := testnet.NewWorkload(net, 20261121, "det")
	const rounds, size = 12, 24
	for r := range rounds {
		if err := w.Round(ctx, size); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
	}
	if err := net.WaitHeight(ctx, 0, net.MaxHeight()+1); err != nil {
		t.Fatal(err)
	}
	for i := range net.Len() {
		catchUp(ctx, t, net, i)
	}
	agree(ctx, t, net)
	t.Logf("%d txs broadcast: %d refused by CheckTx (by code: %v), %d committed, %d admitted but dropped by the proposer",
		w.Broadcast, w.Rejected, w.Codes, w.Committed, w.Dropped)
	if w.Committed < w.Broadcast/5 || w.Rejected < w.Broadcast/10 {
		t.Fatalf("the workload should mix valid and invalid txs: %d committed, %d refused of %d", w.Committed, w.Rejected, w.Broadcast)
	}
}

// TestCareFlowOnTestnet runs scenario.CareFlow and scenario.BreakGlass —
// the stories the in-process chain runs too — on four real validators.
func TestCareFlowOnTestnet(t *testing.T) {
	_, net := setup(t)
	scenario.CareFlow(t, testnet.Transport{Net: net}, scenario.NewCast(net.Registrar(apptest.HospitalA), "testnet"), apptest.HospitalA)
	scenario.BreakGlass(t, testnet.Transport{Net: net}, scenario.NewCast(net.Registrar(apptest.HospitalA), "testnet-glass"), apptest.HospitalA)
	agree(context.Background(), t, net)
	// The state after the story, as each node's next header commits to it.
	h := mustHeight(t, net, 0)
	for i := 1; i < net.Len(); i++ {
		h = min(h, mustHeight(t, net, i))
	}
	h-- // header h+1 holds the app hash after block h
	ref, err := net.AppHashAt(0, h)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < net.Len(); i++ {
		if got, err := net.AppHashAt(i, h); err != nil || !bytes.Equal(got, ref) {
			t.Fatalf("app hash after block %d: node0 %X, node%d %X (%v)", h, ref, i, got, err)
		}
	}
}
