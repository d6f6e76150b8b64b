package scenario

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Outcome is what became of a submitted transaction.
type Outcome struct {
	Code   uint32
	Log    string
	Height int64
}

// Transport is how a scenario reaches a chain.
type Transport interface {
	// Submit signs msg by actor with its next sequence, submits it and waits
	// until it is committed (or refused). A refusal is an Outcome with a
	// non-zero code, not an error; errors are transport failures.
	Submit(actor *apptest.Actor, msg *emrv1.Msg) (Outcome, error)
	// Query calls a Query service method at the latest height.
	Query(method string, req, resp proto.Message) error
	// Now is the chain's current (last block) time.
	Now() time.Time
}

// InProcess runs scenarios on an apptest chain: one block per transaction.
type InProcess struct{ Chain *apptest.Chain }

// Submit implements Transport.
func (p InProcess) Submit(actor *apptest.Actor, msg *emrv1.Msg) (Outcome, error) {
	res := p.Chain.Exec(actor, msg)
	return Outcome{Code: res.Code, Log: res.Log, Height: p.Chain.Height()}, nil
}

// Query implements Transport.
func (p InProcess) Query(method string, req, resp proto.Message) error {
	return p.Chain.TryQuery(method, req, resp)
}

// Now implements Transport.
func (p InProcess) Now() time.Time { return p.Chain.Now }

// Cast is the set of actors of the care flow. Names are suffixed so that
// the story can run more than once on one chain.
type Cast struct {
	Registrar *apptest.Actor // genesis registrar of hospital-a
	Clinician *apptest.Actor
	Patient   *apptest.Actor
	PatientID []byte
	// Service is the emergency service of BreakGlass.
	Service *apptest.Actor
}

// NewCast makes a cast whose registrar is registrar (a genesis registrar of
// apptest.HospitalA's organization on the target chain).
func NewCast(registrar *apptest.Actor, suffix string) Cast {
	return Cast{
		Registrar: registrar,
		Clinician: apptest.NewActor("scenario-clinician-" + suffix),
		Patient:   apptest.NewActor("scenario-patient-" + suffix),
		PatientID: apptest.PatientID("scenario-patient-" + suffix),
		Service:   apptest.NewActor("scenario-emergency-service-" + suffix),
	}
}

// submitter returns a function that submits a step's message and fails t
// unless it is committed.
func submitter(t testing.TB, tr Transport) func(step string, actor *apptest.Actor, msg *emrv1.Msg) Outcome {
	return func(step string, actor *apptest.Actor, msg *emrv1.Msg) Outcome {
		t.Helper()
		out, err := tr.Submit(actor, msg)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if out.Code != 0 {
			t.Fatalf("%s: refused with code %d: %s", step, out.Code, out.Log)
		}
		return out
	}
}

// refused submits a step's message and fails t unless it is refused with
// want, its log saying says.
func refused(t testing.TB, tr Transport, step string, actor *apptest.Actor, msg *emrv1.Msg, want *app.CodedError, says string) {
	t.Helper()
	out, err := tr.Submit(actor, msg)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if out.Code != want.Code() || !strings.Contains(out.Log, says) {
		t.Fatalf("%s: code %d %q, want %d (%s)", step, out.Code, out.Log, want.Code(), says)
	}
}

// auditLog is the patient's access events.
func auditLog(t testing.TB, tr Transport, patientID []byte) []*emrv1.AccessEvent {
	t.Helper()
	var audit emrv1.QueryAccessEventsResponse
	if err := tr.Query("AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: hex.EncodeToString(patientID)}, &audit); err != nil {
		t.Fatalf("audit log: %v", err)
	}
	return audit.Events
}

