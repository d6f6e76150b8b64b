package app_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestValidatorPossession: a proposal adding a validator carries the
// key's proof of possession, a signature by that key over this chain's id,
// the key and its change count; a change of an existing validator's power needs none, but
// one given must verify. CheckTx and FinalizeBlock answer alike.
func TestValidatorPossession(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	y, z := apptest.NewActor("validator-y"), apptest.NewActor("validator-z")
	v0, v3 := apptest.Validator(0), apptest.Validator(3)
	const what = "emrchaind show validator --possession"
	signedBy := func(signer *apptest.Actor, chainID string, key []byte) []byte {
		sig, err := signer.Sign.Sign(app.ValidatorPossessionSignBytes(chainID, key, 0))
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	cases := []ruleCase{
		{"addition with its possession", w.regA, apptest.AddValidator(y, 5), nil, nil},
		{"addition without a possession", w.regA, apptest.SetValidatorPower(y.SignPub(), 5), app.ErrInvalidMsg,
			[]string{app.ValidatorKeyText(y.SignPub()) + " is not a validator", "needs its proof of possession", what}},
		{"addition with another key's possession", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, z.Possession(apptest.ChainID)), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key " + app.ValidatorKeyText(y.SignPub()), what}},
		{"addition with another key's signature over this key", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, signedBy(z, apptest.ChainID, y.SignPub())), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key", what}},
		{"addition with its possession for another key", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, signedBy(y, apptest.ChainID, z.SignPub())), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key", what}},
		{"addition with its possession for another chain", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, y.Possession("emrchain-other")), app.ErrInvalidMsg,
			[]string{`for chain "` + apptest.ChainID + `" and change count 0`, "another chain's", what + " --changes 0"}},
		{"addition with its possession for another change count", w.regA, apptest.AddValidatorAt(y, 5, 2), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key " + app.ValidatorKeyText(y.SignPub()) + ` for chain "` + apptest.ChainID + `" and change count 0`, "made before the key's last change", what + " --changes 0"}},
		{"possession of 63 bytes", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, y.Possession(apptest.ChainID)[:63]), app.ErrInvalidMsg,
			[]string{"validator possession (an ed25519 signature) must be 64 bytes, got 63"}},
		{"possession of 65 bytes", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, append(y.Possession(apptest.ChainID), 0)), app.ErrInvalidMsg,
			[]string{"must be 64 bytes, got 65"}},
		{"raise an existing validator without a possession", w.regA, apptest.SetValidatorPower(v0.SignPub(), 11), nil, nil},
		{"remove an existing validator without a possession", w.regA, apptest.SetValidatorPower(v3.SignPub(), 0), nil, nil},
		{"raise an existing validator with its possession", w.regA, apptest.AddValidator(v0, 12), nil, nil},
		{"raise an existing validator with another key's possession", w.regA, apptest.SetValidatorPowerWith(v0.SignPub(), 12, y.Possession(apptest.ChainID)), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key " + app.ValidatorKeyText(v0.SignPub()),
				"or leave it out: " + app.ValidatorKeyText(v0.SignPub()) + " is a validator (power 10), and a change of a validator's power needs none"}},
		{"remove an existing validator with another chain's possession", w.regA, apptest.SetValidatorPowerWith(v3.SignPub(), 0, v3.Possession("emrchain-other")), app.ErrInvalidMsg,
			[]string{"another chain's"}},
	}
	for _, tc := range cases {
		tx := c.Tx(tc.signer, tc.msg)
		ruleCheck(t, tc.name+" (CheckTx)", c.App.CheckTx(tx, false), tc.want, tc.log...)
		ruleCheck(t, tc.name+" (FinalizeBlock)", c.Block(tx)[0], tc.want, tc.log...)
	}

	// The proposal keeps the possession, and once approved adds the key.
	p := ruleProposal(c, 1).Proposal
	if set := p.Change.GetSetValidatorPower(); !bytes.Equal(set.GetPubKey(), y.SignPub()) || !bytes.Equal(set.GetPossession(), y.Possession(apptest.ChainID)) {
		t.Fatalf("proposal 1 = %v, want y's addition with its possession", p.Change)
	}
	c.Must(w.regB, apptest.Approve(1))
	if res := c.Must(w.regR, apptest.Approve(1)); len(res.ValidatorUpdates) != 1 || !bytes.Equal(res.ValidatorUpdates[0].PubKey, y.SignPub()) {
		t.Fatalf("approving the addition: validator updates %v", res.ValidatorUpdates)
	}
}

