package app_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// newestRulesTx is the determinism workload's next transaction, or (about one
// in eight) one of the newest kinds: a transaction with a timeout height
// near the head, a withdrawal, a retirement, an admission, an emergency
// service registered, a patient's opt-in to one, a break-glass read.
func newestRulesTx(w *workload, height int64) []byte {
	if len(w.patients) == 0 || w.rnd.IntN(8) > 0 {
		return w.tx()
	}
	w.n++
	w.pending = append(w.pending, nil)
	learn := &w.pending[len(w.pending)-1]
	reg := w.memberOf(emrv1.Role_ROLE_REGISTRAR)
	kind := w.rnd.IntN(10)
	if kind >= 7 && len(w.services) == 0 {
		kind = 6 // no service yet: register one
	}
	switch kind {
	case 6: // an emergency service of the registrar's organization
		m := &wMember{actor: apptest.NewActor(fmt.Sprintf("w-service-%d", w.n)), org: reg.org, role: emrv1.Role_ROLE_EMERGENCY_SERVICE}
		*learn = func() { w.members, w.services = append(w.members, m), append(w.services, m) }
		return w.sign(reg.actor, apptest.RegisterMember(m.actor, m.role, m.org))
	case 7: // a patient's opt-in to a service, sometimes for one category
		p, service := pick(w.rnd, w.patients), pick(w.rnd, w.services)
		spec := apptest.GrantSpec{Rights: []emrv1.Right{emrv1.Right_RIGHT_EMERGENCY}, NotAfter: w.chain.Now.Add(time.Duration(w.rnd.IntN(3600)-120) * time.Second), KeyVersion: p.version}
		if w.rnd.IntN(2) == 0 {
			spec.Categories = []string{pick(w.rnd, app.DefaultCategories)}
		}
		*learn = func() { w.optIns = append(w.optIns, wOptIn{p, service}) }
		return w.sign(p.actor, apptest.Grant(p.id, service.actor, spec))
	case 8, 9: // a break-glass read, mostly under an opt-in made, by a clinician of the service's organization
		p, service := pick(w.rnd, w.patients), pick(w.rnd, w.services)
		if len(w.optIns) > 0 && w.rnd.IntN(4) > 0 {
			o := pick(w.rnd, w.optIns)
			p, service = o.patient, o.service
		}
		reader := w.memberOf(emrv1.Role_ROLE_CLINICIAN)
		for range 3 {
			if reader.org == service.org {
				break
			}
			reader = w.memberOf(emrv1.Role_ROLE_CLINICIAN)
		}
		*learn = func() { w.emergencyReads++ }
		return w.sign(reader.actor, apptest.EmergencyAccess(p.id, service.actor, uint64(1+w.rnd.IntN(int(p.records)+1))))
	case 0, 1: // a timeout height just before, at or after the next block
		p := pick(w.rnd, w.patients)
		a := p.actor
		key := string(a.Address)
		seq, ok := w.seqs[key]
		if !ok {
			seq = w.chain.Seq(a.Address)
		}
		w.seqs[key] = seq + 1
		limit := uint64(max(1, height+int64(w.rnd.IntN(4))-1))
		return a.TxUntil(apptest.ChainID, seq, limit, apptest.AddRecordAt(p.id, pick(w.rnd, app.DefaultCategories), fmt.Sprintf("w-blob-%d", w.n), p.version))
	case 2:
		return w.sign(reg.actor, apptest.Withdraw(uint64(1+w.rnd.IntN(max(1, w.proposals)))))
	case 3:
		w.proposals++
		return w.sign(reg.actor, apptest.RetireOrganization(pick(w.rnd, w.orgs)))
	case 4:
		w.proposals++
		return w.sign(reg.actor, apptest.AddOrganization(fmt.Sprintf("w-org-%d", w.n), apptest.NewActor(fmt.Sprintf("w-org-reg-%d", w.n))))
	default: // 5
		w.proposals++
		return w.sign(reg.actor, apptest.ConsortiumSetStatus(pick(w.rnd, w.members).actor, pick(w.rnd, []emrv1.MemberStatus{emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE})))
	}
}

// TestPathsToABlockAgree runs one workload through four nodes that take
// different paths to the same blocks: FinalizeBlock alone; PrepareProposal
// of a prefix, then ProcessProposal, then FinalizeBlock (reuse when the
// block was accepted); a node on disk restarted every few blocks with a
// signature cache of one entry and a value cache of one; and a node that
// checks every transaction with CheckTx first. Results and app hashes must
// agree block by block.
func TestPathsToABlockAgree(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { pathsAgree(t, seed) })
	}
}

