package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/client/keyring"
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

	node, dropped := rotationDroppingNode(t, w, 0)
	if _, err := w.mustClient(t, node).RotateKey(ctx, w.patient, w.patientID, w.kek, nil); err == nil {
		t.Fatal("a rotation through a node that drops it succeeded")
	}
	envelopes := dropped()
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
	checkNotHeldBy(t, w, envelopes, current, p.KeyVersion)
	checkRevokeDone(ctx, t, w, c)
}

// An interrupted revocation: the Revoke committed, and every rotation
// after it failed (here through a node that drops RotateKey). revoke's
// help promises that running it again completes what is missing: no second
// Revoke, the rotations to two versions past the revoked clinician's last
// envelope, and no envelope for the clinician in any attempt (each was
// built after the revocation).
func TestRevokeResumesAfterFailedRotation(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)
	c := w.mustClient(t, w.node.RPC)
	perms, _, err := c.Permissions(ctx, w.patientID)
	if err != nil {
		t.Fatal(err)
	}
	var envelopeVersion uint64
	for _, perm := range perms {
		if bytes.Equal(perm.Grantee, w.clinician.Address()) {
			envelopeVersion = perm.KeyVersion
		}
	}
	if envelopeVersion == 0 {
		t.Fatal("the clinician holds no envelope to revoke")
	}

	// Unverified, nothing is revoked: the rotations would seal the new
	// keys on the node's word.
	unverified, err := client.New(ctx, client.Config{Node: w.node.RPC, Verify: false, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer unverified.Close()
	if _, err := unverified.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil); !errors.Is(err, client.ErrSealUnverified) {
		t.Fatalf("an unverified RevokeAndRotate: %v, want ErrSealUnverified", err)
	}
	if perm, _, err := c.Permission(ctx, w.patientID, w.clinician.Address()); err != nil || perm.RevokedHeight != 0 {
		t.Fatalf("after the refused unverified revocation: %v, %v; want the consent standing", perm, err)
	}

	node, dropped := rotationDroppingNode(t, w, 0)
	first, err := w.mustClient(t, node).RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
	if err == nil {
		t.Fatal("a revocation whose rotations a node drops reported success")
	}
	if first == nil || first.Revoke == nil || first.RevokedHeight == 0 || len(first.Rotations) != 0 {
		t.Fatalf("interrupted RevokeAndRotate = %+v, %v; want the Revoke committed and no rotation", first, err)
	}
	t.Logf("interrupted: %v", err)
	p, err := c.Patient(ctx, w.patientID)
	if err != nil || p.KeyVersion != envelopeVersion {
		t.Fatalf("after the interrupted revocation the patient is at key version %d (%v), want %d", p.GetKeyVersion(), err, envelopeVersion)
	}
	// Until the rotations are done, no record is added under the key the
	// revoked clinician holds (a reviewer's finding: the chain took one,
	// whose data key the clinician could then unwrap).
	if p.MinKeyVersion != envelopeVersion+2 {
		t.Fatalf("after the revocation no record is added below key version %d, want %d", p.MinKeyVersion, envelopeVersion+2)
	}
	addRecord := func() error {
		kek, err := w.kek(p.KeyVersion)
		if err != nil {
			t.Fatal(err)
		}
		dataKey, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte("written after the revocation"))
		msg, err := client.AddRecordMsg(w.patientID, client.RecordSpec{Category: "lab-results", ObjectKey: "after-revoke", SHA256: sum[:], Size: 100}, kek, p.KeyVersion, dataKey)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Submit(ctx, w.patient, msg)
		return err
	}
	if err := addRecord(); err == nil || !strings.Contains(err.Error(), "until the key rotations after a revocation are done") {
		t.Fatalf("a record added under the revoked clinician's key: %v", err)
	}

	// Run again, through an honest node.
	res, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
	if err != nil {
		t.Fatalf("resumed RevokeAndRotate: %v", err)
	}
	if res.Revoke != nil || res.RevokedHeight != first.RevokedHeight {
		t.Fatalf("resumed RevokeAndRotate revoked again (%+v) or at another height (%d, first %d)", res.Revoke, res.RevokedHeight, first.RevokedHeight)
	}
	if len(res.Rotations) != 2 || res.LastRotation().NewVersion != envelopeVersion+2 {
		t.Fatalf("resumed RevokeAndRotate made rotations %+v; want 2, to version %d", res.Rotations, envelopeVersion+2)
	}
	if p, err = c.Patient(ctx, w.patientID); err != nil || p.KeyVersion != envelopeVersion+2 {
		t.Fatalf("patient at key version %d (%v), want %d", p.GetKeyVersion(), err, envelopeVersion+2)
	}
	if err := addRecord(); err != nil {
		t.Fatalf("a record after the revocation's rotations: %v", err)
	}
	rots := dropped()
	if len(rots) == 0 {
		t.Fatal("no RotateKey reached the dropping node")
	}
	for _, rot := range rots {
		for _, env := range rot.Envelopes {
			if bytes.Equal(env.Grantee, w.clinician.Address()) {
				t.Fatalf("a rotation built after the revocation (to version %d) sealed its KEK to the revoked clinician", rot.NewKeyVersion)
			}
		}
	}
	checkRevokeDone(ctx, t, w, c)
}