// CareFlow is the basic story of the chain: a registrar registers a
// clinician; a patient enrolls and grants read+write on lab-results; the
// clinician adds a record and reads it; the read is in the patient's audit
// log; the patient revokes; the clinician's next read is refused.
func CareFlow(t testing.TB, tr Transport, cast Cast, org string) {
	t.Helper()
	must := submitter(t, tr)
	must("register clinician", cast.Registrar, apptest.RegisterMember(cast.Clinician, emrv1.Role_ROLE_CLINICIAN, org))
	must("enroll patient", cast.Patient, apptest.Enroll(cast.Patient))
	must("grant", cast.Patient, apptest.Grant(cast.PatientID, cast.Clinician, apptest.GrantSpec{
		Rights:     []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE},
		Categories: []string{"lab-results"},
		NotAfter:   tr.Now().Add(365 * 24 * time.Hour),
	}))
	must("add record", cast.Clinician, apptest.AddRecord(cast.PatientID, "lab-results", "scenario-cbc-"+cast.Patient.Name))
	read := must("read record", cast.Clinician, apptest.Access(cast.PatientID, emrv1.Purpose_PURPOSE_TREATMENT, 1))

	events := auditLog(t, tr, cast.PatientID)
	if len(events) != 1 {
		t.Fatalf("audit log has %d events, want 1", len(events))
	}
	ev := events[0]
	if string(ev.Accessor) != string(cast.Clinician.Address) || ev.RecordSequence != 1 || ev.Height != read.Height || ev.Purpose != emrv1.Purpose_PURPOSE_TREATMENT {
		t.Fatalf("audit event %v does not describe the clinician's read at height %d", ev, read.Height)
	}

	must("revoke", cast.Patient, apptest.Revoke(cast.PatientID, cast.Clinician))
	refused(t, tr, "read after revoke", cast.Clinician, apptest.Access(cast.PatientID, emrv1.Purpose_PURPOSE_TREATMENT, 1),
		app.ErrPermissionRevoked, "revoked at height")
}

// BreakGlass is the emergency story: a registrar registers its
// organization's emergency service and an emergency clinician; a patient
// with a lab result and an image opts in to break-glass reads of her lab
// results through that service; the clinician, who holds no consent, reads
// the lab result in an emergency, and the read is in her audit log as an
// emergency read naming the service; the image is refused; once she
// revokes the opt-in, so is the lab result.
func BreakGlass(t testing.TB, tr Transport, cast Cast, org string) {
	t.Helper()
	must := submitter(t, tr)
	must("register emergency service", cast.Registrar, apptest.RegisterMember(cast.Service, emrv1.Role_ROLE_EMERGENCY_SERVICE, org))
	must("register clinician", cast.Registrar, apptest.RegisterMember(cast.Clinician, emrv1.Role_ROLE_CLINICIAN, org))
	must("enroll patient", cast.Patient, apptest.Enroll(cast.Patient))
	must("add lab result", cast.Patient, apptest.AddRecord(cast.PatientID, "lab-results", "scenario-glass-lab-"+cast.Patient.Name))
	must("add image", cast.Patient, apptest.AddRecord(cast.PatientID, "imaging", "scenario-glass-img-"+cast.Patient.Name))
	refused(t, tr, "emergency read before the opt-in", cast.Clinician, apptest.EmergencyAccess(cast.PatientID, cast.Service, 1),
		app.ErrNoPermission, "has not opted in")
	must("opt in", cast.Patient, apptest.Grant(cast.PatientID, cast.Service, apptest.GrantSpec{
		Rights:     []emrv1.Right{emrv1.Right_RIGHT_EMERGENCY},
		Categories: []string{"lab-results"},
		NotAfter:   tr.Now().Add(365 * 24 * time.Hour),
	}))
	read := must("emergency read", cast.Clinician, apptest.EmergencyAccess(cast.PatientID, cast.Service, 1))
	events := auditLog(t, tr, cast.PatientID)
	if len(events) != 1 {
		t.Fatalf("audit log has %d events, want 1", len(events))
	}
	ev := events[0]
	if string(ev.Accessor) != string(cast.Clinician.Address) || ev.RecordSequence != 1 || ev.Height != read.Height ||
		ev.Purpose != emrv1.Purpose_PURPOSE_EMERGENCY || string(ev.EmergencyService) != string(cast.Service.Address) ||
		ev.EmergencyReason != apptest.EmergencyReasonInTests {
		t.Fatalf("audit event %v does not describe the clinician's emergency read through %X at height %d, for reason %s",
			ev, cast.Service.Address, read.Height, app.EmergencyReasonName(apptest.EmergencyReasonInTests))
	}
	refused(t, tr, "emergency read of the image", cast.Clinician, apptest.EmergencyAccess(cast.PatientID, cast.Service, 2),
		app.ErrCategoryNotGranted, "does not cover \"imaging\"")
	must("revoke the opt-in", cast.Patient, apptest.Revoke(cast.PatientID, cast.Service))
	refused(t, tr, "emergency read after the revocation", cast.Clinician, apptest.EmergencyAccess(cast.PatientID, cast.Service, 1),
		app.ErrPermissionRevoked, "revoked at height")
}