func pathsAgree(t *testing.T, seed uint64) {
	const blocks, txsPerBlock = 50, 30
	tiny := store.DefaultOptions()
	tiny.ValueCacheSize = 1
	tiny.KeepRecent, tiny.PruneInterval = 2, 3
	a := apptest.New(t, apptest.Options{})
	b := apptest.New(t, apptest.Options{})
	dir := t.TempDir()
	c := apptest.New(t, apptest.Options{Dir: dir, Store: &tiny})
	d := apptest.New(t, apptest.Options{})
	small := func(c *apptest.Chain) {
		n, err := app.New(c.Store, app.Options{SigCacheSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		c.App = n
	}
	small(c)
	e := apptest.New(t, apptest.Options{Dir: t.TempDir()})
	w := newWorkload(rand.New(rand.NewPCG(seed, 36)), a)
	for h := 0; h < blocks; h++ {
		if h%5 == 4 {
			c = c.Reopen()
			small(c)
		}
		gap := time.Duration(1+w.rnd.IntN(90)) * time.Second
		a.BlockInterval, b.BlockInterval, c.BlockInterval, d.BlockInterval, e.BlockInterval = gap, gap, gap, gap, gap
		var signers [][]byte
		for i := range 5 {
			if w.rnd.IntN(2) == 0 {
				signers = append(signers, apptest.Validator(i).Address)
			}
		}
		a.Signers, b.Signers, c.Signers, d.Signers, e.Signers = signers, signers, signers, signers, signers
		w.pending, w.seqs = nil, map[string]uint64{}
		var txs [][]byte
		for range txsPerBlock {
			txs = append(txs, newestRulesTx(w, a.Height()+1))
		}
		// b: the proposer's and a validator's paths.
		info := app.BlockInfo{Height: b.Height() + 1, Time: b.Now}
		b.App.PrepareProposal(info, txs[:len(txs)/2], 1<<30)
		_ = b.App.ProcessProposal(info, txs)
		// d: every tx through CheckTx first (results not compared: time).
		for _, tx := range txs {
			d.App.CheckTx(tx, false)
		}
		// e: finalizes, crashes before Commit (every third block), replays.
		if h%3 == 1 {
			ei := app.BlockInfo{Height: e.Height() + 1, Time: e.Now, Signers: signers}
			if _, _, err := e.App.FinalizeBlock(ei, txs); err != nil {
				t.Fatal(err)
			}
			e = e.Reopen()
			e.BlockInterval, e.Signers = gap, signers
		}
		ra, rb, rc, rd := a.Block(txs...), b.Block(txs...), c.Block(txs...), d.Block(txs...)
		re := e.Block(txs...)
		for i := range re {
			if re[i].Code != ra[i].Code {
				t.Fatalf("block %d tx %d: replayed %d %q, %d", a.Height(), i, re[i].Code, re[i].Log, ra[i].Code)
			}
		}
		if !bytes.Equal(a.AppHash(), e.AppHash()) || !sameValidators(a.ValidatorUpdates, e.ValidatorUpdates) || (a.ConsensusUpdate == nil) != (e.ConsensusUpdate == nil) {
			t.Fatalf("block %d: the replayed node differs", a.Height())
		}
		for i := range ra {
			if ra[i].Code != rb[i].Code || ra[i].Code != rc[i].Code || ra[i].Code != rd[i].Code || ra[i].Log != rb[i].Log || ra[i].Log != rc[i].Log {
				t.Fatalf("block %d tx %d: results differ: %d %q / %d %q / %d %q / %d", a.Height(), i, ra[i].Code, ra[i].Log, rb[i].Code, rb[i].Log, rc[i].Code, rc[i].Log, rd[i].Code)
			}
		}
		w.learn(ra)
		if !bytes.Equal(a.AppHash(), b.AppHash()) || !bytes.Equal(a.AppHash(), c.AppHash()) || !bytes.Equal(a.AppHash(), d.AppHash()) {
			t.Fatalf("block %d: app hashes differ", a.Height())
		}
		if !sameValidators(a.ValidatorUpdates, b.ValidatorUpdates) || !sameValidators(a.ValidatorUpdates, c.ValidatorUpdates) {
			t.Fatalf("block %d: validator updates differ", a.Height())
		}
	}
	if w.emergencyReads == 0 {
		t.Fatal("no break-glass read of the workload succeeded: the paths were not compared on one")
	}
	t.Logf("%d break-glass reads succeeded", w.emergencyReads)
}

// TestCheckTxAgreesWithTheBlockAtItsTime: at the same state and the same time
// (a block at the last block's time), CheckTx and FinalizeBlock must give
// every transaction the same code. An empty block at the new time comes
// first, so that CheckTx's clock (the last block's time) is the block's.
func TestCheckTxAgreesWithTheBlockAtItsTime(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			const blocks, txsPerBlock = 50, 30
			a := apptest.New(t, apptest.Options{})
			w := newWorkload(rand.New(rand.NewPCG(seed, 37)), a)
			mismatches := 0
			for h := 0; h < blocks; h++ {
				a.BlockInterval = 0
				a.Now = a.Now.Add(time.Duration(1+w.rnd.IntN(90)) * time.Second)
				a.Block() // the new time, as CheckTx's clock
				w.pending, w.seqs = nil, map[string]uint64{}
				var txs [][]byte
				for range txsPerBlock {
					txs = append(txs, newestRulesTx(w, a.Height()+1))
				}
				checked := make([]app.Result, len(txs))
				for i, tx := range txs {
					checked[i] = a.App.CheckTx(tx, false)
				}
				res := a.Block(txs...)
				for i := range res {
					if res[i].Code != checked[i].Code {
						mismatches++
						if mismatches < 10 {
							t.Errorf("block %d tx %d: CheckTx %d %q, block %d %q", a.Height(), i, checked[i].Code, checked[i].Log, res[i].Code, res[i].Log)
						}
					}
				}
				w.learn(res)
			}
			if w.emergencyReads == 0 {
				t.Fatal("no break-glass read of the workload succeeded: CheckTx and the block were not compared on one")
			}
		})
	}
}

