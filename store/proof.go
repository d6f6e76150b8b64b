package store

import (
	"bytes"
	"errors"
	"fmt"

	cmtcrypto "github.com/cometbft/cometbft/api/cometbft/crypto/v1"
	"github.com/cometbft/cometbft/crypto/merkle"
	ics23 "github.com/cosmos/ics23/go"
)

// ProofOpIAVL is the ProofOp type of an ICS23 commitment proof over the
// single IAVL tree. The state has one tree, so one op of this type takes a
// value (or the absence of a key) straight to the AppHash.
const ProofOpIAVL = "ics23:iavl"

// CommitmentOp is the merkle.ProofOperator behind ProofOpIAVL: a key and an
// ICS23 existence or non-existence proof checked under ics23.IavlSpec. It is
// the same construction as the Cosmos SDK's CommitmentOp, restricted to IAVL
// and to single (non-batch, uncompressed) proofs.
type CommitmentOp struct {
	Key   []byte
	Proof *ics23.CommitmentProof
}

var _ merkle.ProofOperator = CommitmentOp{}

// GetKey returns the key the op proves; merkle.ProofOperators.Verify matches
// it against the last element of the key path.
func (op CommitmentOp) GetKey() []byte { return op.Key }

// Run computes the root committed to by the proof and checks it against the
// arguments: with one argument (the value) it verifies membership of
// (Key, value); with none it verifies that Key is absent. It returns the root
// as the single output, for ProofOperators.Verify to compare with the
// trusted AppHash.
func (op CommitmentOp) Run(args [][]byte) ([][]byte, error) {
	if op.Proof == nil {
		return nil, fmt.Errorf("%w: no commitment proof", ErrInvalidProof)
	}
	root, err := op.Proof.Calculate()
	if err != nil {
		return nil, fmt.Errorf("%w: calculate root: %v", ErrInvalidProof, err)
	}
	switch len(args) {
	case 0:
		if op.Proof.GetNonexist() == nil {
			return nil, fmt.Errorf("%w: absence needs a non-existence proof", ErrInvalidProof)
		}
		if !ics23.VerifyNonMembership(ics23.IavlSpec, root, op.Proof, op.Key) {
			return nil, fmt.Errorf("%w: does not prove absence of key %X", ErrInvalidProof, op.Key)
		}
	case 1:
		if len(args[0]) == 0 {
			return nil, fmt.Errorf("%w: empty value (use absence for a missing key)", ErrInvalidProof)
		}
		if op.Proof.GetExist() == nil {
			return nil, fmt.Errorf("%w: membership needs an existence proof", ErrInvalidProof)
		}
		if !ics23.VerifyMembership(ics23.IavlSpec, root, op.Proof, op.Key, args[0]) {
			return nil, fmt.Errorf("%w: does not prove key %X with value %X", ErrInvalidProof, op.Key, args[0])
		}
	default:
		return nil, fmt.Errorf("%w: want 0 or 1 arguments, got %d", ErrInvalidProof, len(args))
	}
	return [][]byte{root}, nil
}

// ProofOp encodes the op for transport in ResponseQuery.ProofOps.
func (op CommitmentOp) ProofOp() cmtcrypto.ProofOp {
	var data []byte
	if op.Proof != nil {
		// Marshal of a generated message cannot fail for a well-formed
		// value; if it ever did, an op without data is rejected by every
		// verifier, so nothing unproven can pass.
		data, _ = op.Proof.Marshal()
	}
	return cmtcrypto.ProofOp{Type: ProofOpIAVL, Key: op.Key, Data: data}
}

// CommitmentOpDecoder is the merkle.OpDecoder for ProofOpIAVL. It accepts only
// a single existence or non-existence proof whose embedded key equals the
// op's key; batch and compressed proofs are rejected.
func CommitmentOpDecoder(pop cmtcrypto.ProofOp) (merkle.ProofOperator, error) {
	if pop.Type != ProofOpIAVL {
		return nil, fmt.Errorf("%w: op type %q, want %q", ErrInvalidProof, pop.Type, ProofOpIAVL)
	}
	if len(pop.Key) == 0 {
		return nil, fmt.Errorf("%w: op has an empty key", ErrInvalidProof)
	}
	proof := &ics23.CommitmentProof{}
	if err := proof.Unmarshal(pop.Data); err != nil {
		return nil, fmt.Errorf("%w: decode commitment proof: %v", ErrInvalidProof, err)
	}
	var embedded []byte
	switch {
	case proof.GetExist() != nil:
		embedded = proof.GetExist().Key
	case proof.GetNonexist() != nil:
		embedded = proof.GetNonexist().Key
	default:
		return nil, fmt.Errorf("%w: want an existence or non-existence proof", ErrInvalidProof)
	}
	if !bytes.Equal(embedded, pop.Key) {
		return nil, fmt.Errorf("%w: proof is for key %X, op is for key %X", ErrInvalidProof, embedded, pop.Key)
	}
	return CommitmentOp{Key: pop.Key, Proof: proof}, nil
}

// ProofRuntime returns a new merkle.ProofRuntime that knows the ics23:iavl op
// (and nothing else). Callers may register further decoders on it.
func ProofRuntime() *merkle.ProofRuntime {
	prt := merkle.NewProofRuntime()
	prt.RegisterOpDecoder(ProofOpIAVL, CommitmentOpDecoder)
	return prt
}

// defaultRuntime is used by VerifyMembership and VerifyAbsence; a runtime is
// read-only after registration, so sharing it is safe.
var defaultRuntime = ProofRuntime()

// KeyPath returns the merkle key path for a state key: one hex-encoded
// element, so that binary keys survive the round trip.
func KeyPath(key []byte) string {
	return merkle.KeyPath{}.AppendKey(key, merkle.KeyEncodingHex).String()
}

// VerifyMembership checks that proof shows key holding value in the tree
// whose root hash is root (the AppHash of the header after the queried
// height). Every failure wraps ErrInvalidProof.
func VerifyMembership(root, key, value []byte, proof *cmtcrypto.ProofOps) error {
	if len(value) == 0 {
		return fmt.Errorf("%w: empty value", ErrInvalidProof)
	}
	if err := checkProofArgs(root, key, proof); err != nil {
		return err
	}
	if err := defaultRuntime.VerifyValue(proof, root, KeyPath(key), value); err != nil {
		return wrapInvalid(err)
	}
	return nil
}

// VerifyAbsence checks that proof shows key absent from the tree whose root
// hash is root. Every failure wraps ErrInvalidProof.
func VerifyAbsence(root, key []byte, proof *cmtcrypto.ProofOps) error {
	if err := checkProofArgs(root, key, proof); err != nil {
		return err
	}
	if err := defaultRuntime.VerifyAbsence(proof, root, KeyPath(key)); err != nil {
		return wrapInvalid(err)
	}
	return nil
}

// checkProofArgs rejects inputs the merkle runtime does not guard against
// (an empty op list would make it index an empty result).
func checkProofArgs(root, key []byte, proof *cmtcrypto.ProofOps) error {
	switch {
	case len(root) == 0:
		return fmt.Errorf("%w: empty root", ErrInvalidProof)
	case len(key) == 0:
		return fmt.Errorf("%w: empty key", ErrInvalidProof)
	case proof == nil || len(proof.Ops) == 0:
		return fmt.Errorf("%w: no proof ops", ErrInvalidProof)
	}
	return nil
}

func wrapInvalid(err error) error {
	if errors.Is(err, ErrInvalidProof) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrInvalidProof, err)
}
