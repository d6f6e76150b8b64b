package app_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// paramsAndChanges reads the params and the count of their changes.
func paramsAndChanges(c *apptest.Chain) (*emrv1.Params, uint64) {
	c.TB.Helper()
	var resp emrv1.QueryParamsResponse
	c.Query("Params", &emrv1.QueryParamsRequest{}, &resp)
	return resp.Params, resp.Changes
}

// executeByAll has regA propose msg and regB and regR approve it, which
// executes it (three organizations of three).
func executeByAll(t *testing.T, w *ruleWorld, msg *emrv1.Msg) {
	t.Helper()
	c := w.c
	c.Must(w.regA, msg)
	id := ruleProposalsMade(c)
	c.Must(w.regB, apptest.Approve(id))
	c.Must(w.regR, apptest.Approve(id))
	if p := ruleProposal(c, id); p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED {
		t.Fatalf("proposal %d not executed: %v", id, p.Proposal)
	}
}

// TestParamsCannotLockThemselves: params under which no SetParams
// carrying them fits in max_tx_bytes could never change again (categories
// are never removed, and raising max_tx_bytes is itself a SetParams
// carrying every category): ValidateParams refuses them, at genesis and
// in a proposal, and leaves room for default params at the floor.
func TestParamsCannotLockThemselves(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	current, changes := paramsAndChanges(c)
	lock := proto.Clone(current).(*emrv1.Params)
	for i := 0; len(lock.Categories) < 26; i++ {
		lock.Categories = append(lock.Categories, fmt.Sprintf("category-%02d-%s", i, strings.Repeat("x", 24)))
	}
	lock.MaxTxBytes = 1024
	const why = "a proposal to change these params (26 categories) needs up to"
	if err := app.ValidateParams(lock); err == nil || !strings.Contains(err.Error(), why) {
		t.Fatalf("ValidateParams of params a SetParams cannot carry: %v", err)
	}
	ruleCheck(t, "proposing params a SetParams cannot carry", c.Exec(w.regA, apptest.SetParams(lock, changes)), app.ErrInvalidMsg, why)
	// The largest a proposal of them can be, at the floor, is allowed.
	lock.MaxTxBytes = uint64(proto.Size(lock)) + 512
	if err := app.ValidateParams(lock); err != nil {
		t.Fatalf("params with room for their proposal: %v", err)
	}
}

// TestParamsProposedFromStaleRead: registrar B reads the params, another
// params change executes, and then B's proposal (the whole set, built from
// what it read) arrives: it carries the count of changes B read, and is
// refused, not executed later to silently undo the change in between.
func TestParamsProposedFromStaleRead(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	read, readAt := paramsAndChanges(c)
	smallPages := proto.Clone(read).(*emrv1.Params)
	smallPages.MaxPageSize = 50
	executeByAll(t, w, apptest.SetParams(smallPages, readAt))

	stale := proto.Clone(read).(*emrv1.Params)
	stale.MaxRecordsPerAccess = 7
	ruleCheck(t, "a proposal built from params read before another change", c.Exec(w.regB, apptest.SetParams(stale, readAt)),
		app.ErrProposalClosed, "the params were changed 1 times since this was proposed")
	if p, changes := paramsAndChanges(c); p.MaxPageSize != 50 || changes != 1 {
		t.Fatalf("params after the stale proposal: %v (changes %d)", p, changes)
	}
}

// TestParamsWrappedKeyFloor: every KEK envelope a client seals is
// crypto.EnvelopeSize (93) bytes, so max_wrapped_key_bytes below it would
// leave no grant possible (nor a rotation with a standing grantee): the
// floor is the envelope's size.
func TestParamsWrappedKeyFloor(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	current, changes := paramsAndChanges(c)
	small := proto.Clone(current).(*emrv1.Params)
	small.MaxWrappedKeyBytes = crypto.EnvelopeSize - 1
	ruleCheck(t, "max_wrapped_key_bytes below an envelope", c.Exec(w.regA, apptest.SetParams(small, changes)), app.ErrInvalidMsg,
		"max_wrapped_key_bytes is 92: want at least 93")
	small.MaxWrappedKeyBytes = crypto.EnvelopeSize
	executeByAll(t, w, apptest.SetParams(small, changes))
	grant := apptest.Grant(w.pid, w.doc, apptest.GrantSpec{
		Rights: []emrv1.Right{emrv1.Right_RIGHT_READ}, Categories: current.Categories[:1], NotAfter: w.year,
	})
	grant.GetGrant().WrappedKek = bytes.Repeat([]byte{1}, crypto.EnvelopeSize) // what client.Grant seals
	c.Must(w.pat, grant)
}

