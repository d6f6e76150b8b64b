package app_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// The authorization matrix: every role × granted rights × category scope ×
// time (before, inside, after the window) × revoked × suspended, for every
// message a consent governs (AddRecord needs write, RecordAccess for
// treatment needs read, RecordAccess for research and ShareRecord need
// share). Each cell is evaluated at its time with Simulate, and its
// outcome compared with the rules as written in the design, restated
// below as a decision list (matrixExpect).

type matrixRole string

const (
	roleOwner        matrixRole = "owner"
	roleClinician    matrixRole = "clinician"
	roleResearcher   matrixRole = "researcher"
	roleRegistrar    matrixRole = "registrar"
	roleAuditor      matrixRole = "auditor"
	roleOtherPatient matrixRole = "other-patient"
)

type matrixGrantee struct {
	role      matrixRole
	rights    []emrv1.Right // nil: never granted
	allCats   bool          // grant covers every category, else lab-results only
	revoked   bool
	suspended bool
	actor     *apptest.Actor
}

func (g matrixGrantee) name() string {
	return fmt.Sprintf("%s/rights=%v/all=%v/revoked=%v/suspended=%v", g.role, g.rights, g.allCats, g.revoked, g.suspended)
}

type matrixMsg string

const (
	msgWrite          matrixMsg = "add_record"
	msgReadTreatment  matrixMsg = "record_access/treatment"
	msgAccessResearch matrixMsg = "record_access/research"
	msgShare          matrixMsg = "share_record"
)

type matrixTime string

const (
	beforeWindow matrixTime = "before"
	insideWindow matrixTime = "inside"
	afterWindow  matrixTime = "after"
	// The window's edges: it starts at not_before, inclusive, and ends at
	// not_after, exclusive.
	windowStart matrixTime = "at the start of"
	windowEnd   matrixTime = "at the end of"
)

// matrixTimes are the times each cell is evaluated at.
var matrixTimes = []matrixTime{beforeWindow, windowStart, insideWindow, windowEnd, afterWindow}

// matrixExpect is the authorization rule, written from the design rather
// than from the code: which result code a cell must get.
func matrixExpect(g matrixGrantee, msg matrixMsg, category string, when matrixTime) *app.CodedError {
	if g.suspended {
		return app.ErrSignerSuspended // a suspended member can sign nothing
	}
	if msg == msgShare && g.role != roleClinician {
		return app.ErrUnauthorized // only clinicians share with studies
	}
	if g.role == roleOwner {
		return nil // the owner needs no permission
	}
	granted := g.rights != nil && (g.role == roleClinician || g.role == roleResearcher)
	if !granted {
		return app.ErrNoPermission
	}
	if g.revoked {
		return app.ErrPermissionRevoked
	}
	switch when {
	case beforeWindow:
		return app.ErrPermissionNotYetValid
	case afterWindow, windowEnd:
		return app.ErrPermissionExpired
	}
	need := map[matrixMsg]emrv1.Right{
		msgWrite: emrv1.Right_RIGHT_WRITE, msgReadTreatment: emrv1.Right_RIGHT_READ,
		msgAccessResearch: emrv1.Right_RIGHT_SHARE, msgShare: emrv1.Right_RIGHT_SHARE,
	}[msg]
	if !slices.Contains(g.rights, need) {
		return app.ErrRightNotGranted
	}
	if !g.allCats && category != "lab-results" {
		return app.ErrCategoryNotGranted
	}
	return nil
}

