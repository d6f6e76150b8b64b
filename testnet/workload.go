package testnet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/internal/ctxtime"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Bounds of a workload round.
const (
	roundWait       = 15 * time.Second // for the admitted txs of a round
	roundIdleBlocks = 3                // blocks after which an admitted tx counts as dropped
	genAttempts     = 8                // tries per tx to find a signer unused in the round
)

// Workload is a randomized stream (fixed seed; reproducible up to the order
// in which the mempools admit a round) of valid and invalid transactions
// over the consortium, in rounds: each round signs at most one transaction
// per signer at its committed sequence, broadcasts them all at once to the
// running nodes in turn (those that have the previous rounds' blocks), waits for the admitted ones to be
// committed and learns from the results which members, patients and
// records exist. Invalid transactions are refused by CheckTx, or admitted
// and then dropped by the proposer once an earlier transaction of the same
// round has made them invalid: both paths run on every node.
type Workload struct {
	net           *Net
	rnd           *rand.Rand
	prefix        string
	orgs          []string
	members       []*wMember
	patients      []*wPatient
	n             int
	roundPatients []string // names of the patients enrolling in the current round

	// Statistics.
	Broadcast, Rejected, Committed, Dropped int
	Codes                                   map[uint32]int // CheckTx refusals by code
}

type wMember struct {
	actor *apptest.Actor
	org   string
	role  emrv1.Role
}

type wPatient struct {
	actor    *apptest.Actor
	id       []byte
	records  uint64
	grantees []*apptest.Actor
}

// wTx is a generated transaction and what its success teaches.
type wTx struct {
	tx    []byte
	learn func()
}

// NewWorkload starts a workload with the testnet's registrars as the only
// members; prefix keeps its actors' names unique on the chain.
func NewWorkload(n *Net, seed uint64, prefix string) *Workload {
	w := &Workload{net: n, rnd: rand.New(rand.NewPCG(seed, 7)), prefix: prefix, Codes: map[uint32]int{}}
	for _, o := range n.Desc.Orgs {
		w.orgs = append(w.orgs, o.ID)
		w.members = append(w.members, &wMember{actor: n.Registrar(o.ID), org: o.ID, role: emrv1.Role_ROLE_REGISTRAR})
	}
	return w
}

// Round generates up to size transactions, broadcasts them and waits for
// the admitted ones.
func (w *Workload) Round(ctx context.Context, size int) error {
	w.roundPatients = w.roundPatients[:0]
	used := map[string]bool{}
	seqs := map[string]uint64{}
	seqOf := func(a *apptest.Actor) (uint64, bool) {
		if used[string(a.Address)] {
			return 0, false
		}
		s, ok := seqs[string(a.Address)]
		if !ok {
			var err error
			if s, err = w.net.NextSequence(ctx, a.Address); err != nil {
				return 0, false
			}
			seqs[string(a.Address)] = s
		}
		used[string(a.Address)] = true
		return s, true
	}
	var txs []wTx
	for range size {
		for range genAttempts {
			if t, ok := w.tx(seqOf); ok {
				txs = append(txs, t)
				break
			}
		}
	}

	// All at once, to the nodes in turn: two txs that conflict (the same
	// patient id enrolled twice, a member suspended while it signs) then
	// often reach different mempools, both pass CheckTx, and the proposer
	// must drop the loser.
	type pending struct {
		hash  []byte
		learn func()
	}
	codes := make([]uint32, len(txs))
	errs := make([]error, len(txs))
	var wg sync.WaitGroup
	for k, t := range txs {
		i, err := w.net.PickCurrent(ctx)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[k], _, errs[k] = w.net.Broadcast(ctx, i, t.tx)
		}()
	}
	wg.Wait()
	var admitted []pending
	for k, t := range txs {
		if errs[k] != nil {
			return fmt.Errorf("broadcast: %w", errs[k])
		}
		w.Broadcast++
		if codes[k] != 0 {
			w.Rejected++
			w.Codes[codes[k]]++
			continue
		}
		admitted = append(admitted, pending{cmttypes.Tx(t.tx).Hash(), t.learn})
	}

	start := w.net.MaxHeight()
	deadline := time.Now().Add(roundWait)
	for len(admitted) > 0 && time.Now().Before(deadline) && w.net.MaxHeight() < start+roundIdleBlocks {
		var left []pending
		for _, p := range admitted {
			i := w.net.Pick()
			if i < 0 {
				return fmt.Errorf("no node is running")
			}
			c, err := w.net.Tx(ctx, i, p.hash)
			if err != nil {
				left = append(left, p)
				continue
			}
			w.Committed++
			if c.Code != 0 {
				return fmt.Errorf("tx %X committed at %d with code %d: %s (the proposer must drop failing txs)", c.Hash, c.Height, c.Code, c.Log)
			}
			if p.learn != nil {
				p.learn()
			}
		}
		admitted = left
		if err := ctxtime.Sleep(ctx, 2*txPollInterval); err != nil {
			return err
		}
	}
	w.Dropped += len(admitted)
	return nil
}