// TestParamsReorderIsNoChange: the chain enforces nothing by the order
// of the categories, so a proposal that only reorders them (which would
// count as a change and overtake every other open params proposal) is
// refused: new categories follow the current ones, in their order.
func TestParamsReorderIsNoChange(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	current, changes := paramsAndChanges(c)
	reordered := proto.Clone(current).(*emrv1.Params)
	slices.Reverse(reordered.Categories)
	ruleCheck(t, "a reorder", c.Simulate(w.regA, c.Now.Add(time.Second), apptest.SetParams(reordered, changes)), app.ErrInvalidMsg,
		"categories are added after the current ones")
	reordered.Categories = append(reordered.Categories, "genomics")
	ruleCheck(t, "a reorder with a category added", c.Simulate(w.regA, c.Now.Add(time.Second), apptest.SetParams(reordered, changes)), app.ErrInvalidMsg,
		"categories are added after the current ones")
}

// TestSetParamsOverheadBound: the largest SetParams transaction
// (chain id of 50 bytes, reason of 256, the largest sequence and
// from_changes) adds at most 512 bytes to its params, the margin
// ValidateParams keeps below max_tx_bytes.
func TestSetParamsOverheadBound(t *testing.T) {
	p := app.DefaultParams()
	for len(p.Categories) < 2000 { // params of a length-prefix of 3 bytes
		p.Categories = append(p.Categories, fmt.Sprintf("c%063d", len(p.Categories)))
	}
	msg := apptest.SetParams(p, ^uint64(0))
	msg.GetPropose().Reason = strings.Repeat("r", 256)
	tx := apptest.NewActor("overhead").Tx(strings.Repeat("c", 50), ^uint64(0), msg)
	if over := len(tx) - proto.Size(p); over > 512 {
		t.Fatalf("a SetParams transaction adds %d bytes to its params", over)
	} else {
		t.Logf("overhead %d bytes (params %d)", over, proto.Size(p))
	}
}

// TestParamsChangesProven: the Params answer proves the count it
// gives, absent (0) and present.
func TestParamsChangesProven(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	proofOf := func() (uint64, *emrv1.StoreProof) {
		t.Helper()
		var resp emrv1.QueryParamsResponse
		c.QueryProven("Params", &emrv1.QueryParamsRequest{}, &resp)
		for _, p := range resp.Proofs {
			if bytes.Equal(p.Key, []byte{0, 'P'}) {
				return resp.Changes, p
			}
		}
		return resp.Changes, nil
	}
	if n, p := proofOf(); n != 0 || p == nil || len(p.Value) != 0 || len(p.Ops) == 0 {
		t.Fatalf("changes %d, proof %v: want 0 proven absent", n, p)
	}
	current, changes := paramsAndChanges(c)
	next := proto.Clone(current).(*emrv1.Params)
	next.MaxPageSize = 50
	executeByAll(t, w, apptest.SetParams(next, changes))
	if n, p := proofOf(); n != 1 || p == nil || len(p.Value) != 8 {
		t.Fatalf("changes %d, proof %v: want 1 proven", n, p)
	}
}

// TestLargestParamsProposalFitsASnapshot: a params proposal carries every
// category and is stored with the params it replaces, and proposals are
// never deleted; at the most categories there may be (256 of 64
// characters) it stays a small value, so the state still snapshots
// (values up to store.MaxSnapshotValueLen). One category more is refused.
func TestLargestParamsProposalFitsASnapshot(t *testing.T) {
	g := apptest.Consortium()
	for len(g.Params.Categories) < 255 {
		g.Params.Categories = append(g.Params.Categories, fmt.Sprintf("c%03d-%s", len(g.Params.Categories), strings.Repeat("x", 59)))
	}
	c := apptest.New(t, apptest.Options{Genesis: g})
	next := proto.Clone(g.Params).(*emrv1.Params)
	next.Categories = append(next.Categories, strings.Repeat("y", 64))
	c.Must(apptest.Registrar(apptest.HospitalA), apptest.SetParams(next, 0))
	var p emrv1.QueryProposalResponse
	c.Query("Proposal", &emrv1.QueryProposalRequest{Id: 1}, &p)
	if size := proto.Size(p.Proposal); size > 64<<10 {
		t.Fatalf("the largest params proposal is stored in %d bytes", size)
	}
	snapshots, err := store.OpenSnapshots(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshots.Create(context.Background(), c.Store, c.Height()); err != nil {
		t.Fatalf("snapshot with the largest params proposal: %v", err)
	}
	next.Categories = append(next.Categories, "one-more")
	ruleCheck(t, "a category past the most", c.Exec(apptest.Registrar(apptest.HospitalA), apptest.SetParams(next, 0)), app.ErrInvalidMsg,
		"params.categories lists 257, more than 256")
}
