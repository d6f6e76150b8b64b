package apptest

import (
	"crypto/ecdh"
	"crypto/sha256"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Actor is a key holder: a registrar, clinician, patient... Its keys derive
// from its name, so runs are reproducible.
type Actor struct {
	Name    string
	Sign    ed25519.PrivKey
	Enc     *ecdh.PrivateKey
	Address []byte
}

// NewActor derives an actor's keys from its name.
func NewActor(name string) *Actor {
	seed := sha256.Sum256([]byte("emrchain/apptest/sign/" + name))
	sign := ed25519.GenPrivKeyFromSecret(seed[:])
	encSeed := sha256.Sum256([]byte("emrchain/apptest/enc/" + name))
	enc, err := ecdh.X25519().NewPrivateKey(encSeed[:])
	if err != nil {
		panic(err) // any 32 bytes are an X25519 private key
	}
	return &Actor{Name: name, Sign: sign, Enc: enc, Address: sign.PubKey().Address()}
}

// SignPub is the actor's ed25519 public key.
func (a *Actor) SignPub() []byte { return a.Sign.PubKey().Bytes() }

// EncPub is the actor's X25519 public key.
func (a *Actor) EncPub() []byte { return a.Enc.PublicKey().Bytes() }

// Tx signs msg as a transaction with the given sequence.
func (a *Actor) Tx(chainID string, seq uint64, msg *emrv1.Msg) []byte {
	return a.TxUntil(chainID, seq, 0, msg)
}

// TxUntil is Tx with a timeout height (0: none).
func (a *Actor) TxUntil(chainID string, seq, timeout uint64, msg *emrv1.Msg) []byte {
	tx, err := app.EncodeTx(&emrv1.TxBody{
		ChainId:       chainID,
		SignerPubKey:  a.SignPub(),
		Sequence:      seq,
		Msg:           msg,
		TimeoutHeight: timeout,
	}, a.Sign.Sign)
	if err != nil {
		panic(err)
	}
	return tx
}

// Possession is the actor's proof of possession of its signing key as a
// validator's consensus key of chain chainID, for a key never a validator
// (change count 0): what `emrchaind show validator --possession` prints
// for a node's key. PossessionAt makes one for another count.
func (a *Actor) Possession(chainID string) []byte {
	return a.PossessionAt(chainID, 0)
}

// PossessionAt is the actor's proof of possession for chain chainID at
// change count changes: what a proposal re-adding the key after changes
// executed changes of its power carries (`emrchaind show validator
// --possession --changes N`; Chain.ValidatorChanges reads the count).
func (a *Actor) PossessionAt(chainID string, changes uint64) []byte {
	sig, err := a.Sign.Sign(app.ValidatorPossessionSignBytes(chainID, a.SignPub(), changes))
	if err != nil {
		panic(err)
	}
	return sig
}

// GenesisMember describes the actor as a genesis member.
func (a *Actor) GenesisMember(role emrv1.Role, org string) *emrv1.GenesisMember {
	return &emrv1.GenesisMember{SignPubKey: a.SignPub(), EncPubKey: a.EncPub(), Role: role, OrganizationId: org, CredentialRef: "genesis:" + a.Name}
}

// PatientSeed is the id seed of the patient named name in tests (a client
// derives it from the patient's secret and identifying information).
func PatientSeed(name string) []byte {
	sum := sha256.Sum256([]byte("emrchain/apptest/patient/" + name))
	return sum[:]
}

// PatientID is the pseudonymous id NewActor(name) enrolls with (Enroll):
// bound to its key and PatientSeed(name).
func PatientID(name string) []byte {
	return app.BoundPatientID(NewActor(name).SignPub(), PatientSeed(name))
}
