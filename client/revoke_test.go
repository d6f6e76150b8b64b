package client_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// A rotation that a node saw but that never committed (the node dropped
// it; or it sat in the mempool until it went invalid) has still handed its
// new KEK to every grantee it sealed an envelope for. The KEK of a version
// is kept and used again by the next attempt at that version (KEKFunc: a
// crash must never lose a KEK that may be on chain), so a revocation whose
// rotation went to that version would leave the revoked member holding the
// patient's current KEK. Reviewer's finding: it did.
func TestRevokeAfterDroppedRotation(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)

	// A node that takes RotateKey transactions and never passes them on.
	var mu sync.Mutex
	var dropped [][]byte
	proxy := clienttest.NewProxy(t, w.node.RPC)
	proxy.SetRoute(func(call clienttest.Call) string {
		raw := broadcastTx(call)
		if raw == nil {
			return ""
		}
		if tx, err := app.DecodeTx(raw); err != nil || tx.Body.Msg.GetRotateKey() == nil {
			return ""
		}
		mu.Lock()
		dropped = append(dropped, raw)
		mu.Unlock()
		return "http://127.0.0.1:1" // nothing listens: the broadcast fails
	})
	if _, err := w.mustClient(t, proxy.URL).RotateKey(ctx, w.patient, w.patientID, w.kek, nil); err == nil {
		t.Fatal("a rotation through a node that drops it succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	var envelopes []*emrv1.MsgRotateKey
	for _, raw := range dropped {
		tx, err := app.DecodeTx(raw)
		if err != nil {
			t.Fatal(err)
		}
		envelopes = append(envelopes, tx.Body.Msg.GetRotateKey())
	}
	if len(envelopes) == 0 {
		t.Fatal("no RotateKey reached the node")
	}

	// The patient revokes the clinician, through an honest node.
	c := w.mustClient(t, w.node.RPC)
	res, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
	if err != nil || res.Revoke == nil || res.LastRotation() == nil {
		t.Fatalf("RevokeAndRotate = %+v, %v", res, err)
	}
	p, err := c.Patient(ctx, w.patientID)
	if err != nil {
		t.Fatal(err)
	}
	current := w.patient.KEKs[p.KeyVersion]
	if res.LastRotation().NewVersion != p.KeyVersion || current == nil {
		t.Fatalf("patient at key version %d, the last rotation made %d", p.KeyVersion, res.LastRotation().NewVersion)
	}
	// What the revoked clinician can open of the dropped rotations.
	for _, rot := range envelopes {
		for _, env := range rot.Envelopes {
			if !bytes.Equal(env.Grantee, w.clinician.Address()) {
				continue
			}
			kek, err := crypto.OpenEnvelope(w.clinician.EncPrivKey(), env.WrappedKek, crypto.EnvelopeBinding{
				PatientID: w.patientID, Grantee: w.clinician.Address(), KeyVersion: rot.NewKeyVersion})
			if err != nil {
				t.Fatalf("the clinician's envelope of the dropped rotation: %v", err)
			}
			if bytes.Equal(kek, current) {
				t.Fatalf("the revoked clinician holds the patient's current KEK (version %d) from a rotation that never committed", p.KeyVersion)
			}
		}
	}

	// Run again: nothing left to do.
	again, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
	if err != nil || again.Revoke != nil || again.LastRotation() != nil {
		t.Fatalf("second RevokeAndRotate = %+v, %v", again, err)
	}
	if _, err := c.Submit(ctx, w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
		PatientId: w.patientID, RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}}); err == nil {
		t.Fatal("the revoked clinician read a record")
	}
}
