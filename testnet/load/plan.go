package load

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Kinds of transactions a load sends.
const (
	kindRegister uint8 = iota
	kindEnroll
	kindGrant
	kindAddRecord
	kindAccess
	kindRevoke
	kindRotate
	numKinds
)

var kindNames = [numKinds]string{"register", "enroll", "grant", "add-record", "record-access", "revoke", "rotate-key"}

// Mix is the share (weights) of each kind of transaction in the measured
// phase. Consent is a patient's Grant, Revoke and two RotateKeys, in turn
// (the two rotations a revocation needs before the patient adds a record
// or grants that member again: app.KeyRotationPending).
type Mix struct {
	AddRecord    int
	RecordAccess int
	Consent      int
}

// DefaultMix is 60% AddRecord, 30% RecordAccess, 10% Grant/Revoke/RotateKey.
var DefaultMix = Mix{AddRecord: 60, RecordAccess: 30, Consent: 10}

func (m Mix) total() int { return m.AddRecord + m.RecordAccess + m.Consent }

func (m Mix) String() string {
	return fmt.Sprintf("add-record=%d,record-access=%d,consent=%d", m.AddRecord, m.RecordAccess, m.Consent)
}

// maxWeight bounds a weight of the mix, so that their sum cannot overflow.
const maxWeight = 1_000_000

// ParseMix reads "add-record=60,record-access=30,consent=10" (weights, any
// scale; a kind left out weighs 0). A refusal returns the zero Mix.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if !ok || err != nil || n < 0 || n > maxWeight {
			return Mix{}, fmt.Errorf("mix %q: want kind=weight, a weight from 0 to %d, e.g. add-record=60", part, maxWeight)
		}
		switch strings.TrimSpace(k) {
		case "add-record":
			m.AddRecord = n
		case "record-access":
			m.RecordAccess = n
		case "consent":
			m.Consent = n
		default:
			return Mix{}, fmt.Errorf("mix: unknown kind %q (want add-record, record-access or consent)", k)
		}
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("mix %q: every weight is 0", s)
	}
	return m, nil
}

// plannedTx is one transaction of a load, signed before it is sent.
type plannedTx struct {
	signer int32 // index into plan.signers
	kind   uint8
	seq    uint64
	build  func() (*emrv1.Msg, error) // nil once signed
	raw    []byte
	hash   [32]byte

	// Filled in by the sender and the observer.
	sendNs atomic.Int64 // first broadcast attempt, unix ns (0: never sent)
	// dueNs is when the tx was due by the schedule of a target rate, unix
	// ns (0: sent at saturation); set before the workers start.
	dueNs    int64
	accepted atomic.Bool
	// refused: CheckTx refused it, or it was not sent because an earlier
	// tx of its signer was; it has no latency.
	refused  atomic.Bool
	commitNs int64 // when the observer saw its block (0: not yet); under observer.mu
	height   int64
	code     uint32
	codeSet  string
	unknown  bool // in a block whose results never came: code unknown
}

// latencyFromNs is when the tx's submit-to-commit latency starts: when it
// was due, at a target rate (time spent waiting in the sender counts), or
// its first send attempt, at saturation (there is no schedule).
func (t *plannedTx) latencyFromNs() int64 {
	if t.dueNs != 0 {
		return t.dueNs
	}
	return t.sendNs.Load()
}

// plan holds the actors of a load and their next sequences.
type plan struct {
	chainID string
	prefix  string
	rng     *rand.Rand

	signers    []*signer
	next       []uint64 // next sequence of each signer
	registrars []int    // signer indexes
	regOrg     []string
	clinicians []int
	// patients[c] are the clinical patients of clinician c (signer
	// indexes); patientID by signer index.
	patients   [][]int
	consent    []int // patients changing their consents
	patientID  map[int][]byte
	keyVersion map[int]uint64
	cycle      map[int]int    // consent patient -> next step (grant, revoke, rotate, rotate)
	consultant map[int][]byte // consent patient -> grantee of its last grant

	// round-robin cursors of the measured phase
	nextClin, nextConsent int
	clinPatient           []int
	recordNo              int
}

