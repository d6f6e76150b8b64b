package app_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// TestDeterminism feeds three independent instances — memdb, pebble, and
// goleveldb restarted from disk halfway — the same randomized stream of
// valid and invalid transactions (fixed seed) and demands the same app
// hash and the same validator updates after every block, updates CometBFT
// accepts (a mirror of its validator set applies them).
func TestDeterminism(t *testing.T) {
	const blocks, txsPerBlock = 56, 40
	pebble, leveldb := store.DefaultOptions(), store.DefaultOptions()
	pebble.Backend, leveldb.Backend = "pebble", "goleveldb"
	a := apptest.New(t, apptest.Options{})
	b := apptest.New(t, apptest.Options{Dir: t.TempDir(), Store: &pebble})
	c := apptest.New(t, apptest.Options{Dir: t.TempDir(), Store: &leveldb})
	if !bytes.Equal(a.AppHash(), b.AppHash()) || !bytes.Equal(a.AppHash(), c.AppHash()) {
		t.Fatal("genesis app hashes differ")
	}
	w := newWorkload(rand.New(rand.NewPCG(20261121, 1)), a)
	mirror := newCometSet(apptest.GenesisValidators())
	total, failed, updates := 0, 0, 0
	codes := map[uint32]int{}
	for h := 0; h < blocks; h++ {
		if h == blocks/2 {
			c = c.Reopen()
		}
		// Blocks are 1 to 90 s apart so windows open and expire.
		gap := time.Duration(1+w.rnd.IntN(90)) * time.Second
		a.BlockInterval, b.BlockInterval, c.BlockInterval = gap, gap, gap
		// Some of the five keys the workload makes validators sign.
		var signers [][]byte
		for i := range 5 {
			if w.rnd.IntN(2) == 0 {
				signers = append(signers, apptest.Validator(i).Address)
			}
		}
		a.Signers, b.Signers, c.Signers = signers, signers, signers
		txs := w.block(txsPerBlock)
		ra, rb, rc := a.Block(txs...), b.Block(txs...), c.Block(txs...)
		for i := range ra {
			if ra[i].Code != rb[i].Code || ra[i].Code != rc[i].Code || ra[i].Log != rb[i].Log {
				t.Fatalf("block %d tx %d: results differ: %d %q / %d / %d", a.Height(), i, ra[i].Code, ra[i].Log, rb[i].Code, rc[i].Code)
			}
			if !sameValidators(ra[i].ValidatorUpdates, rb[i].ValidatorUpdates) || !sameValidators(ra[i].ValidatorUpdates, rc[i].ValidatorUpdates) {
				t.Fatalf("block %d tx %d: validator updates differ", a.Height(), i)
			}
			updates += len(ra[i].ValidatorUpdates)
			for _, v := range ra[i].ValidatorUpdates {
				w.keyChanges[string(v.PubKey)]++
			}
			if ra[i].OK() && ra[i].ParamsChanged {
				w.paramsChanges++
			}
			if !ra[i].OK() {
				failed++
				codes[ra[i].Code]++
			}
		}
		if !sameValidators(a.ValidatorUpdates, b.ValidatorUpdates) || !sameValidators(a.ValidatorUpdates, c.ValidatorUpdates) {
			t.Fatalf("block %d: the validator updates for CometBFT differ", a.Height())
		}
		mirror.apply(t, a)
		w.learn(ra)
		total += len(txs)
		if !bytes.Equal(a.AppHash(), b.AppHash()) || !bytes.Equal(a.AppHash(), c.AppHash()) {
			t.Fatalf("block %d: app hashes differ: memdb %X, pebble %X, goleveldb (restarted) %X", a.Height(), a.AppHash(), b.AppHash(), c.AppHash())
		}
	}
	t.Logf("%d txs over %d blocks, %d rejected (by code: %v), %d validator changes, %d params changes; final app hash %X",
		total, blocks, failed, codes, updates, w.paramsChanges, a.AppHash())
	if updates == 0 || w.paramsChanges == 0 {
		t.Fatal("the workload changed no validator, or no params")
	}
	if failed < total/10 || failed > total*9/10 {
		t.Fatalf("%d of %d txs rejected: the workload should mix valid and invalid txs", failed, total)
	}
}