// rotationDroppingNode is a node for w's clients that passes on the first
// pass RotateKey transactions, takes the later ones and never passes them
// on (the broadcast fails); everything else goes to w's node. dropped
// returns the rotations it took.
func rotationDroppingNode(t *testing.T, w *world, pass int) (url string, dropped func() []*emrv1.MsgRotateKey) {
	t.Helper()
	var mu sync.Mutex
	var rots []*emrv1.MsgRotateKey
	passed := 0
	proxy := clienttest.NewProxy(t, w.node.RPC)
	proxy.SetRoute(func(call clienttest.Call) string {
		raw := clienttest.BroadcastTx(call)
		if raw == nil {
			return ""
		}
		tx, err := app.DecodeTx(raw)
		if err != nil || tx.Body.Msg.GetRotateKey() == nil {
			return ""
		}
		mu.Lock()
		defer mu.Unlock()
		if passed < pass {
			passed++
			return ""
		}
		rots = append(rots, tx.Body.Msg.GetRotateKey())
		return "http://127.0.0.1:1" // nothing listens: the broadcast fails
	})
	return proxy.URL, func() []*emrv1.MsgRotateKey {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(rots)
	}
}

// checkNotHeldBy fails the test if any envelope of rots seals current (the
// patient's KEK of version) to w's clinician.
func checkNotHeldBy(t *testing.T, w *world, rots []*emrv1.MsgRotateKey, current []byte, version uint64) {
	t.Helper()
	if current == nil {
		t.Fatalf("the patient's key holds no KEK of version %d", version)
	}
	for _, rot := range rots {
		for _, env := range rot.Envelopes {
			if !bytes.Equal(env.Grantee, w.clinician.Address()) {
				continue
			}
			kek, err := crypto.OpenEnvelope(w.clinician.EncPrivKey(), env.WrappedKek, crypto.EnvelopeBinding{
				PatientID: w.patientID, Grantee: w.clinician.Address(), KeyVersion: rot.NewKeyVersion})
			if err != nil {
				t.Fatalf("the clinician's envelope of a dropped rotation: %v", err)
			}
			if bytes.Equal(kek, current) {
				t.Fatalf("the revoked clinician holds the patient's current KEK (version %d) from a rotation that never committed", version)
			}
		}
	}
}

// checkRevokeDone: a further RevokeAndRotate has nothing left to do, and
// the revoked clinician's reads are refused.
func checkRevokeDone(ctx context.Context, t *testing.T, w *world, c *client.Client) {
	t.Helper()
	again, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
	if err != nil || again.Revoke != nil || again.LastRotation() != nil {
		t.Fatalf("another RevokeAndRotate = %+v, %v", again, err)
	}
	if _, err := c.Submit(ctx, w.clinician, &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
		PatientId: w.patientID, RecordSequences: []uint64{1}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}}); err == nil {
		t.Fatal("the revoked clinician read a record")
	}
}

