package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/cometbft/cometbft/crypto/tmhash"
	"google.golang.org/protobuf/proto"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Sizes of the fixed-width byte fields.
const (
	AddressSize   = 20
	PubKeySize    = 32 // ed25519 and X25519 public keys
	SignatureSize = 64
	PatientIDSize = 32
	HashSize      = 32
)

// deterministic is the protobuf encoding used for every stored value and for
// the canonical-encoding check of transactions.
var deterministic = proto.MarshalOptions{Deterministic: true}

// AddressOf derives a member's 20-byte address from its ed25519 public key
// exactly as CometBFT does (first 20 bytes of SHA-256).
func AddressOf(pubKey []byte) []byte { return tmhash.SumTruncated(pubKey) }

// PatientIDSeedSize is the size of MsgEnrollPatient.id_seed.
const PatientIDSeedSize = 32

// boundPatientIDDomain separates BoundPatientID's hash input from every
// other hash of the chain.
const boundPatientIDDomain = "emrchain/v1/patient-id/bound\x00"

// BoundPatientID is the only id a key may enroll with a given seed:
// SHA-256("emrchain/v1/patient-id/bound" 0x00 || signPubKey || seed). A
// patient id seen in a pending EnrollPatient is thus useless to anyone
// else: the same seed under another key gives another id.
func BoundPatientID(signPubKey, seed []byte) []byte {
	h := sha256.New()
	h.Write([]byte(boundPatientIDDomain))
	h.Write(signPubKey)
	h.Write(seed)
	return h.Sum(nil)
}

// TxHash is the hash CometBFT indexes a transaction under.
func TxHash(tx []byte) []byte {
	sum := sha256.Sum256(tx)
	return sum[:]
}

// RecordSignBytes is what the signer of an AddRecord signs: a
// domain-separated encoding of (patient id, category, ciphertext hash) and
// the SHA-256 of the transaction body. The one signature thus authenticates
// the transaction (through the body hash) and is the record's uploader
// signature: the record keeps it with the body hash, so its provenance can be
// checked off-chain without the transaction (RecordSignBytesOf).
//
// It cannot be mistaken for a body: a body is signed as its canonical
// protobuf encoding, whose first byte is a tag of a TxBody field (1-5),
// never the domain's 'e' (0x65, field 12).
func RecordSignBytes(patientID []byte, category string, ciphertextSHA256, bodySHA256 []byte) []byte {
	const domain = "emrchain/v1/record-tx\x00"
	out := make([]byte, 0, len(domain)+len(patientID)+2+len(category)+len(ciphertextSHA256)+len(bodySHA256))
	out = append(out, domain...)
	out = append(out, patientID...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(category)))
	out = append(out, category...)
	out = append(out, ciphertextSHA256...)
	return append(out, bodySHA256...)
}

// RecordSignBytesOf is what a stored record's uploader signature signs.
func RecordSignBytesOf(r *emrv1.Record) []byte {
	return RecordSignBytes(r.PatientId, r.Category, r.CiphertextSha256, r.BodySha256)
}

// validatorPossessionDomain separates a validator's proof of possession
// from every other message its consensus key signs. CometBFT's votes and
// proposals sign a length-prefixed protobuf encoding of their fields 1 to
// 7, which cannot begin with this text ('e' read as a length, then 'm',
// the tag of a field 13); a transaction body begins with a tag of a TxBody
// field, and an AddRecord's sign bytes with "emrchain/v1/record-tx".
const validatorPossessionDomain = "emrchain/v1/validator-possession\x00"

// ValidatorPossessionSignBytes is what a validator's consensus key pubKey
// signs to prove that its operator holds it (SetValidatorPower.possession):
// "emrchain/v1/validator-possession" 0x00 || chainID || 0x00 || pubKey ||
// changes (8 bytes, big-endian), where changes is the key's change count
// when the proposal is made (SetValidatorPower.from_changes: how many
// executed proposals had changed its power; 0 for a key never a
// validator). The key and the count, fixed-size and last, make the
// encoding unambiguous. Binding the chain id keeps a possession made for
// one chain (a testnet, say) from adding the key to another; binding the
// key keeps a possession from vouching for any other key; binding the
// count keeps a possession from outliving the key's next change: every
// proposal keeps its possession in state, and without the count the one
// that first added a key would add it again after its removal (an old
// command re-run, the key since replaced and wiped), as power nobody
// holds.
func ValidatorPossessionSignBytes(chainID string, pubKey []byte, changes uint64) []byte {
	out := make([]byte, 0, len(validatorPossessionDomain)+len(chainID)+1+len(pubKey)+8)
	out = append(out, validatorPossessionDomain...)
	out = append(out, chainID...)
	out = append(out, 0)
	out = append(out, pubKey...)
	return binary.BigEndian.AppendUint64(out, changes)
}

// VerifyValidatorPossession reports whether possession is consensus key
// pubKey's proof of possession for chain chainID at change count changes:
// its ed25519 signature of ValidatorPossessionSignBytes, verified as
// CometBFT verifies signatures.
func VerifyValidatorPossession(chainID string, pubKey []byte, changes uint64, possession []byte) bool {
	if len(pubKey) != ed25519.PubKeySize || len(possession) != SignatureSize {
		return false
	}
	return ed25519.PubKey(pubKey).VerifySignature(ValidatorPossessionSignBytes(chainID, pubKey, changes), possession)
}