// workload generates a random but reproducible stream of transactions,
// learning from the results which members, patients and records exist.
type workload struct {
	rnd      *rand.Rand
	chain    *apptest.Chain // the reference instance, for sequences
	orgs     []string
	members  []*wMember
	patients []*wPatient
	studies  []string
	services []*wMember // emergency services registered (newestRulesTx)
	optIns   []wOptIn   // patients' opt-ins made (maybe since expired or revoked)
	// emergencyReads counts the break-glass reads that succeeded.
	emergencyReads int
	n              int
	proposals      int // proposals sent (an upper bound of those made)
	// paramsChanges is how many params changes executed: the from_changes
	// of the next params proposal.
	paramsChanges uint64
	// keyChanges is, per consensus key, how many validator changes
	// executed: the change count its next proof of possession is for.
	keyChanges map[string]uint64
	pending    []func() // per tx of the current block: what success teaches
	seqs       map[string]uint64
}

type wMember struct {
	actor *apptest.Actor
	org   string
	role  emrv1.Role
}

// wOptIn is a patient's opt-in to an emergency service.
type wOptIn struct {
	patient *wPatient
	service *wMember
}

type wPatient struct {
	actor    *apptest.Actor
	id       []byte
	version  uint64
	records  uint64
	grantees []*apptest.Actor // granted at some point (maybe since expired or revoked)
}

// someone is usually one of p's grantees, else any member with one of roles.
func (w *workload) someone(p *wPatient, roles ...emrv1.Role) *apptest.Actor {
	if len(p.grantees) > 0 && w.rnd.IntN(4) > 0 {
		return pick(w.rnd, p.grantees)
	}
	return w.memberOf(roles...).actor
}

func newWorkload(rnd *rand.Rand, chain *apptest.Chain) *workload {
	w := &workload{rnd: rnd, chain: chain, orgs: []string{apptest.HospitalA, apptest.HospitalB, apptest.Research}, keyChanges: map[string]uint64{}}
	for _, org := range w.orgs {
		w.members = append(w.members, &wMember{actor: apptest.Registrar(org), org: org, role: emrv1.Role_ROLE_REGISTRAR})
	}
	return w
}

func (w *workload) block(n int) [][]byte {
	w.pending = nil
	w.seqs = map[string]uint64{}
	txs := make([][]byte, 0, n)
	for range n {
		txs = append(txs, w.tx())
	}
	return txs
}

func (w *workload) learn(results []app.Result) {
	for i, res := range results {
		if res.OK() && w.pending[i] != nil {
			w.pending[i]()
		}
	}
}

// sign signs msg by a with its next sequence within this block (failures
// earlier in the block leave later txs of the same signer out of order:
// that is part of the stream).
func (w *workload) sign(a *apptest.Actor, msg *emrv1.Msg) []byte {
	key := string(a.Address)
	seq, ok := w.seqs[key]
	if !ok {
		seq = w.chain.Seq(a.Address)
	}
	w.seqs[key] = seq + 1
	return a.Tx(apptest.ChainID, seq, msg)
}

func pick[T any](rnd *rand.Rand, xs []T) T { return xs[rnd.IntN(len(xs))] }

