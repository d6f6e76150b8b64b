package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	cmtcrypto "github.com/cometbft/cometbft/api/cometbft/crypto/v1"
	ics23 "github.com/cosmos/ics23/go"
)

// proofStore commits a few keys, binary ones included, and returns the
// store, the committed version and root.
func proofStore(t testing.TB) (*Store, int64, []byte, map[string]string) {
	t.Helper()
	s := memStore(t)
	model := map[string]string{
		"b":                    "bee",
		"d":                    "dee",
		"f/with/slashes":       "eff",
		"\x00\x01bin\xff":      "binary key",
		"m\x00":                "nul suffix",
		"patient/\x7f\x80\x81": "x",
	}
	for i := 0; i < 50; i++ {
		model[keyN(i*2)] = fmt.Sprint("value-", i)
	}
	for k, v := range model {
		mustSet(t, s.Working(), k, v)
	}
	root, version := mustCommit(t, s)
	return s, version, root, model
}

func TestProofMembershipAndAbsence(t *testing.T) {
	s, version, root, model := proofStore(t)
	for k, v := range model {
		val, proof, err := s.GetWithProof([]byte(k), version)
		if err != nil {
			t.Fatalf("GetWithProof(%q): %v", k, err)
		}
		if string(val) != v {
			t.Fatalf("GetWithProof(%q) value = %q, want %q", k, val, v)
		}
		if len(proof.Ops) != 1 || proof.Ops[0].Type != ProofOpIAVL || !bytes.Equal(proof.Ops[0].Key, []byte(k)) {
			t.Fatalf("proof ops for %q: %+v", k, proof.Ops)
		}
		if err := VerifyMembership(root, []byte(k), val, proof); err != nil {
			t.Fatalf("VerifyMembership(%q): %v", k, err)
		}
		// a membership proof never proves absence
		if err := VerifyAbsence(root, []byte(k), proof); !errors.Is(err, ErrInvalidProof) {
			t.Fatalf("VerifyAbsence with membership proof of %q = %v", k, err)
		}
		// the runtime path used by clients works too
		if err := ProofRuntime().VerifyValue(proof, root, KeyPath([]byte(k)), val); err != nil {
			t.Fatalf("ProofRuntime().VerifyValue(%q): %v", k, err)
		}
	}
	// absent keys: before the first key, between keys, after the last
	for _, k := range []string{"\x00", "a", "c", keyN(1), keyN(51), "m", "zzz", "\xff\xff"} {
		val, proof, err := s.GetWithProof([]byte(k), version)
		if err != nil {
			t.Fatalf("GetWithProof(absent %q): %v", k, err)
		}
		if val != nil {
			t.Fatalf("absent %q returned value %q", k, val)
		}
		if err := VerifyAbsence(root, []byte(k), proof); err != nil {
			t.Fatalf("VerifyAbsence(%q): %v", k, err)
		}
		if err := VerifyMembership(root, []byte(k), []byte("anything"), proof); !errors.Is(err, ErrInvalidProof) {
			t.Fatalf("VerifyMembership with absence proof of %q = %v", k, err)
		}
	}
}