// TestValidatorPossessionSignBytes: the sign bytes are fixed (a node and
// the chain must agree byte for byte) and bind the chain id, the key and
// the key's change count.
func TestValidatorPossessionSignBytes(t *testing.T) {
	key := apptest.Validator(0).SignPub()
	want := append([]byte("emrchain/v1/validator-possession\x00emrchain-test\x00"), key...)
	want = append(want, 0, 0, 0, 0, 0, 0, 0x01, 0x02)
	if got := app.ValidatorPossessionSignBytes(apptest.ChainID, key, 0x0102); !bytes.Equal(got, want) {
		t.Fatalf("sign bytes %q, want %q", got, want)
	}
	v := apptest.Validator(0)
	for _, tc := range []struct {
		name    string
		chainID string
		key     []byte
		changes uint64
		proof   []byte
		ok      bool
	}{
		{"its own", apptest.ChainID, key, 0, v.Possession(apptest.ChainID), true},
		{"its own at count 2", apptest.ChainID, key, 2, v.PossessionAt(apptest.ChainID, 2), true},
		{"another chain's", "emrchain-test2", key, 0, v.Possession(apptest.ChainID), false},
		{"another key", apptest.ChainID, apptest.Validator(1).SignPub(), 0, v.Possession(apptest.ChainID), false},
		{"an earlier count's", apptest.ChainID, key, 2, v.Possession(apptest.ChainID), false},
		{"a later count's", apptest.ChainID, key, 0, v.PossessionAt(apptest.ChainID, 2), false},
		{"empty", apptest.ChainID, key, 0, nil, false},
		{"short key", apptest.ChainID, key[:31], 0, v.Possession(apptest.ChainID), false},
	} {
		if got := app.VerifyValidatorPossession(tc.chainID, tc.key, tc.changes, tc.proof); got != tc.ok {
			t.Errorf("%s: verifies %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestPossessionReplayAfterRemoval: every proposal keeps its possession in
// state (the Proposal query answers it), and the one that added a key
// cannot add it again once it is removed (the operator re-running an old
// command, the key since replaced and wiped): the possession is for the
// key's change count, which every executed change moves on. A possession
// for the count now re-adds it; CheckTx and FinalizeBlock answer alike.
func TestPossessionReplayAfterRemoval(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	y := apptest.NewActor("validator-y")
	w.decide(apptest.AddValidator(y, 5))
	old := ruleProposal(c, ruleProposalsMade(c)).Proposal.Change.GetSetValidatorPower().GetPossession()
	if !bytes.Equal(old, y.Possession(apptest.ChainID)) {
		t.Fatalf("the addition keeps possession %x, want y's for count 0", old)
	}
	w.decide(apptest.SetValidatorPower(y.SignPub(), 0))
	if n := c.ValidatorChanges(y.SignPub()); n != 2 {
		t.Fatalf("y's change count after its addition and removal: %d, want 2", n)
	}
	const what = "emrchaind show validator --possession --changes 2"
	for _, tc := range []ruleCase{
		{"re-add with the first addition's possession", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, old), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key " + app.ValidatorKeyText(y.SignPub()) + ` for chain "` + apptest.ChainID + `" and change count 2`, what}},
		{"re-add without a possession", w.regA, apptest.SetValidatorPower(y.SignPub(), 5), app.ErrInvalidMsg,
			[]string{"needs its proof of possession for change count 2", what}},
		{"re-add with the possession for count 1", w.regA, apptest.AddValidatorAt(y, 5, 1), app.ErrInvalidMsg,
			[]string{"and change count 2", what}},
	} {
		tx := c.Tx(tc.signer, tc.msg)
		ruleCheck(t, tc.name+" (CheckTx)", c.App.CheckTx(tx, false), tc.want, tc.log...)
		ruleCheck(t, tc.name+" (FinalizeBlock)", c.Block(tx)[0], tc.want, tc.log...)
	}

	// With the possession for count 2, the key is added again; then that
	// one is stale in turn.
	w.decide(apptest.AddValidatorAt(y, 5, 2))
	if vs := ruleValidators(c); !slices.ContainsFunc(vs, func(v *emrv1.Validator) bool { return bytes.Equal(v.PubKey, y.SignPub()) && v.Power == 5 }) {
		t.Fatalf("validators after the re-addition: %v", vs)
	}
	w.decide(apptest.SetValidatorPower(y.SignPub(), 0))
	ruleCheck(t, "re-add with the second addition's possession", c.Exec(w.regA, apptest.AddValidatorAt(y, 5, 2)), app.ErrInvalidMsg, "and change count 4", "--changes 4")
	c.Must(w.regA, apptest.AddValidatorAt(y, 5, 4))
}