// PlanConfig sizes the population of a load.
type PlanConfig struct {
	// Clinicians each have their own sequence stream; 0 means 128.
	Clinicians int
	// PatientsPerClinician are enrolled, grant their clinician read and
	// write, and get one record at setup; 0 means 8.
	PatientsPerClinician int
	// ConsentPatients grant, revoke and rotate their key during the
	// measured phase (the consent share of the mix); 0 means 256.
	ConsentPatients int
}

func (c *PlanConfig) defaults() {
	if c.Clinicians <= 0 {
		c.Clinicians = 128
	}
	if c.PatientsPerClinician <= 0 {
		c.PatientsPerClinician = 8
	}
	if c.ConsentPatients <= 0 {
		c.ConsentPatients = 256
	}
}

func (p *plan) add(s *signer, next uint64) int {
	p.signers = append(p.signers, s)
	p.next = append(p.next, next)
	return len(p.signers) - 1
}

func newPlan(chainID, prefix string, seed uint64, regs []*registrar, regNext []uint64, c PlanConfig) *plan {
	c.defaults()
	p := &plan{
		chainID: chainID, prefix: prefix, rng: rand.New(rand.NewPCG(seed, 0x656d72)),
		patientID: map[int][]byte{}, keyVersion: map[int]uint64{}, cycle: map[int]int{}, consultant: map[int][]byte{},
	}
	for i, r := range regs {
		p.registrars = append(p.registrars, p.add(r.signer, regNext[i]))
		p.regOrg = append(p.regOrg, r.org)
	}
	for i := range c.Clinicians {
		p.clinicians = append(p.clinicians, p.add(newSigner(fmt.Sprintf("%s/clinician-%d", prefix, i)), 0))
	}
	p.patients = make([][]int, c.Clinicians)
	p.clinPatient = make([]int, c.Clinicians)
	for i := range c.Clinicians {
		for j := range c.PatientsPerClinician {
			idx := p.add(newSigner(fmt.Sprintf("%s/patient-%d-%d", prefix, i, j)), 0)
			p.patients[i] = append(p.patients[i], idx)
			p.patientID[idx] = patientID(p.signers[idx])
			p.keyVersion[idx] = 1
		}
	}
	for k := range c.ConsentPatients {
		idx := p.add(newSigner(fmt.Sprintf("%s/consent-patient-%d", prefix, k)), 0)
		p.consent = append(p.consent, idx)
		p.patientID[idx] = patientID(p.signers[idx])
		p.keyVersion[idx] = 1
	}
	return p
}

// patientSeed is a load patient's id seed (in a real consortium an HMAC of
// the patient's secret and identity; here a hash of its name).
func patientSeed(name string) []byte {
	sum := sha256.Sum256([]byte("emrchain/load/patient/" + name))
	return sum[:]
}

// patientID is the id a load patient enrolls with: bound to its key.
func patientID(s *signer) []byte { return app.BoundPatientID(s.pub, patientSeed(s.name)) }

// tx plans the signer's next transaction.
func (p *plan) tx(signer int, kind uint8, build func() (*emrv1.Msg, error)) *plannedTx {
	t := &plannedTx{signer: int32(signer), kind: kind, seq: p.next[signer], build: build}
	p.next[signer]++
	return t
}

func msgOf(m *emrv1.Msg) func() (*emrv1.Msg, error) {
	return func() (*emrv1.Msg, error) { return m, nil }
}

