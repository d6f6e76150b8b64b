package app_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestBreakGlassLog: an emergency service's break-glass log lists every
// emergency read through it, and nothing else, in the order the patients'
// access logs logged them (a read of two records is two entries; two reads
// in one block keep their order), numbered from 1 without gaps, each with
// its access event; pages of every size list the same; a member that is no
// emergency service has no log.
func TestBreakGlassLog(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	service := w.member("log-service", emrv1.Role_ROLE_EMERGENCY_SERVICE, apptest.HospitalA)
	other := w.member("log-service-2", emrv1.Role_ROLE_EMERGENCY_SERVICE, apptest.HospitalA)
	doc3 := w.member("log-doc", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	w.records(ruleLab, ruleImaging)
	pat2, pid2 := w.patient("log-patient-2")
	c.Must(pat2, apptest.AddRecord(pid2, ruleLab, "log-rec"))
	both := []string{ruleLab, ruleImaging}
	for _, s := range []*apptest.Actor{service, other} {
		c.Must(w.pat, apptest.Grant(w.pid, s, apptest.GrantSpec{Rights: []emrv1.Right{rEmergency}, Categories: both, NotAfter: w.year}))
	}
	c.Must(pat2, apptest.Grant(pid2, service, apptest.GrantSpec{Rights: []emrv1.Right{rEmergency}, Categories: both, NotAfter: w.year}))
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: both, NotAfter: w.year}))

	c.Must(w.doc, apptest.EmergencyAccess(w.pid, service, 1, 2))
	c.Must(w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1)) // not an emergency read
	c.Must(doc3, apptest.EmergencyAccess(w.pid, other, 2))                   // the other service's
	ruleCheck(t, "a clinician of another organization", c.Exec(w.doc2, apptest.EmergencyAccess(w.pid, service, 1)), app.ErrUnauthorized)
	c.Must(doc3, apptest.EmergencyAccess(pid2, service, 1))
	ruleAllOK(t, c.Block(append(ruleSigned(c, w.doc, apptest.EmergencyAccess(w.pid, service, 2), apptest.EmergencyAccess(pid2, service, 1)),
		ruleSigned(c, doc3, apptest.EmergencyAccess(w.pid, service, 1))...)...))

	// The entries due, as (patient, event in its access log): the
	// patient's log holds the two reads of the first transaction (1, 2),
	// the treatment read (3), the other service's (4), then from the last
	// block 5 and 6; the second patient's its first read (1), then 2.
	type ref struct {
		pid []byte
		seq uint64
	}
	// A read refused for one of its records logs none of them.
	ruleCheck(t, "a read of a record the patient does not have", c.Exec(w.doc, apptest.EmergencyAccess(pid2, service, 1, 2)), app.ErrNotFound)
	for _, tc := range []struct {
		service *apptest.Actor
		want    []ref
	}{
		{service, []ref{{w.pid, 1}, {w.pid, 2}, {pid2, 1}, {w.pid, 5}, {pid2, 2}, {w.pid, 6}}},
		{other, []ref{{w.pid, 4}}},
	} {
		got := breakGlassPages(t, c, tc.service, 0)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d entries, want %d", tc.service.Name, len(got), len(tc.want))
		}
		for i, e := range got {
			want := accessEvent(c, tc.want[i].pid, tc.want[i].seq)
			if e.Sequence != uint64(i+1) || !proto.Equal(e.Event, want) {
				t.Fatalf("%s: entry %d is %d %v, want %d %v", tc.service.Name, i, e.Sequence, e.Event, i+1, want)
			}
		}
		for limit := uint32(1); limit <= uint32(len(got))+1; limit++ {
			paged := breakGlassPages(t, c, tc.service, limit)
			if len(paged) != len(got) {
				t.Fatalf("%s, pages of %d: %d entries, want %d", tc.service.Name, limit, len(paged), len(got))
			}
			for i := range paged {
				if !proto.Equal(paged[i], got[i]) {
					t.Fatalf("%s, pages of %d: entry %d is %v, want %v", tc.service.Name, limit, i, paged[i], got[i])
				}
			}
		}
	}

	var past emrv1.QueryBreakGlassLogResponse
	c.Query("BreakGlassLog", &emrv1.QueryBreakGlassLogRequest{Service: hexOf(service.Address), Page: &emrv1.PageRequest{After: 99}}, &past)
	if len(past.Entries) != 0 || past.Page.GetTotal() != 6 || past.Page.GetNext() != 0 {
		t.Fatalf("after the end: %v", &past)
	}
	for _, tc := range []struct {
		name    string
		address []byte
	}{{"a clinician", w.doc.Address}, {"no member", apptest.NewActor("nobody").Address}} {
		err := c.TryQuery("BreakGlassLog", &emrv1.QueryBreakGlassLogRequest{Service: hexOf(tc.address)}, &emrv1.QueryBreakGlassLogResponse{})
		if app.CodeOf(err) != app.ErrNotFound.Code() {
			t.Fatalf("%s: %v, want ErrNotFound", tc.name, err)
		}
	}
}

// accessEvent is event seq of patient pid's access log.
func accessEvent(c *apptest.Chain, pid []byte, seq uint64) *emrv1.AccessEvent {
	for _, ev := range ruleEvents(c, pid, nil).Events {
		if ev.Sequence == seq {
			return ev
		}
	}
	c.TB.Fatalf("patient %x has no access event %d", pid, seq)
	return nil
}

// breakGlassPages reads service's whole break-glass log, limit entries a
// page (0: the default), each page proven.
func breakGlassPages(t *testing.T, c *apptest.Chain, service *apptest.Actor, limit uint32) []*emrv1.BreakGlassEntry {
	t.Helper()
	var out []*emrv1.BreakGlassEntry
	var after uint64
	for range 100 {
		var resp emrv1.QueryBreakGlassLogResponse
		c.QueryProven("BreakGlassLog", &emrv1.QueryBreakGlassLogRequest{Service: hexOf(service.Address), Page: &emrv1.PageRequest{After: after, Limit: limit}}, &resp)
		if !bytes.Equal(resp.Service.GetAddress(), service.Address) || len(resp.Proofs) == 0 {
			t.Fatalf("page after %d: service %X, %d proofs", after, resp.Service.GetAddress(), len(resp.Proofs))
		}
		out = append(out, resp.Entries...)
		if after = resp.Page.GetNext(); after == 0 {
			return out
		}
	}
	t.Fatalf("%s: more than 100 pages", service.Name)
	return nil
}