func TestProofRejections(t *testing.T) {
	s, version, root, _ := proofStore(t)
	key := []byte("d")
	val, proof, err := s.GetWithProof(key, version)
	if err != nil {
		t.Fatal(err)
	}
	_, absent, err := s.GetWithProof([]byte("c"), version)
	if err != nil {
		t.Fatal(err)
	}

	expectInvalid := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, ErrInvalidProof) {
			t.Errorf("%s: err = %v, want ErrInvalidProof", name, err)
		}
	}
	expectInvalid("changed value", VerifyMembership(root, key, []byte("dee!"), proof))
	expectInvalid("empty value", VerifyMembership(root, key, nil, proof))
	expectInvalid("other key", VerifyMembership(root, []byte("b"), val, proof))
	expectInvalid("other root", VerifyMembership(bytes.Repeat([]byte{1}, 32), key, val, proof))
	expectInvalid("nil root", VerifyMembership(nil, key, val, proof))
	expectInvalid("nil proof", VerifyMembership(root, key, val, nil))
	expectInvalid("no ops", VerifyMembership(root, key, val, &cmtcrypto.ProofOps{}))
	expectInvalid("no ops absence", VerifyAbsence(root, []byte("c"), &cmtcrypto.ProofOps{}))
	expectInvalid("absence, other key", VerifyAbsence(root, []byte("e"), absent))
	expectInvalid("absence, other root", VerifyAbsence(bytes.Repeat([]byte{1}, 32), []byte("c"), absent))
	expectInvalid("absence of present key", VerifyAbsence(root, key, absent))

	twice := &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{proof.Ops[0], proof.Ops[0]}}
	expectInvalid("op repeated", VerifyMembership(root, key, val, twice))

	wrongType := &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{{Type: "ics23:simple", Key: key, Data: proof.Ops[0].Data}}}
	expectInvalid("wrong op type", VerifyMembership(root, key, val, wrongType))

	// the op key and the key inside the ICS23 proof must agree
	swapped := &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{{Type: ProofOpIAVL, Key: []byte("b"), Data: proof.Ops[0].Data}}}
	expectInvalid("op key swapped", VerifyMembership(root, []byte("b"), []byte("bee"), swapped))
}

// TestProofOtherVersion: a proof made at one version does not verify against
// the root of another, even for an unchanged key.
func TestProofOtherVersion(t *testing.T) {
	s := memStore(t)
	mustSet(t, s.Working(), "stable", "same")
	mustSet(t, s.Working(), "moving", "1")
	root1, v1 := mustCommit(t, s)
	mustSet(t, s.Working(), "moving", "2")
	root2, v2 := mustCommit(t, s)

	for _, key := range []string{"stable", "moving"} {
		val1, p1, err := s.GetWithProof([]byte(key), v1)
		if err != nil {
			t.Fatal(err)
		}
		val2, p2, err := s.GetWithProof([]byte(key), v2)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyMembership(root1, []byte(key), val1, p1); err != nil {
			t.Fatalf("%s at v1: %v", key, err)
		}
		if err := VerifyMembership(root2, []byte(key), val2, p2); err != nil {
			t.Fatalf("%s at v2: %v", key, err)
		}
		if err := VerifyMembership(root2, []byte(key), val1, p1); !errors.Is(err, ErrInvalidProof) {
			t.Fatalf("%s: v1 proof against v2 root = %v, want ErrInvalidProof", key, err)
		}
		if err := VerifyMembership(root1, []byte(key), val2, p2); !errors.Is(err, ErrInvalidProof) {
			t.Fatalf("%s: v2 proof against v1 root = %v, want ErrInvalidProof", key, err)
		}
	}
}

// TestProofTamperedBytes flips every byte of the encoded proof, one at a
// time, and the key of the op: nothing may still verify.
func TestProofTamperedBytes(t *testing.T) {
	s, version, root, _ := proofStore(t)
	for _, tc := range []struct {
		key    string
		absent bool
	}{{"d", false}, {"\x00\x01bin\xff", false}, {"c", true}} {
		val, proof, err := s.GetWithProof([]byte(tc.key), version)
		if err != nil {
			t.Fatal(err)
		}
		verify := func(p *cmtcrypto.ProofOps) error {
			if tc.absent {
				return VerifyAbsence(root, []byte(tc.key), p)
			}
			return VerifyMembership(root, []byte(tc.key), val, p)
		}
		if err := verify(proof); err != nil {
			t.Fatalf("%q: untampered proof: %v", tc.key, err)
		}
		data := proof.Ops[0].Data
		for i := range data {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				bad := bytes.Clone(data)
				bad[i] ^= mask
				p := &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{{Type: ProofOpIAVL, Key: []byte(tc.key), Data: bad}}}
				if err := verify(p); !errors.Is(err, ErrInvalidProof) {
					t.Fatalf("%q: byte %d ^ %#x still verifies (err %v)", tc.key, i, mask, err)
				}
			}
		}
		for _, cut := range []int{0, 1, len(data) / 2, len(data) - 1} {
			p := &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{{Type: ProofOpIAVL, Key: []byte(tc.key), Data: data[:cut]}}}
			if err := verify(p); !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("%q: truncated to %d still verifies (err %v)", tc.key, cut, err)
			}
		}
	}
}

