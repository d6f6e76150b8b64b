package app_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Break-glass reads (app/emergency.go): who may log an emergency read,
// through which emergency service, of which record, at which time. As in
// authz_matrix_test.go, every cell is evaluated with Simulate and compared
// with the rule restated from the design as a decision list
// (glassExpect).

const rEmergency = emrv1.Right_RIGHT_EMERGENCY

// glassService is an emergency service and the patient's opt-in to it.
type glassService struct {
	name      string
	org       string
	optIn     bool // the patient opted in to it
	labOnly   bool // the opt-in covers lab-results only
	revoked   bool // the opt-in was revoked
	suspended bool // the service is suspended
	notAnES   bool // named as a service, but a clinician
	actor     *apptest.Actor
}

// glassReader is a member logging an emergency read.
type glassReader struct {
	name      string
	role      emrv1.Role
	org       string
	suspended bool
	actor     *apptest.Actor
}

// glassExpect is the break-glass rule, written from the design: the result
// a cell must get.
func glassExpect(r glassReader, s glassService, category string, when matrixTime) *app.CodedError {
	switch {
	case r.suspended:
		return app.ErrSignerSuspended
	case r.role != emrv1.Role_ROLE_CLINICIAN:
		return app.ErrUnauthorized // only a clinician breaks the glass
	case s.notAnES:
		return app.ErrNotFound // no such emergency service
	case s.org != r.org:
		return app.ErrUnauthorized // through its own organization's service only
	case !s.optIn:
		return app.ErrNoPermission
	case s.revoked:
		return app.ErrPermissionRevoked
	case s.suspended:
		return app.ErrGranteeSuspended
	case when == beforeWindow:
		return app.ErrPermissionNotYetValid
	case when == afterWindow, when == windowEnd:
		return app.ErrPermissionExpired
	case s.labOnly && category != ruleLab:
		return app.ErrCategoryNotGranted
	}
	return nil
}

