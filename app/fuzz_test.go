package app_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// seedMsgs is one message of every kind, for the fuzz seed corpora.
func seedMsgs() map[string]*emrv1.Msg {
	doc := apptest.NewActor("fuzz-doc")
	service := apptest.NewActor("fuzz-emergency-service")
	pid := apptest.PatientID("fuzz-patient")
	return map[string]*emrv1.Msg{
		"register_member":   apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA),
		"set_member_status": apptest.SetStatus(doc, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED),
		"enroll_patient":    apptest.Enroll(apptest.NewActor("fuzz-patient")),
		"grant": apptest.Grant(pid, doc, apptest.GrantSpec{
			Rights: []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_SHARE}, Categories: []string{"imaging"},
			NotAfter: apptest.GenesisTime.Add(time.Hour), Study: "s1", Anonymise: true,
		}),
		"revoke":            apptest.Revoke(pid, doc),
		"rotate_key":        apptest.RotateKey(pid, 2, []*emrv1.KeyEnvelope{{Grantee: doc.Address, WrappedKek: []byte("k")}}, []*emrv1.RewrappedKey{{RecordSequence: 1, WrappedFileKey: []byte("f")}}),
		"add_record":        apptest.AddRecord(pid, "imaging", "fuzz"),
		"record_access":     apptest.Access(pid, emrv1.Purpose_PURPOSE_TREATMENT, 1, 2),
		"register_study":    apptest.RegisterStudy("s1", doc),
		"share_record":      apptest.Share(pid, 1, "s1", true),
		"propose_org":       apptest.AddOrganization("org-fuzz", doc),
		"propose_validator": apptest.SetValidatorPower(apptest.Validator(1).SignPub(), 0),
		// An addition, with the key's proof of possession.
		"propose_validator_add": apptest.AddValidator(apptest.NewActor("fuzz-validator"), 10),
		"approve":               apptest.Approve(1),
		"withdraw":              apptest.Withdraw(1),
		"propose_status":        apptest.ConsortiumSetStatus(doc, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED),
		"propose_registrar":     apptest.AddRegistrar(apptest.HospitalB, doc),
		"propose_params":        apptest.SetParams(app.DefaultParams(), 0),
		"propose_retire":        apptest.RetireOrganization(apptest.HospitalB),
		// Break-glass: a service registered, a patient's opt-in, a read.
		"register_emergency_service": apptest.RegisterMember(service, emrv1.Role_ROLE_EMERGENCY_SERVICE, apptest.HospitalA),
		"grant_emergency": apptest.Grant(pid, service, apptest.GrantSpec{
			Rights: []emrv1.Right{emrv1.Right_RIGHT_EMERGENCY}, Categories: []string{"imaging"}, NotAfter: apptest.GenesisTime.Add(time.Hour),
		}),
		"emergency_access": apptest.EmergencyAccess(pid, service, 1, 2),
	}
}

// seedTxs signs every seed message.
func seedTxs() map[string][]byte {
	signer := apptest.NewActor("fuzz-signer")
	out := map[string][]byte{}
	for name, msg := range seedMsgs() {
		out[name] = signer.Tx(apptest.ChainID, 0, msg)
	}
	return out
}

// FuzzDecodeTx: DecodeTx never panics, and whatever it accepts is the
// canonical encoding of what it decoded.
func FuzzDecodeTx(f *testing.F) {
	for _, tx := range seedTxs() {
		f.Add(tx)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		dtx, err := app.DecodeTx(raw)
		if err != nil {
			if app.CodeOf(err) != app.ErrTxDecode.Code() && app.CodeOf(err) != app.ErrInvalidMsg.Code() {
				t.Fatalf("decode error with code %d: %v", app.CodeOf(err), err)
			}
			return
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(&emrv1.Tx{BodyBytes: dtx.BodyBytes, Signature: dtx.Signature})
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("accepted a non-canonical tx: %x", raw)
		}
		if !bytes.Equal(dtx.Signer, app.AddressOf(dtx.Body.SignerPubKey)) {
			t.Fatal("signer is not derived from the key")
		}
	})
}

// FuzzValidateMsg: ValidateMsg never panics on any message that decodes.
func FuzzValidateMsg(f *testing.F) {
	for _, msg := range seedMsgs() {
		bz, _ := proto.Marshal(msg)
		f.Add(bz)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var msg emrv1.Msg
		if proto.Unmarshal(raw, &msg) != nil {
			return
		}
		if err := app.ValidateMsg(&msg); err != nil && app.CodeOf(err) == app.ErrInternal.Code() {
			t.Fatalf("validation error without a code: %v", err)
		}
	})
}

// FuzzCheckTx runs arbitrary bytes through the whole pipeline (decode,
// signature, authentication, authorization, execution): never a panic,
// never an internal error.
func FuzzCheckTx(f *testing.F) {
	for _, tx := range seedTxs() {
		f.Add(tx)
	}
	c := apptest.New(f, apptest.Options{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		res := c.App.CheckTx(raw, false)
		if res.Code == app.ErrInternal.Code() {
			t.Fatalf("internal error: %s", res.Log)
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seed corpora under
// testdata/fuzz when EMRCHAIN_WRITE_FUZZ_SEEDS=1 (after a format change).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("EMRCHAIN_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set EMRCHAIN_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(target, name string, data []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, tx := range seedTxs() {
		write("FuzzDecodeTx", name, tx)
		write("FuzzCheckTx", name, tx)
	}
	for name, msg := range seedMsgs() {
		bz, _ := proto.Marshal(msg)
		write("FuzzValidateMsg", name, bz)
	}
}
