package app_test

import (
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestCareFlow is the basic story: a registrar registers a clinician, a
// patient enrolls and grants, the clinician writes and reads, the patient
// revokes and the clinician is refused.
func TestCareFlow(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	reg := apptest.Registrar(apptest.HospitalA)
	doc := apptest.NewActor("dr-onco")
	pat := apptest.NewActor("patient-1")
	pid := apptest.PatientID("patient-1")

	c.Must(reg, apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	c.Must(pat, apptest.Enroll(pat, pid))
	c.Must(pat, apptest.Grant(pid, doc, apptest.GrantSpec{
		Rights:     []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE},
		Categories: []string{"lab-results"},
		NotAfter:   c.Now.Add(365 * 24 * time.Hour),
	}))
	c.Must(doc, apptest.AddRecord(doc, pid, "lab-results", "cbc"))
	c.Must(doc, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))

	var events emrv1.QueryAccessEventsResponse
	c.Query("AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: hexOf(pid)}, &events)
	if len(events.Events) != 1 || events.Events[0].RecordSequence != 1 {
		t.Fatalf("access log = %v, want one read of record 1", events.Events)
	}

	c.Must(pat, apptest.Revoke(pid, doc))
	res := c.Exec(doc, apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	if res.Code != app.ErrPermissionRevoked.Code() {
		t.Fatalf("read after revoke: code %d (%s), want %d", res.Code, res.Log, app.ErrPermissionRevoked.Code())
	}
}