func TestProofEdgeCases(t *testing.T) {
	s := memStore(t)
	if _, _, err := s.GetWithProof([]byte("a"), 0); !isNotFound(err) {
		t.Fatalf("proof before first commit = %v", err)
	}
	mustSet(t, s.Working(), "a", "1")
	mustCommit(t, s)
	mustDelete(t, s.Working(), "a")
	_, v := mustCommit(t, s) // an empty tree
	if _, _, err := s.GetWithProof([]byte("a"), v); !errors.Is(err, ErrEmptyTree) {
		t.Fatalf("proof in an empty tree = %v, want ErrEmptyTree", err)
	}
	if _, _, err := s.GetWithProof(nil, 1); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("proof of empty key = %v, want ErrEmptyKey", err)
	}
	// a single-key tree: absence on either side
	mustSet(t, s.Working(), "m", "1")
	root, v := mustCommit(t, s)
	for _, k := range []string{"a", "z"} {
		_, p, err := s.GetWithProof([]byte(k), v)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyAbsence(root, []byte(k), p); err != nil {
			t.Fatalf("absence of %q in single-key tree: %v", k, err)
		}
	}
}

func TestCommitmentOpRoundTrip(t *testing.T) {
	s, version, root, _ := proofStore(t)
	_, proof, err := s.GetWithProof([]byte("b"), version)
	if err != nil {
		t.Fatal(err)
	}
	op, err := CommitmentOpDecoder(proof.Ops[0])
	if err != nil {
		t.Fatal(err)
	}
	again := op.ProofOp()
	if again.Type != ProofOpIAVL || !bytes.Equal(again.Key, proof.Ops[0].Key) || !bytes.Equal(again.Data, proof.Ops[0].Data) {
		t.Fatal("decode/encode round trip changed the op")
	}
	out, err := op.Run([][]byte{[]byte("bee")})
	if err != nil || len(out) != 1 || !bytes.Equal(out[0], root) {
		t.Fatalf("Run = %X, %v; want root %X", out, err, root)
	}
	if _, err := op.Run([][]byte{[]byte("a"), []byte("b")}); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("Run with 2 args = %v", err)
	}
	// batch proofs are not accepted
	batch := &ics23.CommitmentProof{Proof: &ics23.CommitmentProof_Batch{Batch: &ics23.BatchProof{}}}
	bz, _ := batch.Marshal()
	if _, err := CommitmentOpDecoder(cmtcrypto.ProofOp{Type: ProofOpIAVL, Key: []byte("b"), Data: bz}); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("batch proof decoded: %v", err)
	}
}

