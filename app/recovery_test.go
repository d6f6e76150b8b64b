package app_test

import (
	"bytes"
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestRestartAfterCommit: a node stopped right after Commit at height N
// reopens at N with the same app hash and keeps producing blocks.
func TestRestartAfterCommit(t *testing.T) {
	c := apptest.New(t, apptest.Options{Dir: t.TempDir()})
	pat := apptest.NewActor("patient-crash")
	pid := apptest.PatientID("patient-crash")
	c.Must(pat, apptest.Enroll(pat))
	c.Must(pat, apptest.AddRecord(pid, "lab-results", "a"))
	height, hash := c.Height(), c.AppHash()

	c = c.Reopen()
	if h, got := c.App.LastCommit(); h != height || !bytes.Equal(got, hash) {
		t.Fatalf("after restart: height %d hash %X, want %d %X", h, got, height, hash)
	}
	if c.App.ChainID() != apptest.ChainID {
		t.Fatalf("chain id after restart: %q", c.App.ChainID())
	}
	// The check state is there too: the next sequence is known.
	if res := c.App.CheckTx(pat.Tx(apptest.ChainID, 2, apptest.AddRecord(pid, "lab-results", "b")), false); !res.OK() {
		t.Fatalf("CheckTx after restart: %d %s", res.Code, res.Log)
	}
	c.Must(pat, apptest.AddRecord(pid, "lab-results", "b"))
	if c.Height() != height+1 {
		t.Fatalf("height %d after one more block, want %d", c.Height(), height+1)
	}
}

// TestCrashBeforeCommit: a node that finalized block N+1 but crashed before
// Commit reopens at N, and replaying the same block gives the same hash.
func TestCrashBeforeCommit(t *testing.T) {
	c := apptest.New(t, apptest.Options{Dir: t.TempDir()})
	pat := apptest.NewActor("patient-crash2")
	pid := apptest.PatientID("patient-crash2")
	c.Must(pat, apptest.Enroll(pat))
	height, hash := c.Height(), c.AppHash()

	tx := c.Tx(pat, apptest.AddRecord(pid, "imaging", "ct"))
	b := app.BlockInfo{Height: height + 1, Time: c.Now}
	results, finalized, err := c.App.FinalizeBlock(b, [][]byte{tx})
	if err != nil || !results[0].OK() {
		t.Fatalf("FinalizeBlock: %v %v", err, results)
	}
	c = c.Reopen() // crash: no Commit

	if h, got := c.App.LastCommit(); h != height || !bytes.Equal(got, hash) {
		t.Fatalf("after crash: height %d hash %X, want %d %X", h, got, height, hash)
	}
	results, replayed, err := c.App.FinalizeBlock(b, [][]byte{tx})
	if err != nil || !results[0].OK() {
		t.Fatalf("replay: %v %v", err, results)
	}
	if !bytes.Equal(replayed, finalized) {
		t.Fatalf("replayed block hash %X, first execution %X", replayed, finalized)
	}
	if _, err := c.App.Commit(); err != nil {
		t.Fatal(err)
	}
	var p emrv1.QueryPatientResponse
	c.Query("Patient", &emrv1.QueryPatientRequest{PatientId: hexOf(pid)}, &p)
	if p.Patient.RecordCount != 1 {
		t.Fatalf("record count %d after replay, want 1", p.Patient.RecordCount)
	}
}

// TestFinalizeOutOfOrder: the app refuses a block at the wrong height and a
// second FinalizeBlock before Commit (broken invariants that must halt).
func TestFinalizeOutOfOrder(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	if _, _, err := c.App.FinalizeBlock(app.BlockInfo{Height: c.Height() + 2, Time: c.Now}, nil); err == nil {
		t.Fatal("FinalizeBlock skipping a height succeeded")
	}
	if _, _, err := c.App.FinalizeBlock(app.BlockInfo{Height: c.Height() + 1, Time: c.Now}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.App.FinalizeBlock(app.BlockInfo{Height: c.Height() + 2, Time: c.Now}, nil); err == nil {
		t.Fatal("second FinalizeBlock before Commit succeeded")
	}
	if _, err := c.App.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.App.Commit(); err == nil {
		t.Fatal("Commit without a finalized block succeeded")
	}
}

// TestBlocksThatChangeNothingKeepTheAppHash: a block with no transaction,
// or only failed ones, leaves the app hash as it was, so CometBFT does not
// need another block to carry a new one and an idle chain waits for
// transactions (create_empty_blocks_interval) instead of making blocks
// forever. The state is still of the latest height, across a restart.
func TestBlocksThatChangeNothingKeepTheAppHash(t *testing.T) {
	c := apptest.New(t, apptest.Options{Dir: t.TempDir()})
	pat := apptest.NewActor("patient-idle")
	pid := apptest.PatientID("patient-idle")
	c.Must(pat, apptest.Enroll(pat))
	hash := c.AppHash()
	c.Block()
	c.Block()
	if !bytes.Equal(c.AppHash(), hash) {
		t.Fatalf("empty blocks changed the app hash: %X, then %X", hash, c.AppHash())
	}
	// A tx that fails writes nothing either (a record of no patient).
	bad := c.Tx(pat, apptest.AddRecord(apptest.PatientID("nobody"), "lab-results", "x"))
	if res := c.Block(bad); res[0].OK() {
		t.Fatal("the failing tx succeeded: the case tests nothing")
	}
	if !bytes.Equal(c.AppHash(), hash) {
		t.Fatalf("a block of one failed tx changed the app hash")
	}
	height := c.Height()

	c = c.Reopen()
	if h, got := c.App.LastCommit(); h != height || !bytes.Equal(got, hash) {
		t.Fatalf("after restart: height %d hash %X, want %d %X", h, got, height, hash)
	}
	// The next block is height+1, and a tx that writes changes the hash.
	c.Must(pat, apptest.AddRecord(pid, "lab-results", "a"))
	if c.Height() != height+1 || bytes.Equal(c.AppHash(), hash) {
		t.Fatalf("after a record: height %d (want %d), hash %X (want a new one)", c.Height(), height+1, c.AppHash())
	}
}
