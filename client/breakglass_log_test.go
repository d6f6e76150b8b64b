package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// testBreakGlassLog: the world's clinician reads, in an emergency, a
// record of a second patient who opted in to an emergency service of its
// hospital. The service's break-glass log is that one read, verified, at
// the newest height and at a height given; a node that hides the entry
// (and the proofs of it and of the access event), or also claims the log
// is empty (leaving out the proof of its length), is refused.
func testBreakGlassLog(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := w.mustClient(t, w.node.RPC)

	patient, _ := keyring.Generate("break-glass-patient")
	identity, _ := client.IdentityFromNameAndBirth("Mary Seacole", "1805-11-23")
	seed, _ := client.PatientSeed(patient.PatientSecret, identity)
	kek, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	enroll := client.EnrollPatientMsg(patient.PubKey(), patient.EncPubKey(), seed, kek)
	pid := enroll.GetEnrollPatient().PatientId
	w.mustSubmit(ctx, t, c, patient, enroll)
	sum := sha256.Sum256([]byte("ecg"))
	dk, _ := crypto.GenerateKey()
	rec, err := client.AddRecordMsg(pid, client.RecordSpec{Category: "lab-results", ObjectKey: "blobs/ecg", SHA256: sum[:], Size: 100}, kek, 1, dk)
	if err != nil {
		t.Fatal(err)
	}
	w.mustSubmit(ctx, t, c, patient, rec)
	service, _ := keyring.Generate("er-service")
	w.mustSubmit(ctx, t, c, w.registrar, &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
		SignPubKey: service.PubKey(), EncPubKey: service.EncPubKey(), Role: emrv1.Role_ROLE_EMERGENCY_SERVICE,
		OrganizationId: "dev-hospital", CredentialRef: "er-desk",
	}}})
	optIn, err := c.GrantMsg(ctx, pid, client.GrantSpec{Grantee: service.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_EMERGENCY},
		NotAfter: time.Now().Add(365 * 24 * time.Hour)}, func(uint64) ([]byte, error) { return bytes.Clone(kek), nil })
	if err != nil {
		t.Fatal(err)
	}
	w.mustSubmit(ctx, t, c, patient, optIn)
	read := w.mustSubmit(ctx, t, c, w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
		PatientId: pid, RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_EMERGENCY,
		EmergencyService: service.Address(), EmergencyReason: emrv1.EmergencyReason_EMERGENCY_REASON_PATIENT_INCAPACITATED,
	}}})

	events, _, err := c.AllAccessEvents(ctx, pid)
	if err != nil || len(events) != 1 {
		t.Fatalf("the patient's access log: %v, %v; want the one read", events, err)
	}
	entries, info, err := c.BreakGlassLog(ctx, service.Address(), 0, 0)
	if err != nil || !info.Verified || len(entries) != 1 || entries[0].Sequence != 1 || !proto.Equal(entries[0].Event, events[0]) ||
		!bytes.Equal(entries[0].Event.TxHash, read.Hash) {
		t.Fatalf("BreakGlassLog = %v, %+v, %v; want the read %v, verified", entries, info, err, events[0])
	}
	at, atInfo, err := c.BreakGlassLog(ctx, service.Address(), 0, info.Height)
	if err != nil || atInfo.Height != info.Height || len(at) != 1 || !proto.Equal(at[0], entries[0]) {
		t.Fatalf("BreakGlassLog at height %d = %v, %+v, %v; want the same entry", info.Height, at, atInfo, err)
	}
	if after, _, err := c.BreakGlassLog(ctx, service.Address(), 1, 0); err != nil || len(after) != 0 {
		t.Fatalf("BreakGlassLog after its one entry = %v, %v; want nothing", after, err)
	}
	if _, _, err := c.BreakGlassLog(ctx, w.clinician.Address(), 0, 0); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the break-glass log of a clinician: %v, want ErrNotFound", err)
	}

	// Key prefixes (store/README.md): 0x0c access events, 0x19 the log's
	// entries, 0x1a its length.
	leaveOut := func(prefixes ...byte) func(*emrv1.QueryBreakGlassLogResponse) {
		return func(r *emrv1.QueryBreakGlassLogResponse) {
			var kept []*emrv1.StoreProof
			for _, p := range r.Proofs {
				if !bytes.Contains(prefixes, p.Key[:1]) {
					kept = append(kept, p)
				}
			}
			r.Entries, r.Proofs = nil, kept
		}
	}
	hideCount := leaveOut(0x0c, 0x19, 0x1a)
	for _, tc := range []struct {
		name string
		lie  func(*emrv1.QueryBreakGlassLogResponse)
	}{
		{"HideEntry", leaveOut(0x0c, 0x19)},
		{"HideEntryAndCount", func(r *emrv1.QueryBreakGlassLogResponse) { hideCount(r); r.Page.Total = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := clienttest.NewProxy(t, w.node.RPC)
			proxy.SetRewrite(queryRewrite("BreakGlassLog", func(m proto.Message) { tc.lie(m.(*emrv1.QueryBreakGlassLogResponse)) }))
			lied := w.mustClient(t, proxy.URL)
			got, _, err := lied.BreakGlassLog(ctx, service.Address(), 0, 0)
			if !errors.Is(err, client.ErrVerification) {
				t.Fatalf("a node hiding the read: %v, %v; want ErrVerification", got, err)
			}
			t.Logf("refused: %v", err)
		})
	}
}