// A revocation's rotations re-wrap the records' data keys once: the last
// one re-wraps every record straight under the newest key; the one before
// re-wraps nothing, since its key is replaced a block later. And KEKFunc
// hands out copies for the caller to clear: GrantMsg, each rotation and
// FileKeyRewrapper clear the copy they were handed once used, so no
// patient KEK stays in memory longer than the message it went into.
func TestRevokeRewrapsOnce(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)
	var handed [][]byte
	kek := func(v uint64) ([]byte, error) {
		k, err := w.kek(v)
		if err == nil {
			handed = append(handed, k)
		}
		return k, err
	}
	c := w.mustClient(t, w.node.RPC)
	if _, err := c.GrantMsg(ctx, w.patientID, client.GrantSpec{
		Grantee: w.clinician.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ},
		Categories: []string{"lab-results"}, NotAfter: time.Now().Add(time.Hour),
	}, kek); err != nil {
		t.Fatal(err)
	}
	res, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), kek, client.FileKeyRewrapper(w.patientID, kek))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rotations) != 2 {
		t.Fatalf("%d rotations, want 2 (the clinician's envelope is of the current version)", len(res.Rotations))
	}
	first, last := res.Rotations[0], res.Rotations[1]
	if !first.RewrapDeferred || len(first.Rewrapped) != 0 || len(first.Skipped) != 0 {
		t.Fatalf("first rotation: deferred %v, re-wrapped %v, skipped %v; want nothing re-wrapped", first.RewrapDeferred, first.Rewrapped, first.Skipped)
	}
	recs, _, err := c.AllRecords(ctx, w.patientID, "")
	if err != nil {
		t.Fatal(err)
	}
	if last.RewrapDeferred || len(last.Skipped) != 0 || len(last.Rewrapped) != len(recs) || len(recs) == 0 {
		t.Fatalf("last rotation: deferred %v, re-wrapped %v, skipped %v of %d records", last.RewrapDeferred, last.Rewrapped, last.Skipped, len(recs))
	}
	for _, r := range recs {
		if r.KeyVersion != last.NewVersion {
			t.Errorf("record %d under key version %d, want %d", r.Sequence, r.KeyVersion, last.NewVersion)
		}
		dk, err := crypto.UnwrapKey(w.patient.KEKs[last.NewVersion], r.WrappedFileKey, crypto.FileKeyAAD(w.patientID, r.Category, r.KeyVersion))
		if err != nil || len(dk) == 0 {
			t.Errorf("record %d does not open under the newest key: %v", r.Sequence, err)
		}
	}
	// One for the grant, one new KEK per rotation, one old KEK per
	// re-wrapped record: every copy cleared.
	if want := 1 + 2 + len(last.Rewrapped); len(handed) != want {
		t.Fatalf("KEKFunc called %d times, want %d (%d records re-wrapped)", len(handed), want, len(last.Rewrapped))
	}
	for i, k := range handed {
		if !bytes.Equal(k, make([]byte, len(k))) {
			t.Errorf("copy %d of %d handed out is still in memory", i+1, len(handed))
		}
	}
}

// A revocation interrupted after its first rotation committed (whose
// re-wrap was deferred to the second) says the remaining grantees are
// locked out of existing records until it is run again; run again, its
// one rotation re-wraps every record from the version before the first
// straight to the newest key.
func TestRevokeResumesAfterDeferredRotation(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)
	c := w.mustClient(t, w.node.RPC)
	rewrap := client.FileKeyRewrapper(w.patientID, w.kek)
	p, err := c.Patient(ctx, w.patientID)
	if err != nil {
		t.Fatal(err)
	}
	start := p.KeyVersion

	node, _ := rotationDroppingNode(t, w, 1)
	first, err := w.mustClient(t, node).RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, rewrap)
	if err == nil || !strings.Contains(err.Error(), "cannot open the existing records") {
		t.Fatalf("interrupted after one rotation: %v; want an error that says the other grantees are locked out", err)
	}
	if first == nil || len(first.Rotations) != 1 || !first.Rotations[0].RewrapDeferred || first.Rotations[0].NewVersion != start+1 {
		t.Fatalf("interrupted RevokeAndRotate = %+v; want one rotation, to version %d, its re-wrap deferred", first, start+1)
	}

	res, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, rewrap)
	if err != nil {
		t.Fatalf("resumed RevokeAndRotate: %v", err)
	}
	recs, _, err := c.AllRecords(ctx, w.patientID, "")
	if err != nil {
		t.Fatal(err)
	}
	last := res.LastRotation()
	if len(res.Rotations) != 1 || last.NewVersion != start+2 || last.RewrapDeferred || len(recs) == 0 || len(last.Rewrapped) != len(recs) {
		t.Fatalf("resumed: rotations %+v, %d records; want one rotation to version %d re-wrapping every record", res.Rotations, len(recs), start+2)
	}
	for _, r := range recs {
		if r.KeyVersion != start+2 {
			t.Errorf("record %d under key version %d, want %d", r.Sequence, r.KeyVersion, start+2)
		}
	}
	checkRevokeDone(ctx, t, w, c)
}