// setupRegister: the registrars register the clinicians, in turn.
func (p *plan) setupRegister() []*plannedTx {
	var out []*plannedTx
	for i, c := range p.clinicians {
		r := i % len(p.registrars)
		s := p.signers[c]
		out = append(out, p.tx(p.registrars[r], kindRegister, msgOf(&emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
			SignPubKey: s.pub, EncPubKey: s.encPub, Role: emrv1.Role_ROLE_CLINICIAN,
			OrganizationId: p.regOrg[r], CredentialRef: "licence:" + s.name,
		}}})))
	}
	return out
}

// setupPatients: every patient enrolls; a clinical patient then grants its
// clinician read and write on every category for 30 days.
func (p *plan) setupPatients(now time.Time) []*plannedTx {
	var out []*plannedTx
	for c, pats := range p.patients {
		clin := p.signers[p.clinicians[c]]
		for _, pt := range pats {
			out = append(out, p.enroll(pt))
			out = append(out, p.tx(pt, kindGrant, msgOf(&emrv1.Msg{Sum: &emrv1.Msg_Grant{Grant: &emrv1.MsgGrant{
				PatientId: p.patientID[pt], Grantee: clin.address,
				Rights:   []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE},
				NotAfter: timestamppb.New(now.Add(30 * 24 * time.Hour)), WrappedKek: kekFor(clin, 1), KeyVersion: 1,
			}}})))
		}
	}
	for _, pt := range p.consent {
		out = append(out, p.enroll(pt))
	}
	return out
}

func (p *plan) enroll(pt int) *plannedTx {
	return p.tx(pt, kindEnroll, msgOf(&emrv1.Msg{Sum: &emrv1.Msg_EnrollPatient{EnrollPatient: &emrv1.MsgEnrollPatient{
		PatientId: p.patientID[pt], IdSeed: patientSeed(p.signers[pt].name), EncPubKey: p.signers[pt].encPub,
		KekCheck: kekCheckFor(p.patientID[pt], 1),
	}}}))
}

// kekCheckFor is an opaque stand-in for the check value of a patient's KEK
// of version (the chain only stores it).
func kekCheckFor(patientID []byte, version uint64) []byte {
	sum := sha256.Sum256(fmt.Appendf(nil, "kek-check/%x/%d", patientID, version))
	return sum[:16]
}

// kekFor is an opaque stand-in for a KEK wrapped to the grantee (the chain
// never opens it), of a realistic size: ephemeral key, nonce, 32-byte key,
// tag.
func kekFor(grantee *signer, version uint64) []byte {
	out := make([]byte, 0, 92)
	for len(out) < 92 {
		sum := sha256.Sum256(fmt.Appendf(nil, "kek/%s/%d/%d", grantee.name, version, len(out)))
		out = append(out, sum[:]...)
	}
	return out[:92]
}

// setupRecords: every clinician adds one record to each of its patients,
// so reads have something to read.
func (p *plan) setupRecords() []*plannedTx {
	var out []*plannedTx
	for c, pats := range p.patients {
		for _, pt := range pats {
			out = append(out, p.addRecord(c, pt))
		}
	}
	return out
}

func (p *plan) addRecord(c, pt int) *plannedTx {
	id := p.patientID[pt]
	category := app.DefaultCategories[p.rng.IntN(len(app.DefaultCategories))]
	p.recordNo++
	name := fmt.Sprintf("%s/record-%d", p.prefix, p.recordNo)
	version := p.keyVersion[pt]
	return p.tx(p.clinicians[c], kindAddRecord, func() (*emrv1.Msg, error) {
		sum := sha256.Sum256([]byte(name))
		fileKey := sha256.Sum256([]byte("file-key/" + name))
		return &emrv1.Msg{Sum: &emrv1.Msg_AddRecord{AddRecord: &emrv1.MsgAddRecord{
			PatientId: id, Category: category, ObjectKey: fmt.Sprintf("blobs/%x", sum), CiphertextSha256: sum[:],
			Size: 64<<10 + uint64(len(name)), KeyVersion: version,
			WrappedFileKey: append(fileKey[:], fileKey[:28]...), // nonce + key + tag sized
		}}}, nil
	})
}

