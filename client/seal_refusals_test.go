package client_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// A grant's envelope is a disclosure as soon as a node sees the
// transaction, committed or refused (docs/decisions.md, "A grant that
// does not commit"), so GrantMsg hands out no grant the chain would
// refuse for what verified state shows: a grantee it may not grant to (one
// suspended for a lost key, a registrar, a storage service that keeps
// every blob), a category the params do not list, a share for no study, a
// malformed grant. It refuses with the chain's own rule and error.
func TestGrantMsgSealsNothingToAMemberTheChainRefuses(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)
	c := w.mustClient(t, w.node.RPC)

	suspended, err := keyring.Generate("suspended")
	if err != nil {
		t.Fatal(err)
	}
	w.mustSubmit(ctx, t, c, w.registrar, &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
		SignPubKey: suspended.PubKey(), EncPubKey: suspended.EncPubKey(), Role: emrv1.Role_ROLE_CLINICIAN,
		OrganizationId: "dev-hospital", CredentialRef: "licence:GMC-5678",
	}}})
	w.mustSubmit(ctx, t, c, w.registrar, &emrv1.Msg{Sum: &emrv1.Msg_SetMemberStatus{SetMemberStatus: &emrv1.MsgSetMemberStatus{
		Address: suspended.Address(), Status: emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED,
	}}})

	read := []emrv1.Right{emrv1.Right_RIGHT_READ}
	until := time.Now().Add(24 * time.Hour)
	for _, tc := range []struct {
		name string
		spec client.GrantSpec
		want error
	}{
		{"to a suspended clinician", client.GrantSpec{Grantee: suspended.Address(), Rights: read, NotAfter: until}, app.ErrGranteeSuspended},
		{"to a registrar", client.GrantSpec{Grantee: w.registrar.Address(), Rights: read, NotAfter: until}, app.ErrUnauthorized},
		{"of a category the params do not list", client.GrantSpec{Grantee: w.clinician.Address(), Rights: read,
			Categories: []string{"lab-results", "allergies"}, NotAfter: until}, app.ErrUnknownCategory},
		{"of a share for no study", client.GrantSpec{Grantee: w.clinician.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_SHARE},
			StudyID: "no-such-study", NotAfter: until}, app.ErrNotFound},
		{"of no rights", client.GrantSpec{Grantee: w.clinician.Address(), NotAfter: until}, app.ErrInvalidMsg},
	} {
		msg, err := c.GrantMsg(ctx, w.patientID, tc.spec, w.kek)
		if !errors.Is(err, tc.want) || msg != nil {
			t.Errorf("GrantMsg %s = %v, %v; want no message and an error matching %v", tc.name, msg, err, tc.want)
		}

		// The chain refuses that grant for the same reason: the client's
		// check is the chain's, not a stricter one.
		p, err := c.Patient(ctx, w.patientID)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Member(ctx, tc.spec.Grantee)
		if err != nil {
			t.Fatal(err)
		}
		kek, err := w.kek(p.KeyVersion)
		if err != nil {
			t.Fatal(err)
		}
		env, err := client.SealKEK(m, w.patientID, p.KeyVersion, kek)
		if err != nil {
			t.Fatal(err)
		}
		grant := &emrv1.Msg{Sum: &emrv1.Msg_Grant{Grant: &emrv1.MsgGrant{
			PatientId: w.patientID, Grantee: tc.spec.Grantee, Rights: tc.spec.Rights, Categories: tc.spec.Categories,
			StudyId: tc.spec.StudyID, NotAfter: timestamppb.New(tc.spec.NotAfter), WrappedKek: env, KeyVersion: p.KeyVersion,
		}}}
		if _, err := c.Submit(ctx, w.patient, grant); !errors.Is(err, tc.want) {
			t.Errorf("the chain took a grant %s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// A grant the chain takes is still sealed.
	msg, err := c.GrantMsg(ctx, w.patientID, client.GrantSpec{Grantee: w.clinician.Address(), Rights: read,
		NotAfter: time.Now().Add(24 * time.Hour)}, w.kek)
	if err != nil || len(msg.GetGrant().GetWrappedKek()) == 0 {
		t.Fatalf("GrantMsg to the active clinician = %v, %v", msg, err)
	}
}

// An upload wraps the record's data key under the KEK of the version the
// patient read says is current, after checking that KEK against the
// check value the same read carries. Unverified, both are the node's
// word, and so is the revocation floor: a node can name an older version
// with its check value (each is public in the RotateKey that made it),
// the owner's keyring holds that KEK too, and the AddRecord carrying the
// data key wrapped under it reaches that node. A revoked grantee who
// holds the old KEK then opens the new record's key: what the floor
// (min_key_version) keeps the chain from taking. So Upload needs
// verified reads whoever the uploader is, the owner too.
func TestUploadNeedsVerifiedReads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Node: "http://127.0.0.1:1", ChainID: "emr-unverified", Verify: false, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	owner, err := keyring.Generate("unverified-owner")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Upload(ctx, owner, client.UploadRequest{
		PatientID: bytes.Repeat([]byte{7}, 32), Category: "lab-results", Source: strings.NewReader("record"), Size: 6,
		KEK: make([]byte, 32), KeyVersion: 1,
	}, client.TransferOptions{Sidecars: []string{"http://127.0.0.1:1"}, TempDir: t.TempDir()})
	if !errors.Is(err, client.ErrSealUnverified) {
		t.Fatalf("an unverified upload: %v, want ErrSealUnverified", err)
	}
}