func TestAuthorizationMatrix(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	regA := apptest.Registrar(apptest.HospitalA)
	regR := apptest.Registrar(apptest.Research)
	owner := apptest.NewActor("matrix-owner")
	pid := apptest.PatientID("matrix-owner")
	pi := apptest.NewActor("matrix-pi")
	const study = "matrix-study"

	rightSets := [][]emrv1.Right{
		nil,
		{emrv1.Right_RIGHT_READ},
		{emrv1.Right_RIGHT_WRITE},
		{emrv1.Right_RIGHT_SHARE},
		{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE, emrv1.Right_RIGHT_SHARE},
	}
	var grantees []*matrixGrantee
	for _, role := range []matrixRole{roleClinician, roleResearcher, roleRegistrar, roleAuditor, roleOtherPatient} {
		for _, rights := range rightSets {
			for _, allCats := range []bool{false, true} {
				for _, revoked := range []bool{false, true} {
					for _, suspended := range []bool{false, true} {
						if (rights == nil && (revoked || allCats)) || (role == roleOtherPatient && suspended) {
							continue // no grant to revoke or scope; patients cannot be suspended
						}
						g := &matrixGrantee{role: role, rights: rights, allCats: allCats, revoked: revoked, suspended: suspended}
						g.actor = apptest.NewActor("matrix/" + g.name())
						grantees = append(grantees, g)
					}
				}
			}
		}
	}
	ownerCell := &matrixGrantee{role: roleOwner, actor: owner}

	// Setup block 1: members and patients.
	seqA, seqR := c.Seq(regA.Address), c.Seq(regR.Address)
	txs := [][]byte{owner.Tx(apptest.ChainID, 0, apptest.Enroll(owner)),
		regR.Tx(apptest.ChainID, seqR, apptest.RegisterMember(pi, emrv1.Role_ROLE_RESEARCHER, apptest.Research))}
	seqR++
	for _, g := range grantees {
		switch g.role {
		case roleClinician, roleRegistrar, roleAuditor:
			role := map[matrixRole]emrv1.Role{roleClinician: emrv1.Role_ROLE_CLINICIAN, roleRegistrar: emrv1.Role_ROLE_REGISTRAR, roleAuditor: emrv1.Role_ROLE_AUDITOR}[g.role]
			txs = append(txs, regA.Tx(apptest.ChainID, seqA, apptest.RegisterMember(g.actor, role, apptest.HospitalA)))
			seqA++
		case roleResearcher:
			txs = append(txs, regR.Tx(apptest.ChainID, seqR, apptest.RegisterMember(g.actor, emrv1.Role_ROLE_RESEARCHER, apptest.Research)))
			seqR++
		case roleOtherPatient:
			txs = append(txs, g.actor.Tx(apptest.ChainID, 0, apptest.Enroll(g.actor)))
		}
	}
	mustAll(t, c.Block(txs...))

	// Block 2: the study and the owner's two records (1: lab-results, 2: imaging).
	mustAll(t, c.Block(
		regR.Tx(apptest.ChainID, seqR, apptest.RegisterStudy(study, pi)),
		owner.Tx(apptest.ChainID, 1, apptest.AddRecord(pid, "lab-results", "matrix-lab")),
		owner.Tx(apptest.ChainID, 2, apptest.AddRecord(pid, "imaging", "matrix-img")),
	))

	// Block 3: grants, window [t0+1h, t0+2h).
	t0 := c.Now
	notBefore, notAfter := t0.Add(time.Hour), t0.Add(2*time.Hour)
	ownerSeq := uint64(3)
	txs = nil
	for _, g := range grantees {
		if g.rights == nil {
			continue
		}
		spec := apptest.GrantSpec{Rights: g.rights, NotBefore: notBefore, NotAfter: notAfter}
		if !g.allCats {
			spec.Categories = []string{"lab-results"}
		}
		if slices.Contains(g.rights, emrv1.Right_RIGHT_SHARE) {
			spec.Study = study
		}
		grant := apptest.Grant(pid, g.actor, spec)
		if g.role != roleClinician && g.role != roleResearcher {
			// Consent goes to clinicians and researchers only.
			if res := c.Simulate(owner, c.Now, grant); res.Code != app.ErrUnauthorized.Code() {
				t.Fatalf("grant to %s: code %d (%s), want %d", g.name(), res.Code, res.Log, app.ErrUnauthorized.Code())
			}
			g.rights = nil // it holds nothing
			continue
		}
		txs = append(txs, owner.Tx(apptest.ChainID, ownerSeq, grant))
		ownerSeq++
	}
	mustAll(t, c.Block(txs...))

	// Block 4: revocations and suspensions.
	txs = nil
	seqA, seqR = c.Seq(regA.Address), c.Seq(regR.Address)
	ownerSeq = c.Seq(owner.Address)
	for _, g := range grantees {
		if g.revoked && g.rights != nil {
			txs = append(txs, owner.Tx(apptest.ChainID, ownerSeq, apptest.Revoke(pid, g.actor)))
			ownerSeq++
		}
		if g.suspended {
			if g.role == roleResearcher {
				txs = append(txs, regR.Tx(apptest.ChainID, seqR, apptest.SetStatus(g.actor, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)))
				seqR++
			} else {
				txs = append(txs, regA.Tx(apptest.ChainID, seqA, apptest.SetStatus(g.actor, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)))
				seqA++
			}
		}
	}
	mustAll(t, c.Block(txs...))

	// Blocks 5 and 6: the owner's two key rotations after the
	// revocations, as emrcli revoke makes them (no record is added below
	// key version 3 until then: app.KeyRotationPending), each sealed to
	// every standing grantee.
	const keyVersion = 3
	for v := uint64(2); v <= keyVersion; v++ {
		var envelopes []*emrv1.KeyEnvelope
		for _, g := range grantees {
			if g.rights != nil && !g.revoked {
				envelopes = append(envelopes, &emrv1.KeyEnvelope{Grantee: g.actor.Address, WrappedKek: bytes.Repeat([]byte{1}, 93)})
			}
		}
		mustAll(t, c.Block(owner.Tx(apptest.ChainID, c.Seq(owner.Address), apptest.RotateKey(pid, v, envelopes, nil))))
	}

	times := map[matrixTime]time.Time{
		beforeWindow: t0.Add(30 * time.Minute),
		windowStart:  notBefore,
		insideWindow: t0.Add(90 * time.Minute),
		windowEnd:    notAfter,
		afterWindow:  t0.Add(3 * time.Hour),
	}
	records := map[string]uint64{"lab-results": 1, "imaging": 2}
	cells := 0
	for _, g := range append(grantees, ownerCell) {
		for _, msg := range []matrixMsg{msgWrite, msgReadTreatment, msgAccessResearch, msgShare} {
			for _, category := range []string{"lab-results", "imaging"} {
				for _, when := range matrixTimes {
					var m *emrv1.Msg
					switch msg {
					case msgWrite:
						m = apptest.AddRecordAt(pid, category, "matrix-new", keyVersion)
					case msgReadTreatment:
						m = apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, records[category])
					case msgAccessResearch:
						m = apptest.Access(pid, emrv1.Purpose_PURPOSE_RESEARCH, records[category])
					case msgShare:
						m = apptest.Share(pid, records[category], study, false)
					}
					res := c.Simulate(g.actor, times[when], m)
					want := matrixExpect(*g, msg, category, when)
					var wantCode uint32
					if want != nil {
						wantCode = want.Code()
					}
					if res.Code != wantCode {
						t.Errorf("%s %s on %s %s the window: code %d (%s), want %d (%v)",
							g.name(), msg, category, when, res.Code, res.Log, wantCode, want)
					}
					cells++
				}
			}
		}
	}
	t.Logf("%d grantees, %d cells", len(grantees)+1, cells)
	if cells < 1000 {
		t.Fatalf("the matrix shrank to %d cells", cells)
	}
}

func mustAll(t *testing.T, results []app.Result) {
	t.Helper()
	for i, res := range results {
		if !res.OK() {
			t.Fatalf("setup tx %d: code %d: %s", i, res.Code, res.Log)
		}
	}
}
