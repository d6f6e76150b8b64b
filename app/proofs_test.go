package app_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// proveQuery runs a Query method with prove=true at height.
func proveQuery(t *testing.T, c *apptest.Chain, method string, height int64, req, resp proto.Message) {
	t.Helper()
	data, _ := proto.Marshal(req)
	out, h, err := c.App.Query(app.QueryPathPrefix+method, data, height, true)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if height != 0 && h != height {
		t.Fatalf("%s answered at height %d, asked %d", method, h, height)
	}
	if err := proto.Unmarshal(out, resp); err != nil {
		t.Fatal(err)
	}
}

func TestQueryProofs(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	reg := apptest.Registrar(apptest.HospitalA)
	doc := apptest.NewActor("dr-proof")
	pat := apptest.NewActor("patient-proof")
	pid := apptest.PatientID("patient-proof")
	c.Must(reg, apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	c.Must(pat, apptest.Enroll(pat))
	c.Must(pat, apptest.AddRecord(pid, "imaging", "xray-1"))
	rootBefore, heightBefore := c.AppHash(), c.Height()
	c.Must(pat, apptest.AddRecord(pid, "imaging", "xray-2"))
	root, height := c.AppHash(), c.Height()

	var records emrv1.QueryRecordsResponse
	proveQuery(t, c, "Records", 0, &emrv1.QueryRecordsRequest{PatientId: hexOf(pid)}, &records)
	if records.Height != height || len(records.Records) != 2 {
		t.Fatalf("records at %d: %d records, want 2 at %d", records.Height, len(records.Records), height)
	}
	// Every record shown is backed by a proven value, and every proof
	// verifies against the committed root.
	proven := map[string][]byte{}
	for _, p := range records.Proofs {
		ops := app.FromProofOps(p.Ops)
		if len(p.Value) == 0 {
			if err := store.VerifyAbsence(root, p.Key, ops); err != nil {
				t.Fatalf("absence of %x: %v", p.Key, err)
			}
			continue
		}
		if err := store.VerifyMembership(root, p.Key, p.Value, ops); err != nil {
			t.Fatalf("membership of %x: %v", p.Key, err)
		}
		proven[string(p.Key)] = p.Value
	}
	for _, r := range records.Records {
		found := false
		for _, v := range proven {
			var got emrv1.Record
			if proto.Unmarshal(v, &got) == nil && proto.Equal(&got, r) {
				found = true
			}
		}
		if !found {
			t.Fatalf("record %d is not backed by a proof", r.Sequence)
		}
	}

	// A changed value does not verify.
	for _, p := range records.Proofs {
		if len(p.Value) == 0 {
			continue
		}
		forged := bytes.Clone(p.Value)
		forged[len(forged)-1] ^= 1
		if err := store.VerifyMembership(root, p.Key, forged, app.FromProofOps(p.Ops)); !errors.Is(err, store.ErrInvalidProof) {
			t.Fatalf("forged value of %x verified: %v", p.Key, err)
		}
	}

	// A proof for another height does not verify against this root, and
	// does against its own.
	var old emrv1.QueryPatientResponse
	proveQuery(t, c, "Patient", heightBefore, &emrv1.QueryPatientRequest{PatientId: hexOf(pid)}, &old)
	if old.Patient.RecordCount != 1 {
		t.Fatalf("patient at %d has %d records, want 1", heightBefore, old.Patient.RecordCount)
	}
	p := old.Proofs[0]
	if err := store.VerifyMembership(rootBefore, p.Key, p.Value, app.FromProofOps(p.Ops)); err != nil {
		t.Fatalf("old proof against old root: %v", err)
	}
	if err := store.VerifyMembership(root, p.Key, p.Value, app.FromProofOps(p.Ops)); !errors.Is(err, store.ErrInvalidProof) {
		t.Fatalf("old proof verified against the new root: %v", err)
	}

	// Absence: an account that never signed has no sequence entry, proven.
	stranger := apptest.NewActor("stranger")
	var acct emrv1.QueryAccountResponse
	proveQuery(t, c, "Account", 0, &emrv1.QueryAccountRequest{Address: hexOf(stranger.Address)}, &acct)
	if len(acct.Proofs) != 1 || len(acct.Proofs[0].Value) != 0 {
		t.Fatalf("want one absence proof, got %v", acct.Proofs)
	}
	if err := store.VerifyAbsence(root, acct.Proofs[0].Key, app.FromProofOps(acct.Proofs[0].Ops)); err != nil {
		t.Fatalf("absence proof: %v", err)
	}
	// ...and an absence proof does not prove a value.
	if err := store.VerifyMembership(root, acct.Proofs[0].Key, []byte("x"), app.FromProofOps(acct.Proofs[0].Ops)); err == nil {
		t.Fatal("absence proof verified as membership")
	}

	// The raw key path proves too.
	key := acct.Proofs[0].Key
	_, ops, h, err := c.App.QueryKey(key, 0, true)
	if err != nil || h != height {
		t.Fatalf("QueryKey: %v at %d", err, h)
	}
	if err := store.VerifyAbsence(root, key, ops); err != nil {
		t.Fatalf("raw absence proof: %v", err)
	}
}

func TestQueryHeights(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	data, _ := proto.Marshal(&emrv1.QueryParamsRequest{})
	if _, _, err := c.App.Query(app.QueryPathPrefix+"Params", data, c.Height()+1, false); app.CodeOf(err) != app.ErrHeightNotCommitted.Code() {
		t.Fatalf("query above the last height: %v", err)
	}
	// A height pruned away is one the node no longer keeps, and it says
	// which is the earliest it does; one before the first commit, one not
	// committed yet.
	opts := store.DefaultOptions()
	opts.KeepRecent, opts.PruneInterval = 2, 1
	pruned := apptest.New(t, apptest.Options{Dir: t.TempDir(), Store: &opts})
	for range 5 {
		pruned.Block()
	}
	for _, prove := range []bool{false, true} {
		_, _, err := pruned.App.Query(app.QueryPathPrefix+"Params", data, 1, prove)
		if app.CodeOf(err) != app.ErrHeightNotKept.Code() || !strings.Contains(err.Error(), "the earliest this node keeps is") {
			t.Fatalf("query of a pruned height (prove %v): %v", prove, err)
		}
	}
	if _, _, err := pruned.App.Query(app.QueryPathPrefix+"Params", data, pruned.Height(), true); err != nil {
		t.Fatalf("query of a kept height: %v", err)
	}
	if _, _, err := c.App.Query("/emrchain.v1.Query/Nope", data, 0, false); app.CodeOf(err) != app.ErrInvalidQuery.Code() {
		t.Fatalf("unknown method: %v", err)
	}
	if _, _, err := c.App.Query(app.QueryPathPrefix+"Member", []byte{0xff, 0xff}, 0, false); app.CodeOf(err) != app.ErrInvalidQuery.Code() {
		t.Fatalf("garbage request: %v", err)
	}
}

// TestValidatorKeyProofs: a proven ValidatorKey answer carries one proof
// for each of the key's three entries (its validator, 0x13; its unseen
// power, 0x15; its change count, 0x16; store/README.md), each verifying
// against the AppHash: a removed key's validator and unseen power proven
// absent, its count present. Nothing else: the answer does not grow with
// the validator set, and a verified read needs no range proof.
func TestValidatorKeyProofs(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	y := apptest.NewActor("validator-proof-y")
	w.decide(apptest.AddValidator(y, 1))
	w.decide(apptest.SetValidatorPower(y.SignPub(), 0))
	root := c.AppHash()

	var resp emrv1.QueryValidatorKeyResponse
	proveQuery(t, c, "ValidatorKey", 0, &emrv1.QueryValidatorKeyRequest{PubKey: y.SignPub()}, &resp)
	if resp.Validator != nil || resp.UnseenPower != 0 || resp.Changes != 2 {
		t.Fatalf("the removed key: %v", &resp)
	}
	want := map[byte][]byte{0x13: nil, 0x15: nil, 0x16: {0, 0, 0, 0, 0, 0, 0, 2}}
	if len(resp.Proofs) != len(want) {
		t.Fatalf("%d proofs, want %d", len(resp.Proofs), len(want))
	}
	for _, p := range resp.Proofs {
		value, ok := want[p.Key[0]]
		if !ok || !bytes.Equal(p.Key[1:], y.SignPub()) || !bytes.Equal(p.Value, value) {
			t.Fatalf("proof of key %x = %x, want one of the key's entries %x", p.Key, p.Value, want)
		}
		delete(want, p.Key[0])
		ops := app.FromProofOps(p.Ops)
		if len(p.Value) == 0 {
			if err := store.VerifyAbsence(root, p.Key, ops); err != nil {
				t.Fatalf("absence of %x: %v", p.Key, err)
			}
		} else if err := store.VerifyMembership(root, p.Key, p.Value, ops); err != nil {
			t.Fatalf("membership of %x: %v", p.Key, err)
		}
	}

	// A validator's entry is proven present.
	v0 := apptest.Validator(0).SignPub()
	proveQuery(t, c, "ValidatorKey", 0, &emrv1.QueryValidatorKeyRequest{PubKey: v0}, &resp)
	for _, p := range resp.Proofs {
		if p.Key[0] == 0x13 {
			var v emrv1.Validator
			if err := proto.Unmarshal(p.Value, &v); err != nil || !proto.Equal(&v, resp.Validator) {
				t.Fatalf("validator proof value %x (%v), answer %v", p.Value, err, resp.Validator)
			}
			if err := store.VerifyMembership(root, p.Key, p.Value, app.FromProofOps(p.Ops)); err != nil {
				t.Fatalf("membership of %x: %v", p.Key, err)
			}
		}
	}
}
