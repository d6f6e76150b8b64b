package app_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/oasisprotocol/curve25519-voi/curve"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// weakSigningKeys are 32-byte strings that are no one's ed25519 key: the
// encodings of points outside the prime-order subgroup, a non-canonical
// encoding, and bytes that decode to no point.
func weakSigningKeys(t *testing.T) map[string][]byte {
	t.Helper()
	identity := append([]byte{1}, make([]byte, 31)...)
	// (0, -1), of order 2: y = p-1 = 2^255-20.
	order2 := append([]byte{0xec}, bytes.Repeat([]byte{0xff}, 30)...)
	order2 = append(order2, 0x7f)
	// The identity again, as y = p+1: not reduced.
	nonCanonical := append([]byte{0xee}, bytes.Repeat([]byte{0xff}, 30)...)
	nonCanonical = append(nonCanonical, 0x7f)
	// An honest key plus the point of order 2: the right size, a point,
	// but with a torsion part.
	var honest, torsion, mixed curve.EdwardsPoint
	var enc curve.CompressedEdwardsY
	must := func(_ any, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(enc.SetBytes(apptest.NewActor("weak-key-base").SignPub()))
	must(honest.SetCompressedY(&enc))
	must(enc.SetBytes(order2))
	must(torsion.SetCompressedY(&enc))
	mixed.Add(&honest, &torsion)
	var mixedEnc curve.CompressedEdwardsY
	mixedEnc.SetEdwardsPoint(&mixed)
	// The smallest y that is on no point.
	var notAPoint []byte
	for y := byte(2); notAPoint == nil; y++ {
		b := append([]byte{y}, make([]byte, 31)...)
		var p curve.EdwardsPoint
		if _, err := enc.SetBytes(b); err == nil {
			if _, err := p.SetCompressedY(&enc); err != nil {
				notAPoint = b
			}
		}
	}
	return map[string][]byte{
		"identity": identity, "order 2": order2, "non-canonical": nonCanonical,
		"mixed order": mixedEnc[:], "not a point": notAPoint,
	}
}

// TestWeakSigningKeysRefused: a member cannot be registered, seated at
// genesis or enrolled as a patient with a signing key no private key
// stands behind. Under ZIP-215 (CometBFT's verification) a key of small
// order takes one signature for every message: with it anyone would sign
// as that member.
func TestWeakSigningKeysRefused(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	newbie := apptest.NewActor("weak-key-newbie")
	for name, key := range weakSigningKeys(t) {
		t.Run(name, func(t *testing.T) {
			reg := apptest.RegisterMember(newbie, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
			reg.GetRegisterMember().SignPubKey = key
			res := c.Exec(w.regA, reg)
			ruleCheck(t, "register "+name, res, app.ErrInvalidMsg, "signing key is not")

			m := newbie.GenesisMember(emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
			m.SignPubKey = key
			g := apptest.Consortium()
			g.Members = append(g.Members, m)
			if err := app.ValidateGenesis(g); app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), "signing key is not") {
				t.Errorf("genesis with this member: %v, want an invalid genesis", err)
			}
		})
	}
	// An honest key still registers.
	c.Must(w.regA, apptest.RegisterMember(newbie, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))

	// Nobody holds the identity's private key, yet R = the base point,
	// S = 1 is a valid signature of every message under it: refused all
	// the same when it enrolls a patient.
	identity := weakSigningKeys(t)["identity"]
	forged := append(bytes.Clone(curve.ED25519_BASEPOINT_COMPRESSED[:]), append([]byte{1}, make([]byte, 31)...)...)
	if !ed25519.PubKey(identity).VerifySignature([]byte("any message"), forged) {
		t.Fatal("the forged signature does not verify: the case tests nothing")
	}
	seed := apptest.PatientSeed("weak-key-patient")
	tx, err := app.EncodeTx(&emrv1.TxBody{ChainId: apptest.ChainID, SignerPubKey: identity, Sequence: 0,
		Msg: &emrv1.Msg{Sum: &emrv1.Msg_EnrollPatient{EnrollPatient: &emrv1.MsgEnrollPatient{
			PatientId: app.BoundPatientID(identity, seed), IdSeed: seed, EncPubKey: newbie.EncPub(), KekCheck: apptest.KEKCheck(1)}}},
	}, func([]byte) ([]byte, error) { return forged, nil })
	if err != nil {
		t.Fatal(err)
	}
	ruleCheck(t, "enrol with the identity key", c.Block(tx)[0], app.ErrInvalidMsg, "the signer's key is not an ed25519 key of prime order")
}