// measured plans n transactions of the mix.
func (p *plan) measured(n int, mix Mix, now time.Time) []*plannedTx {
	out := make([]*plannedTx, 0, n)
	total := mix.total()
	for range n {
		r := p.rng.IntN(total)
		switch {
		case r < mix.AddRecord:
			c := p.pickClinician()
			out = append(out, p.addRecord(c, p.pickPatient(c)))
		case r < mix.AddRecord+mix.RecordAccess:
			c := p.pickClinician()
			pt := p.pickPatient(c)
			out = append(out, p.tx(p.clinicians[c], kindAccess, msgOf(&emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
				PatientId: p.patientID[pt], RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT,
			}}})))
		default:
			out = append(out, p.consentStep(now))
		}
	}
	return out
}

func (p *plan) pickClinician() int {
	c := p.nextClin % len(p.clinicians)
	p.nextClin++
	return c
}

func (p *plan) pickPatient(c int) int {
	pats := p.patients[c]
	pt := pats[p.clinPatient[c]%len(pats)]
	p.clinPatient[c]++
	return pt
}

// consentStep is the next step of the next consent patient: grant a
// clinician (a consultant) read on lab results for a week, revoke it, then
// rotate the key twice, as emrcli revoke does (no grant stands then, so no
// envelope is needed).
func (p *plan) consentStep(now time.Time) *plannedTx {
	pt := p.consent[p.nextConsent%len(p.consent)]
	consultant := p.signers[p.clinicians[p.nextConsent%len(p.clinicians)]]
	p.nextConsent++
	id := p.patientID[pt]
	step := p.cycle[pt]
	p.cycle[pt] = (step + 1) % 4
	switch step {
	case 0:
		p.consultant[pt] = consultant.address
		return p.tx(pt, kindGrant, msgOf(&emrv1.Msg{Sum: &emrv1.Msg_Grant{Grant: &emrv1.MsgGrant{
			PatientId: id, Grantee: consultant.address, Rights: []emrv1.Right{emrv1.Right_RIGHT_READ},
			Categories: []string{"lab-results"}, NotAfter: timestamppb.New(now.Add(7 * 24 * time.Hour)),
			WrappedKek: kekFor(consultant, p.keyVersion[pt]), KeyVersion: p.keyVersion[pt],
		}}}))
	case 1:
		return p.tx(pt, kindRevoke, msgOf(&emrv1.Msg{Sum: &emrv1.Msg_Revoke{Revoke: &emrv1.MsgRevoke{
			PatientId: id, Grantee: p.consultant[pt],
		}}}))
	default:
		p.keyVersion[pt]++
		return p.tx(pt, kindRotate, msgOf(&emrv1.Msg{Sum: &emrv1.Msg_RotateKey{RotateKey: &emrv1.MsgRotateKey{
			PatientId: id, NewKeyVersion: p.keyVersion[pt], KekCheck: kekCheckFor(id, p.keyVersion[pt]),
		}}}))
	}
}

// sign builds and signs txs on every core.
func (p *plan) sign(txs []*plannedTx) error {
	workers := max(1, runtime.GOMAXPROCS(0))
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Value
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(txs) {
					return
				}
				t := txs[i]
				msg, err := t.build()
				if err == nil {
					t.raw, err = p.signers[t.signer].tx(p.chainID, t.seq, msg)
				}
				if err != nil {
					first.CompareAndSwap(nil, fmt.Errorf("sign %s of %s: %w", kindNames[t.kind], p.signers[t.signer].name, err))
					return
				}
				t.hash = sha256.Sum256(t.raw)
				t.build = nil
			}
		}()
	}
	wg.Wait()
	err, _ := first.Load().(error)
	return err
}

// kindCounts counts txs by kind, for the report.
func kindCounts(txs []*plannedTx) map[string]int {
	out := map[string]int{}
	for _, t := range txs {
		out[kindNames[t.kind]]++
	}
	return out
}