// TestExpiredTxInProposals: a transaction past its timeout height is
// left out by PrepareProposal, refuses the block in ProcessProposal, fails
// (code 30, no state change) in a block decided anyway, and is refused by
// CheckTx, all at the same height; at its timeout height all four accept it.
func TestExpiredTxInProposals(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	pat := apptest.NewActor("expiry")
	c.Must(pat, apptest.Enroll(pat))
	pid := apptest.PatientID("expiry")
	next := uint64(c.Height() + 1)
	expired := pat.TxUntil(apptest.ChainID, 1, next-1, apptest.AddRecord(pid, "lab-results", "x"))
	b := app.BlockInfo{Height: c.Height() + 1, Time: c.Now}
	if got := c.App.PrepareProposal(b, [][]byte{expired}, 1<<20); len(got) != 0 {
		t.Errorf("PrepareProposal kept an expired tx")
	}
	if err := c.App.ProcessProposal(b, [][]byte{expired}); err == nil {
		t.Errorf("ProcessProposal accepted a block with an expired tx")
	}
	if res := c.App.CheckTx(expired, false); res.Code != app.ErrTxExpired.Code() {
		t.Errorf("CheckTx: %d %s", res.Code, res.Log)
	}
	hash := c.AppHash()
	if res := c.Block(expired); res[0].Code != app.ErrTxExpired.Code() || !bytes.Equal(hash, c.AppHash()) {
		t.Errorf("decided anyway: %d %s, app hash moved: %v", res[0].Code, res[0].Log, !bytes.Equal(hash, c.AppHash()))
	}
	atLimit := pat.TxUntil(apptest.ChainID, 1, uint64(c.Height()+1), apptest.AddRecord(pid, "lab-results", "y"))
	b = app.BlockInfo{Height: c.Height() + 1, Time: c.Now}
	if res := c.App.CheckTx(atLimit, false); !res.OK() {
		t.Errorf("CheckTx at the timeout height: %d %s", res.Code, res.Log)
	}
	if got := c.App.PrepareProposal(b, [][]byte{atLimit}, 1<<20); len(got) != 1 {
		t.Errorf("PrepareProposal dropped a tx at its timeout height")
	}
	if err := c.App.ProcessProposal(b, [][]byte{atLimit}); err != nil {
		t.Errorf("ProcessProposal at the timeout height: %v", err)
	}
	if res := c.Block(atLimit); !res[0].OK() {
		t.Errorf("block at the timeout height: %d %s", res[0].Code, res[0].Log)
	}
}
