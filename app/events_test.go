package app_test

import (
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestEventsIndexWhoAndWhat: a transaction's event names who and what it
// is about as indexed attributes (what an auditor searches with tx_search),
// and reports the rest unindexed.
func TestEventsIndexWhoAndWhat(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	doc := apptest.NewActor("events-doc")
	c.Must(apptest.Registrar(apptest.HospitalA), apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	p := apptest.NewActor("events-patient")
	id := apptest.PatientID(p.Name)
	c.Must(p, apptest.Enroll(p))
	c.Must(p, apptest.Grant(id, doc, apptest.GrantSpec{
		Rights:   []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE},
		NotAfter: apptest.GenesisTime.Add(24 * time.Hour),
	}))
	patient, signer := hex.EncodeToString(id), hex.EncodeToString(doc.Address)
	record := fmt.Sprintf("%s/1", patient)
	for _, tc := range []struct {
		name      string
		msg       *emrv1.Msg
		indexed   map[string]string
		unindexed map[string]string // "": any value
	}{
		{"AddRecord", apptest.AddRecord(id, "lab-results", "events"),
			map[string]string{"action": "add_record", "signer": signer, "patient": patient, "record": record},
			map[string]string{"category": "lab-results", app.BlobAttribute: hex.EncodeToString(apptest.Blob("events"))}},
		{"RecordAccess", apptest.Access(id, emrv1.Purpose_PURPOSE_TREATMENT, 1),
			map[string]string{"action": "record_access", "signer": signer, "patient": patient, "record": record},
			map[string]string{"accessor": "", "purpose": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := c.Must(doc, tc.msg)
			if len(res.Events) != 1 || res.Events[0].Type != app.EventType {
				t.Fatalf("events %+v", res.Events)
			}
			got := map[string]app.Attribute{}
			for _, a := range res.Events[0].Attributes {
				got[a.Key] = a
			}
			for k, v := range tc.indexed {
				if a, ok := got[k]; !ok || !a.Index || a.Value != v {
					t.Errorf("%s = %+v, want %q indexed", k, a, v)
				}
			}
			for k, v := range tc.unindexed {
				if a, ok := got[k]; !ok || a.Index || (v != "" && a.Value != v) {
					t.Errorf("%s = %+v, want it reported, not indexed", k, a)
				}
			}
		})
	}
}

// TestShareEventNamesItsBlobsOwner: a ShareRecord's event names the blob
// with the patient and the category of the record it shares, which the
// sidecars file the blob under (offchain/sidecar/owner.go).
func TestShareEventNamesItsBlobsOwner(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	doc, pi := apptest.NewActor("share-events-doc"), apptest.NewActor("share-events-pi")
	c.Must(apptest.Registrar(apptest.HospitalA), apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	c.Must(apptest.Registrar(apptest.Research), apptest.RegisterMember(pi, emrv1.Role_ROLE_RESEARCHER, apptest.Research))
	c.Must(apptest.Registrar(apptest.Research), apptest.RegisterStudy("events-study", pi))
	p := apptest.NewActor("share-events-patient")
	id := apptest.PatientID(p.Name)
	c.Must(p, apptest.Enroll(p))
	c.Must(p, apptest.AddRecord(id, "imaging", "share-events"))
	c.Must(p, apptest.Grant(id, doc, apptest.GrantSpec{
		Rights: []emrv1.Right{emrv1.Right_RIGHT_SHARE}, Study: "events-study", NotAfter: apptest.GenesisTime.Add(24 * time.Hour),
	}))
	res := c.Must(doc, apptest.Share(id, 1, "events-study", false))
	got := map[string]string{}
	for _, a := range res.Events[0].Attributes {
		got[a.Key] = a.Value
	}
	if got[app.PatientAttribute] != hex.EncodeToString(id) || got[app.CategoryAttribute] != "imaging" || got[app.BlobAttribute] == "" {
		t.Fatalf("share event attributes %v: want the patient, category %q and the blob", got, "imaging")
	}
}