func pick[T any](rnd *rand.Rand, xs []T) T { return xs[rnd.IntN(len(xs))] }

func (w *Workload) memberOf(roles ...emrv1.Role) *wMember {
	var cands []*wMember
	for _, m := range w.members {
		if slices.Contains(roles, m.role) {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return w.members[0]
	}
	return pick(w.rnd, cands)
}

// someone is usually one of p's grantees, else any member with one of roles.
func (w *Workload) someone(p *wPatient, roles ...emrv1.Role) *apptest.Actor {
	if len(p.grantees) > 0 && w.rnd.IntN(4) > 0 {
		return pick(w.rnd, p.grantees)
	}
	return w.memberOf(roles...).actor
}

// tx generates one transaction; ok is false when its signer has signed in
// this round already.
func (w *Workload) tx(seqOf func(*apptest.Actor) (uint64, bool)) (wTx, bool) {
	w.n++
	chainID := w.net.ChainID
	sign := func(a *apptest.Actor, msg *emrv1.Msg, learn func()) (wTx, bool) {
		seq, ok := seqOf(a)
		if !ok {
			return wTx{}, false
		}
		return wTx{tx: a.Tx(chainID, seq, msg), learn: learn}, true
	}
	cats := app.DefaultCategories
	now := time.Now()
	roll := w.rnd.IntN(100)
	if len(w.patients) == 0 && roll >= 10 && roll < 90 {
		roll = 10 + w.rnd.IntN(10) // enroll first
	}
	switch {
	case roll < 10: // register a member, sometimes into another org
		reg := w.memberOf(emrv1.Role_ROLE_REGISTRAR)
		org := reg.org
		if w.rnd.IntN(5) == 0 {
			org = pick(w.rnd, w.orgs)
		}
		role := pick(w.rnd, []emrv1.Role{emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER, emrv1.Role_ROLE_AUDITOR})
		actor := apptest.NewActor(fmt.Sprintf("%s-member-%d", w.prefix, w.n))
		return sign(reg.actor, apptest.RegisterMember(actor, role, org), func() {
			w.members = append(w.members, &wMember{actor: actor, org: org, role: role})
		})
	case roll < 20: // enroll, sometimes claiming another's id (refused: ids are bound to keys)
		actor := apptest.NewActor(fmt.Sprintf("%s-patient-%d", w.prefix, w.n))
		id, msg := apptest.PatientID(actor.Name), apptest.Enroll(actor)
		switch {
		case len(w.roundPatients) > 0 && w.rnd.IntN(4) == 0:
			victim := pick(w.rnd, w.roundPatients) // front-runs another enrollment of this round
			id, msg = apptest.PatientID(victim), apptest.EnrollAs(actor, victim)
		case len(w.patients) > 0 && w.rnd.IntN(6) == 0:
			victim := pick(w.rnd, w.patients)
			id, msg = victim.id, apptest.EnrollAs(actor, victim.actor.Name)
		}
		w.roundPatients = append(w.roundPatients, actor.Name)
		return sign(actor, msg, func() {
			w.patients = append(w.patients, &wPatient{actor: actor, id: id})
		})
	case roll < 34: // grant, sometimes to the wrong member, by the wrong signer or with a bad window
		p := pick(w.rnd, w.patients)
		to := w.memberOf(emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER)
		if w.rnd.IntN(8) == 0 {
			to = pick(w.rnd, w.members)
		}
		rights := []emrv1.Right{pick(w.rnd, []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE})}
		if w.rnd.IntN(2) == 0 {
			rights = append(rights, emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE)
		}
		spec := apptest.GrantSpec{Rights: rights, NotAfter: now.Add(time.Duration(w.rnd.IntN(3600)-120) * time.Second)}
		if w.rnd.IntN(2) == 0 {
			spec.Categories = []string{pick(w.rnd, cats), pick(w.rnd, cats)}
		}
		if w.rnd.IntN(6) == 0 {
			spec.NotBefore = now.Add(time.Duration(w.rnd.IntN(600)) * time.Second)
		}
		signer := p.actor
		if w.rnd.IntN(10) == 0 {
			signer = pick(w.rnd, w.members).actor
		}
		return sign(signer, apptest.Grant(p.id, to.actor, spec), func() { p.grantees = append(p.grantees, to.actor) })
	case roll < 40: // revoke
		p := pick(w.rnd, w.patients)
		return sign(p.actor, apptest.Revoke(p.id, w.someone(p)), nil)
	case roll < 60: // add a record, by the owner or a member
		p := pick(w.rnd, w.patients)
		uploader := p.actor
		if w.rnd.IntN(3) > 0 {
			uploader = w.someone(p, emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER)
		}
		return sign(uploader, apptest.AddRecord(p.id, pick(w.rnd, cats), fmt.Sprintf("%s-blob-%d", w.prefix, w.n)), func() { p.records++ })
	case roll < 78: // read records, sometimes ones that do not exist
		p := pick(w.rnd, w.patients)
		reader := w.someone(p, emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER, emrv1.Role_ROLE_AUDITOR)
		if w.rnd.IntN(5) == 0 {
			reader = p.actor
		}
		var seqs []uint64
		for range 1 + w.rnd.IntN(3) {
			if s := uint64(1 + w.rnd.IntN(int(p.records)+1)); !slices.Contains(seqs, s) {
				seqs = append(seqs, s)
			}
		}
		return sign(reader, apptest.Access(p.id, emrv1.Purpose_PURPOSE_TREATMENT, seqs...), nil)
	case roll < 84: // suspend or reactivate a member
		reg := w.memberOf(emrv1.Role_ROLE_REGISTRAR)
		target := pick(w.rnd, w.members)
		status := pick(w.rnd, []emrv1.MemberStatus{emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE})
		return sign(reg.actor, apptest.SetStatus(target.actor, status), nil)
	default: // junk: garbage, a forged signature, another chain, a wrong sequence, an unknown signer
		stranger := apptest.NewActor(fmt.Sprintf("%s-stranger-%d", w.prefix, w.n))
		m := pick(w.rnd, w.members).actor
		msg := apptest.RegisterMember(stranger, emrv1.Role_ROLE_CLINICIAN, pick(w.rnd, w.orgs))
		switch w.rnd.IntN(5) {
		case 0:
			junk := make([]byte, 1+w.rnd.IntN(200))
			for i := range junk {
				junk[i] = byte(w.rnd.UintN(256))
			}
			return wTx{tx: junk}, true
		case 1:
			tx := m.Tx(chainID, 0, msg)
			tx[len(tx)-1] ^= 0x55 // the signature's last byte
			return wTx{tx: tx}, true
		case 2:
			return wTx{tx: m.Tx(chainID+"-other", 0, msg)}, true
		case 3:
			return wTx{tx: m.Tx(chainID, 1_000_000+uint64(w.n), msg)}, true
		default:
			return wTx{tx: stranger.Tx(chainID, 0, apptest.Revoke(apptest.PatientID("nobody"), m))}, true
		}
	}
}