func (w *workload) memberOf(roles ...emrv1.Role) *wMember {
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

func (w *workload) tx() []byte {
	w.n++
	var learn func()
	defer func() { w.pending = append(w.pending, learn) }()
	cats := app.DefaultCategories
	roll := w.rnd.IntN(100)
	if len(w.patients) == 0 && roll >= 8 {
		roll = 10 // enroll first
	}
	switch {
	case roll < 8: // register a member, sometimes into the wrong org
		reg := w.memberOf(emrv1.Role_ROLE_REGISTRAR)
		org := reg.org
		if w.rnd.IntN(5) == 0 {
			org = pick(w.rnd, w.orgs)
		}
		role := pick(w.rnd, []emrv1.Role{emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER, emrv1.Role_ROLE_AUDITOR})
		actor := apptest.NewActor(fmt.Sprintf("w-member-%d", w.n))
		learn = func() { w.members = append(w.members, &wMember{actor: actor, org: org, role: role}) }
		return w.sign(reg.actor, apptest.RegisterMember(actor, role, org))
	case roll < 16: // enroll, sometimes with a taken id
		actor := apptest.NewActor(fmt.Sprintf("w-patient-%d", w.n))
		id, msg := apptest.PatientID(actor.Name), apptest.Enroll(actor)
		if len(w.patients) > 0 && w.rnd.IntN(6) == 0 {
			victim := pick(w.rnd, w.patients)
			id, msg = victim.id, apptest.EnrollAs(actor, victim.actor.Name)
		}
		learn = func() { w.patients = append(w.patients, &wPatient{actor: actor, id: id, version: 1}) }
		return w.sign(actor, msg)
	case roll < 30: // grant, sometimes to the wrong kind of member or with bad windows
		p := pick(w.rnd, w.patients)
		to := w.memberOf(emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER)
		if w.rnd.IntN(8) == 0 {
			to = pick(w.rnd, w.members) // maybe a registrar or auditor: refused
		}
		rights := []emrv1.Right{pick(w.rnd, []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE, emrv1.Right_RIGHT_SHARE})}
		if w.rnd.IntN(2) == 0 {
			rights = append(rights, emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE)
		}
		spec := apptest.GrantSpec{Rights: rights, NotAfter: w.chain.Now.Add(time.Duration(w.rnd.IntN(3600)-120) * time.Second), KeyVersion: p.version}
		if w.rnd.IntN(2) == 0 {
			spec.Categories = []string{pick(w.rnd, cats), pick(w.rnd, cats)}
		}
		if w.rnd.IntN(10) == 0 {
			spec.KeyVersion++ // sealed for a version the patient is not at: refused
		}
		if w.rnd.IntN(4) == 0 {
			spec.NotBefore = w.chain.Now.Add(time.Duration(w.rnd.IntN(600)) * time.Second)
		}
		if slices.Contains(rights, emrv1.Right_RIGHT_SHARE) {
			spec.Study = "none"
			if len(w.studies) > 0 {
				spec.Study = pick(w.rnd, w.studies)
			}
			spec.Anonymise = w.rnd.IntN(2) == 0
		}
		signer := p.actor
		if w.rnd.IntN(10) == 0 {
			signer = pick(w.rnd, w.members).actor // not the owner
		}
		learn = func() { p.grantees = append(p.grantees, to.actor) }
		return w.sign(signer, apptest.Grant(p.id, to.actor, spec))
	case roll < 34: // revoke
		p := pick(w.rnd, w.patients)
		return w.sign(p.actor, apptest.Revoke(p.id, w.someone(p)))
	case roll < 56: // add a record, by the owner or a member
		p := pick(w.rnd, w.patients)
		uploader := p.actor
		if w.rnd.IntN(3) > 0 {
			uploader = w.someone(p, emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER)
		}
		learn = func() { p.records++ }
		return w.sign(uploader, apptest.AddRecordAt(p.id, pick(w.rnd, cats), fmt.Sprintf("w-blob-%d", w.n), p.version))
	case roll < 76: // read records, sometimes ones that do not exist
		p := pick(w.rnd, w.patients)
		reader := w.someone(p, emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER, emrv1.Role_ROLE_AUDITOR)
		if w.rnd.IntN(5) == 0 {
			reader = p.actor
		}
		var seqs []uint64
		for range 1 + w.rnd.IntN(3) {
			s := uint64(1 + w.rnd.IntN(int(p.records)+1))
			if !slices.Contains(seqs, s) {
				seqs = append(seqs, s)
			}
		}
		purpose := emrv1.Purpose_PURPOSE_TREATMENT
		if w.rnd.IntN(5) == 0 {
			purpose = emrv1.Purpose_PURPOSE_RESEARCH
		}
		return w.sign(reader, apptest.Access(p.id, purpose, seqs...))
	case roll < 80: // suspend or reactivate
		reg := w.memberOf(emrv1.Role_ROLE_REGISTRAR)
		target := pick(w.rnd, w.members)
		status := pick(w.rnd, []emrv1.MemberStatus{emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE})
		return w.sign(reg.actor, apptest.SetStatus(target.actor, status))
	case roll < 84: // rotate the key with envelopes for the standing grants
		p := pick(w.rnd, w.patients)
		var perms emrv1.QueryPermissionsResponse
		w.chain.Query("Permissions", &emrv1.QueryPermissionsRequest{PatientId: hexOf(p.id)}, &perms)
		var envs []*emrv1.KeyEnvelope
		for _, perm := range perms.Permissions {
			if perm.RevokedHeight == 0 && w.chain.Now.Before(perm.NotAfter.AsTime()) {
				envs = append(envs, &emrv1.KeyEnvelope{Grantee: perm.Grantee, WrappedKek: []byte(fmt.Sprintf("kek-%d", w.n))})
			}
		}
		// Below the floor of an unfinished revocation no key is re-wrapped
		// (the chain refuses it: one rotation in eight tries).
		var pat emrv1.QueryPatientResponse
		w.chain.Query("Patient", &emrv1.QueryPatientRequest{PatientId: hexOf(p.id)}, &pat)
		var rewrapped []*emrv1.RewrappedKey
		for s := uint64(1); s <= p.records && s <= 5 && (p.version+1 >= pat.Patient.GetMinKeyVersion() || w.n%8 == 0); s++ {
			rewrapped = append(rewrapped, &emrv1.RewrappedKey{RecordSequence: s, WrappedFileKey: []byte(fmt.Sprintf("fk-%d-%d", w.n, s))})
		}
		learn = func() { p.version++ }
		return w.sign(p.actor, apptest.RotateKey(p.id, p.version+1, envs, rewrapped))
	case roll < 88: // register a study
		reg := w.memberOf(emrv1.Role_ROLE_REGISTRAR)
		pi := w.memberOf(emrv1.Role_ROLE_RESEARCHER)
		id := fmt.Sprintf("study-%d", w.n)
		learn = func() { w.studies = append(w.studies, id) }
		return w.sign(reg.actor, apptest.RegisterStudy(id, pi.actor))
	case roll < 93: // share
		p := pick(w.rnd, w.patients)
		study := "none"
		if len(w.studies) > 0 {
			study = pick(w.rnd, w.studies)
		}
		return w.sign(w.someone(p, emrv1.Role_ROLE_CLINICIAN), apptest.Share(p.id, uint64(1+w.rnd.IntN(int(p.records)+1)), study, w.rnd.IntN(2) == 0))
	case roll < 95: // propose a validator change (powers 0 to 20 among five keys) or new params, or approve a proposal
		reg := w.memberOf(emrv1.Role_ROLE_REGISTRAR)
		if w.proposals == 0 || w.rnd.IntN(4) == 0 {
			learn = func() { w.proposals++ }
			if w.proposals%2 == 1 {
				// A limit reads of records run into, from the next block
				// (no draw: the stream of draws stays that of the workload
				// before params changes).
				params := app.DefaultParams()
				params.MaxRecordsPerAccess = uint32(1 + w.n%4)
				// And CometBFT's block size, which FinalizeBlock hands on.
				params.Consensus = app.DefaultConsensusLimits()
				params.Consensus.BlockMaxBytes = int64(4+w.n%3) << 20
				return w.sign(reg.actor, apptest.SetParams(params, w.paramsChanges))
			}
			// With the key's proof of possession for its change count at
			// the start of the block: adding the fifth (or re-adding a
			// removed key) needs it, and the chain checks it on the
			// others too (one made stale by a change earlier in the
			// block is refused).
			v := apptest.Validator(w.rnd.IntN(5))
			return w.sign(reg.actor, apptest.AddValidatorAt(v, int64(w.rnd.IntN(21)), w.keyChanges[string(v.SignPub())]))
		}
		// Mostly the newest, so that some gather all three organizations.
		return w.sign(reg.actor, apptest.Approve(uint64(max(1, w.proposals-w.rnd.IntN(2)))))
	case roll < 96: // a broken signature
		tx := w.sign(pick(w.rnd, w.members).actor, apptest.Revoke(apptest.PatientID("x"), w.members[0].actor))
		tx[len(tx)-1] ^= 0x40
		return tx
	case roll < 98: // another chain
		a := pick(w.rnd, w.members).actor
		return a.Tx("another-chain", 0, apptest.Revoke(apptest.PatientID("x"), a))
	default: // garbage
		b := make([]byte, w.rnd.IntN(200))
		for i := range b {
			b[i] = byte(w.rnd.Uint32())
		}
		return b
	}
}

func sameValidators(a, b []*emrv1.Validator) bool {
	return slices.EqualFunc(a, b, func(x, y *emrv1.Validator) bool { return bytes.Equal(x.PubKey, y.PubKey) && x.Power == y.Power })
}