// SignBytes is what a transaction's signer signs: the body bytes, except for
// an AddRecord, whose signature is also the record's uploader signature
// (RecordSignBytes).
func SignBytes(body *emrv1.TxBody, bodyBytes []byte) []byte {
	return signBytes(body, bodyBytes, recordBodySum(body, bodyBytes))
}

// recordBodySum is the SHA-256 of an AddRecord's body bytes (what its
// signature and its record carry), nil for any other transaction.
func recordBodySum(body *emrv1.TxBody, bodyBytes []byte) []byte {
	if body.GetMsg().GetAddRecord() == nil {
		return nil
	}
	sum := sha256.Sum256(bodyBytes)
	return sum[:]
}

// signBytes is SignBytes given recordBodySum(body, bodyBytes).
func signBytes(body *emrv1.TxBody, bodyBytes, recordSum []byte) []byte {
	if recordSum == nil {
		return bodyBytes
	}
	m := body.Msg.GetAddRecord()
	return RecordSignBytes(m.PatientId, m.Category, m.CiphertextSha256, recordSum)
}

// DecodedTx is a transaction whose envelope and body parsed, canonically
// encoded and passed stateless validation. Its signature is not yet checked.
type DecodedTx struct {
	Hash      []byte
	Body      *emrv1.TxBody
	BodyBytes []byte
	Signature []byte
	Signer    []byte // address derived from Body.SignerPubKey
	// BodySHA256 is the SHA-256 of BodyBytes for an AddRecord (its
	// signature covers it and its record keeps it), nil otherwise: hashed
	// once at decoding, not at every execution.
	BodySHA256 []byte
}

// SignBytes is what the transaction's signature signs (SignBytes).
func (tx *DecodedTx) SignBytes() []byte { return signBytes(tx.Body, tx.BodyBytes, tx.BodySHA256) }

// DecodeTx parses a transaction and validates everything that needs no
// state. It never panics on any input; errors wrap ErrTxDecode or
// ErrInvalidMsg.
func DecodeTx(raw []byte) (*DecodedTx, error) {
	var tx emrv1.Tx
	if err := decodeCanonical(raw, &tx); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrTxDecode, err)
	}
	if len(tx.Signature) != SignatureSize {
		return nil, fmt.Errorf("%w: signature must be %d bytes, got %d", ErrTxDecode, SignatureSize, len(tx.Signature))
	}
	var body emrv1.TxBody
	if err := decodeCanonical(tx.BodyBytes, &body); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrTxDecode, err)
	}
	if body.ChainId == "" {
		return nil, fmt.Errorf("%w: empty chain id", ErrTxDecode)
	}
	if len(body.SignerPubKey) != PubKeySize {
		return nil, fmt.Errorf("%w: signer public key must be %d bytes, got %d", ErrTxDecode, PubKeySize, len(body.SignerPubKey))
	}
	if err := ValidateMsg(body.Msg); err != nil {
		return nil, err
	}
	return &DecodedTx{
		Hash:       TxHash(raw),
		Body:       &body,
		BodyBytes:  tx.BodyBytes,
		Signature:  tx.Signature,
		Signer:     AddressOf(body.SignerPubKey),
		BodySHA256: recordBodySum(&body, tx.BodyBytes),
	}, nil
}

// errNotCanonical: bytes that decode, but are not the deterministic
// encoding of what they decode to.
var errNotCanonical = errors.New("not canonically encoded (unknown fields or non-deterministic encoding)")

// decodeCanonical unmarshals raw into m and insists that raw is exactly the
// deterministic encoding of m: unknown fields (which this version would
// silently ignore) and alternative encodings are refused, so one signed body
// has one meaning and one transaction hash. Unknown fields are dropped while
// decoding, at any depth, so the re-encoding lacks them and differs from raw.
func decodeCanonical(raw []byte, m proto.Message) error {
	if err := discardUnknown.Unmarshal(raw, m); err != nil {
		return err
	}
	again, err := deterministic.Marshal(m)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, raw) {
		return errNotCanonical
	}
	return nil
}

// discardUnknown decodes without keeping the fields this version does not
// know (proto.Unmarshal keeps them and Marshal writes them back, so the
// round trip alone would not notice them).
var discardUnknown = proto.UnmarshalOptions{DiscardUnknown: true}

// EncodeTx builds a signed transaction. sign is called with the body's
// SignBytes.
func EncodeTx(body *emrv1.TxBody, sign func([]byte) ([]byte, error)) ([]byte, error) {
	bodyBytes, err := deterministic.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode tx body: %w", err)
	}
	sig, err := sign(SignBytes(body, bodyBytes))
	if err != nil {
		return nil, fmt.Errorf("sign tx body: %w", err)
	}
	return deterministic.Marshal(&emrv1.Tx{BodyBytes: bodyBytes, Signature: sig})
}

func marshal(m proto.Message) []byte {
	bz, err := deterministic.Marshal(m)
	if err != nil {
		// Marshalling a well-formed in-memory message cannot fail; if it
		// does, state would diverge silently: halt instead.
		panic(fmt.Sprintf("app: marshal %T: %v", m, err))
	}
	return bz
}