// FuzzProofOpDecode feeds arbitrary ops to the ics23:iavl decoder and runs
// what decodes. It must never panic, must round-trip what it accepts, and
// anything that "verifies" must verify through the public functions
// against the root it produced.
func FuzzProofOpDecode(f *testing.F) {
	f.Add(ProofOpIAVL, []byte("k"), []byte{}, []byte("v"))
	f.Add(ProofOpIAVL, []byte("k"), []byte{0x0a, 0x00}, []byte{})
	f.Add("ics23:simple", []byte("k"), []byte{0x12, 0x02, 0x0a, 0x00}, []byte("v"))
	f.Fuzz(func(t *testing.T, typ string, key, data, value []byte) {
		pop := cmtcrypto.ProofOp{Type: typ, Key: key, Data: data}
		op, err := CommitmentOpDecoder(pop)
		if err != nil {
			if !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("decode error does not wrap ErrInvalidProof: %v", err)
			}
			return
		}
		if !bytes.Equal(op.GetKey(), key) {
			t.Fatalf("decoded key %X, want %X", op.GetKey(), key)
		}
		enc := op.ProofOp()
		if _, err := CommitmentOpDecoder(enc); err != nil {
			t.Fatalf("re-decoding an accepted op failed: %v", err)
		}
		ops := &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{enc}}
		if out, err := op.Run(nil); err == nil {
			if len(out) != 1 {
				t.Fatalf("Run(nil) returned %d roots", len(out))
			}
			if err := VerifyAbsence(out[0], key, ops); err != nil {
				t.Fatalf("Run(nil) accepted but VerifyAbsence rejects: %v", err)
			}
		} else if !errors.Is(err, ErrInvalidProof) {
			t.Fatalf("Run(nil) error does not wrap ErrInvalidProof: %v", err)
		}
		if out, err := op.Run([][]byte{value}); err == nil {
			if len(out) != 1 {
				t.Fatalf("Run(value) returned %d roots", len(out))
			}
			if err := VerifyMembership(out[0], key, value, ops); err != nil {
				t.Fatalf("Run(value) accepted but VerifyMembership rejects: %v", err)
			}
		} else if !errors.Is(err, ErrInvalidProof) {
			t.Fatalf("Run(value) error does not wrap ErrInvalidProof: %v", err)
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seed corpus of
// FuzzProofOpDecode from real proofs:
//
//	EMRCHAIN_WRITE_FUZZ_SEEDS=1 go test ./store -run TestWriteFuzzSeeds
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("EMRCHAIN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set EMRCHAIN_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz/FuzzProofOpDecode")
	}
	s, version, _, model := proofStore(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzProofOpDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, key, data, value []byte) {
		body := "go test fuzz v1\n" +
			"string(" + strconv.Quote(typ) + ")\n" +
			"[]byte(" + strconv.Quote(string(key)) + ")\n" +
			"[]byte(" + strconv.Quote(string(data)) + ")\n" +
			"[]byte(" + strconv.Quote(string(value)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range []string{"d", "\x00\x01bin\xff", keyN(0), keyN(98)} {
		_, p, err := s.GetWithProof([]byte(k), version)
		if err != nil {
			t.Fatal(err)
		}
		write(fmt.Sprintf("membership-%d", i), ProofOpIAVL, []byte(k), p.Ops[0].Data, []byte(model[k]))
		// the same proof with a wrong value
		write(fmt.Sprintf("membership-wrong-value-%d", i), ProofOpIAVL, []byte(k), p.Ops[0].Data, []byte("wrong"))
	}
	for i, k := range []string{"\x00", "c", "zzz"} {
		_, p, err := s.GetWithProof([]byte(k), version)
		if err != nil {
			t.Fatal(err)
		}
		write(fmt.Sprintf("absence-%d", i), ProofOpIAVL, []byte(k), p.Ops[0].Data, nil)
	}
	_, p, _ := s.GetWithProof([]byte("d"), version)
	bad := bytes.Clone(p.Ops[0].Data)
	bad[len(bad)/2] ^= 0xff
	write("membership-flipped", ProofOpIAVL, []byte("d"), bad, []byte("dee"))
	write("membership-truncated", ProofOpIAVL, []byte("d"), p.Ops[0].Data[:len(p.Ops[0].Data)/3], []byte("dee"))
	write("key-mismatch", ProofOpIAVL, []byte("b"), p.Ops[0].Data, []byte("dee"))
	write("wrong-type", "ics23:simple", []byte("d"), p.Ops[0].Data, []byte("dee"))
	write("garbage", ProofOpIAVL, []byte("k"), []byte("\xff\xff\xff\xff\x0f"), []byte("v"))
}