// TestSealingNeedsVerifiedReads: a client that does not verify its reads
// refuses to grant, rotate, share, or revoke a grantee that holds a key, before
// it asks the node anything: the grantees' encryption keys would come on
// the node's word, and a node that lied would receive the patient's KEK
// (a reviewer's finding; --no-verify only warned).
func TestSealingNeedsVerifiedReads(t *testing.T) {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Node: "http://127.0.0.1:1", ChainID: "emr-unverified", Verify: false, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pid := bytes.Repeat([]byte{7}, 32)
	kek := func(uint64) ([]byte, error) { return make([]byte, 32), nil }
	if _, err := c.GrantMsg(ctx, pid, client.GrantSpec{Grantee: make([]byte, 20), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ}, NotAfter: time.Now().Add(time.Hour)}, kek); !errors.Is(err, client.ErrSealUnverified) {
		t.Fatalf("GrantMsg unverified: %v, want ErrSealUnverified", err)
	}
	patient, err := keyring.Generate("unverified-patient")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKey(ctx, patient, pid, kek, nil); !errors.Is(err, client.ErrSealUnverified) {
		t.Fatalf("RotateKey unverified: %v, want ErrSealUnverified", err)
	}
	// A share seals a record's content to the study's key.
	_, err = c.ShareRecord(ctx, patient, client.ShareRequest{PatientID: pid, Record: 1, StudyID: "s1"},
		client.TransferOptions{Sidecars: []string{"http://127.0.0.1:1"}})
	if !errors.Is(err, client.ErrSealUnverified) {
		t.Fatalf("ShareRecord unverified: %v, want ErrSealUnverified", err)
	}
}

// TestPlainRotationBelowTheFloorDefersRewrap: a plain RotateKey (another
// device, or a rotation outside RevokeAndRotate) while a revocation's
// rotations are unfinished re-wraps no record key: the chain takes none
// under a version a revoked grantee may hold (the session-46 review), and
// a rotation that sent them would be refused.
func TestPlainRotationBelowTheFloorDefersRewrap(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)
	c := w.mustClient(t, w.node.RPC)
	if _, err := c.Submit(ctx, w.patient, &emrv1.Msg{Sum: &emrv1.Msg_Revoke{Revoke: &emrv1.MsgRevoke{PatientId: w.patientID, Grantee: w.clinician.Address()}}}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Patient(ctx, w.patientID)
	if err != nil || p.MinKeyVersion != p.KeyVersion+2 {
		t.Fatalf("after the revocation: %v, %v; want the floor two versions up", p, err)
	}
	rot, err := c.RotateKey(ctx, w.patient, w.patientID, w.kek, client.FileKeyRewrapper(w.patientID, w.kek))
	if err != nil {
		t.Fatalf("a plain rotation below the floor: %v", err)
	}
	if !rot.RewrapDeferred || len(rot.Rewrapped) != 0 || rot.NewVersion != p.KeyVersion+1 {
		t.Fatalf("a plain rotation below the floor: %+v; want version %d, nothing re-wrapped", rot, p.KeyVersion+1)
	}
	rot, err = c.RotateKey(ctx, w.patient, w.patientID, w.kek, client.FileKeyRewrapper(w.patientID, w.kek))
	if err != nil || rot.RewrapDeferred || len(rot.Rewrapped) == 0 {
		t.Fatalf("the rotation to the floor: %+v, %v; want the record keys re-wrapped", rot, err)
	}
}