func TestBreakGlassMatrix(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	services := []*glassService{
		{name: "lab-only", org: apptest.HospitalA, optIn: true, labOnly: true},
		{name: "all", org: apptest.HospitalA, optIn: true},
		{name: "revoked", org: apptest.HospitalA, optIn: true, revoked: true},
		{name: "suspended", org: apptest.HospitalA, optIn: true, suspended: true},
		{name: "no-opt-in", org: apptest.HospitalA},
		{name: "hospital-b", org: apptest.HospitalB, optIn: true},
		{name: "a-clinician", org: apptest.HospitalA, notAnES: true},
	}
	for _, s := range services {
		role := emrv1.Role_ROLE_EMERGENCY_SERVICE
		if s.notAnES {
			role = emrv1.Role_ROLE_CLINICIAN
		}
		s.actor = w.member("glass-service-"+s.name, role, s.org)
	}
	readers := []*glassReader{
		{name: "clinician-a", role: emrv1.Role_ROLE_CLINICIAN, org: apptest.HospitalA, actor: w.doc},
		{name: "clinician-b", role: emrv1.Role_ROLE_CLINICIAN, org: apptest.HospitalB, actor: w.doc2},
		{name: "auditor-a", role: emrv1.Role_ROLE_AUDITOR, org: apptest.HospitalA, actor: w.aud},
		{name: "registrar-a", role: emrv1.Role_ROLE_REGISTRAR, org: apptest.HospitalA, actor: w.regA},
		{name: "researcher", role: emrv1.Role_ROLE_RESEARCHER, org: apptest.Research, actor: w.sci},
		{name: "owner", role: emrv1.Role_ROLE_PATIENT, actor: w.pat},
		{name: "the-service", role: emrv1.Role_ROLE_EMERGENCY_SERVICE, org: apptest.HospitalA, actor: services[1].actor},
		{name: "suspended-clinician-a", role: emrv1.Role_ROLE_CLINICIAN, org: apptest.HospitalA, suspended: true,
			actor: w.member("glass-suspended-doc", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)},
	}
	w.records(ruleLab, ruleImaging)

	// The opt-ins, window [t0+1h, t0+2h); then revocation and suspension.
	t0 := c.Now
	var optIns []*emrv1.Msg
	for _, s := range services {
		if !s.optIn {
			continue
		}
		spec := apptest.GrantSpec{Rights: []emrv1.Right{rEmergency}, NotBefore: t0.Add(time.Hour), NotAfter: t0.Add(2 * time.Hour)}
		if s.labOnly {
			spec.Categories = []string{ruleLab}
		}
		optIns = append(optIns, apptest.Grant(w.pid, s.actor, spec))
	}
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat, optIns...)...))
	for _, s := range services {
		if s.revoked {
			c.Must(w.pat, apptest.Revoke(w.pid, s.actor))
		}
		if s.suspended {
			c.Must(w.regA, apptest.SetStatus(s.actor, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
		}
	}
	c.Must(w.regA, apptest.SetStatus(readers[len(readers)-1].actor, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))

	times := map[matrixTime]time.Time{
		beforeWindow: t0.Add(30 * time.Minute),
		windowStart:  t0.Add(time.Hour),
		insideWindow: t0.Add(90 * time.Minute),
		windowEnd:    t0.Add(2 * time.Hour),
		afterWindow:  t0.Add(3 * time.Hour),
	}
	records := map[string]uint64{ruleLab: 1, ruleImaging: 2}
	cells, allowed := 0, 0
	for _, r := range readers {
		for _, s := range services {
			for _, category := range []string{ruleLab, ruleImaging} {
				for _, when := range matrixTimes {
					res := c.Simulate(r.actor, times[when], apptest.EmergencyAccess(w.pid, s.actor, records[category]))
					what := fmt.Sprintf("%s through %s, %s, %s the window", r.name, s.name, category, when)
					want := glassExpect(*r, *s, category, when)
					var log []string
					if want == app.ErrNoPermission {
						log = []string{"the patient has not opted in to break-glass reads through"}
					}
					ruleCheck(t, what, res, want, log...)
					if want == nil {
						allowed++
					}
					cells++
				}
			}
		}
	}
	t.Logf("%d cells, %d allowed", cells, allowed)
	// clinician-a through lab-only (lab-results) and all (both records),
	// clinician-b through hospital-b (both), inside the window and at its
	// start.
	if allowed != 10 {
		t.Fatalf("%d cells allowed, want 10", allowed)
	}
}

// TestEmergencyOptInGrants: the emergency right goes alone, to an
// emergency service only, which is granted nothing else.
func TestEmergencyOptInGrants(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	service := w.member("optin-service", emrv1.Role_ROLE_EMERGENCY_SERVICE, apptest.HospitalA)
	grant := func(to *apptest.Actor, rights ...emrv1.Right) *emrv1.Msg {
		return apptest.Grant(w.pid, to, apptest.GrantSpec{Rights: rights, NotAfter: w.year})
	}
	withStudy := grant(service, rEmergency)
	withStudy.GetGrant().StudyId = ruleStudy
	ruleRun(t, c, c.Now, []ruleCase{
		{"emergency to a service", w.pat, grant(service, rEmergency), nil, nil},
		{"emergency with read", w.pat, grant(service, rEmergency, rRead), app.ErrInvalidMsg, []string{"the emergency right is granted alone"}},
		{"emergency with a study", w.pat, withStudy, app.ErrInvalidMsg, []string{"study id and anonymise belong to the share right"}},
		{"read to a service", w.pat, grant(service, rRead), app.ErrUnauthorized, []string{"an emergency service is granted only the emergency right"}},
		{"emergency to a clinician", w.pat, grant(w.doc, rEmergency), app.ErrUnauthorized, []string{"granted to an organization's emergency service", "is a clinician"}},
		{"emergency to a researcher", w.pat, grant(w.sci, rEmergency), app.ErrUnauthorized, nil},
		{"emergency to an auditor", w.pat, grant(w.aud, rEmergency), app.ErrUnauthorized, nil},
		{"by a clinician", w.doc, grant(service, rEmergency), app.ErrUnauthorized, nil},
	})
}

// TestBreakGlassRead: an emergency read is logged as such, naming the
// service (in the access event and the indexed event attribute) and its
// reason, which it must give (and no other read may); it names records,
// never shares; a standing opt-in needs a new envelope at
// every key rotation, like any grant, and a revocation ends the reads.
func TestBreakGlassRead(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	service := w.member("read-service", emrv1.Role_ROLE_EMERGENCY_SERVICE, apptest.HospitalA)
	w.records(ruleLab, ruleImaging)
	c.Must(w.pat, apptest.Grant(w.pid, service, apptest.GrantSpec{Rights: []emrv1.Right{rEmergency}, Categories: []string{ruleLab}, NotAfter: w.year}))

	shares := apptest.EmergencyAccess(w.pid, service)
	shares.GetRecordAccess().ShareSequences = []uint64{1}
	treatmentVia := apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1)
	treatmentVia.GetRecordAccess().EmergencyService = service.Address
	treatmentWhy := apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1)
	treatmentWhy.GetRecordAccess().EmergencyReason = emrv1.EmergencyReason_EMERGENCY_REASON_IMMEDIATE_THREAT
	withReason := func(r emrv1.EmergencyReason) *emrv1.Msg {
		m := apptest.EmergencyAccess(w.pid, service, 1)
		m.GetRecordAccess().EmergencyReason = r
		return m
	}
	ruleRun(t, c, c.Now, []ruleCase{
		{"no reason", w.doc, withReason(emrv1.EmergencyReason_EMERGENCY_REASON_UNSPECIFIED), app.ErrInvalidMsg,
			[]string{"an emergency read gives its reason, patient-incapacitated, immediate-threat or patient-request; got 0"}},
		{"an unknown reason", w.doc, withReason(4), app.ErrInvalidMsg, []string{"gives its reason", "got 4"}},
		{"a reason for a treatment read", w.doc, treatmentWhy, app.ErrInvalidMsg, []string{"a reason to break the glass is given only by an emergency read, not one for treatment"}},
		{"a share", w.doc, shares, app.ErrInvalidMsg, []string{"a share is read for research, not emergency"}},
		{"a service named by a treatment read", w.doc, treatmentVia, app.ErrInvalidMsg, []string{"named only by an emergency read"}},
		{"a record the opt-in does not cover", w.doc, apptest.EmergencyAccess(w.pid, service, 1, 2), app.ErrCategoryNotGranted, []string{"record 2: ", "opt-in to emergency service"}},
		{"an unknown service", w.doc, apptest.EmergencyAccess(w.pid, apptest.NewActor("nobody"), 1), app.ErrNotFound, []string{"is not an emergency service"}},
	})

	res := c.Must(w.doc, apptest.EmergencyAccess(w.pid, service, 1))
	ev := ruleEvents(c, w.pid, nil).Events
	last := ev[len(ev)-1]
	if last.Purpose != emrv1.Purpose_PURPOSE_EMERGENCY || string(last.EmergencyService) != string(service.Address) ||
		string(last.Accessor) != string(w.doc.Address) || last.RecordSequence != 1 || last.EmergencyReason != apptest.EmergencyReasonInTests {
		t.Fatalf("the access event: %v", last)
	}
	if !slices.ContainsFunc(res.Events[0].Attributes, func(a app.Attribute) bool {
		return a.Key == "emergency_reason" && a.Value == "patient-incapacitated" && !a.Index
	}) {
		t.Fatalf("no emergency_reason attribute in %v", res.Events[0].Attributes)
	}
	for _, r := range []emrv1.EmergencyReason{emrv1.EmergencyReason_EMERGENCY_REASON_IMMEDIATE_THREAT, emrv1.EmergencyReason_EMERGENCY_REASON_PATIENT_REQUEST} {
		c.Must(w.doc, withReason(r))
		ev := ruleEvents(c, w.pid, nil).Events
		if got := ev[0].EmergencyReason; got != r { // newest first
			t.Fatalf("an emergency read for %s was logged for %s", app.EmergencyReasonName(r), app.EmergencyReasonName(got))
		}
	}
	attr := slices.IndexFunc(res.Events[0].Attributes, func(a app.Attribute) bool {
		return a.Key == app.EmergencyServiceAttribute && a.Value == hexOf(service.Address) && a.Index
	})
	if attr < 0 {
		t.Fatalf("no indexed %s attribute in %v", app.EmergencyServiceAttribute, res.Events[0].Attributes)
	}

	// A key rotation must seal the new key to the standing opt-in.
	ruleCheck(t, "rotation without the service's envelope", c.Exec(w.pat, apptest.RotateKey(w.pid, 2, nil, nil)),
		app.ErrInvalidMsg, fmt.Sprintf("%X", service.Address))
	c.Must(w.pat, apptest.RotateKey(w.pid, 2, []*emrv1.KeyEnvelope{{Grantee: service.Address, WrappedKek: make([]byte, 93)}}, nil))

	c.Must(w.pat, apptest.Revoke(w.pid, service))
	ruleCheck(t, "after the revocation", c.Simulate(w.doc, c.Now, apptest.EmergencyAccess(w.pid, service, 1)), app.ErrPermissionRevoked)
}
