package app_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// One test per rule of every message: each asserts the exact result code
// and, where a user reads it, what the log says. Who may act on a consent
// at which time (role × right × category × time × revoked × suspended) is
// authz_matrix_test.go's subject; here each message's own rules are.
//
// Most rejections are evaluated with Simulate at the next block's time, so
// a table of cases runs against one committed state without changing it.

const (
	rRead  = emrv1.Right_RIGHT_READ
	rWrite = emrv1.Right_RIGHT_WRITE
	rShare = emrv1.Right_RIGHT_SHARE

	ruleLab     = "lab-results"
	ruleImaging = "imaging"
	ruleStudy   = "rules-study"
)

// ruleWorld is the consortium with one member of each kind and one patient.
type ruleWorld struct {
	c                *apptest.Chain
	regA, regB, regR *apptest.Actor // genesis registrars
	doc              *apptest.Actor // clinician of hospital-a
	doc2             *apptest.Actor // clinician of hospital-b
	sci              *apptest.Actor // researcher of research-institute
	aud              *apptest.Actor // auditor of hospital-a
	pat              *apptest.Actor // patient owning pid
	pid              []byte
	year             time.Time // a not_after far in the future
}

func newRuleWorld(t *testing.T, opts apptest.Options) *ruleWorld {
	t.Helper()
	w := &ruleWorld{
		c:    apptest.New(t, opts),
		regA: apptest.Registrar(apptest.HospitalA),
		regB: apptest.Registrar(apptest.HospitalB),
		regR: apptest.Registrar(apptest.Research),
		doc:  apptest.NewActor("rules-doc-a"),
		doc2: apptest.NewActor("rules-doc-b"),
		sci:  apptest.NewActor("rules-researcher"),
		aud:  apptest.NewActor("rules-auditor-a"),
		pat:  apptest.NewActor("rules-patient"),
		pid:  apptest.PatientID("rules-patient"),
	}
	var txs [][]byte
	txs = append(txs, ruleSigned(w.c, w.regA,
		apptest.RegisterMember(w.doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA),
		apptest.RegisterMember(w.aud, emrv1.Role_ROLE_AUDITOR, apptest.HospitalA))...)
	txs = append(txs, ruleSigned(w.c, w.regB, apptest.RegisterMember(w.doc2, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB))...)
	txs = append(txs, ruleSigned(w.c, w.regR, apptest.RegisterMember(w.sci, emrv1.Role_ROLE_RESEARCHER, apptest.Research))...)
	txs = append(txs, ruleSigned(w.c, w.pat, apptest.Enroll(w.pat))...)
	ruleAllOK(t, w.c.Block(txs...))
	w.year = w.c.Now.Add(365 * 24 * time.Hour)
	return w
}

// member registers a new actor of role in org (by org's genesis registrar).
func (w *ruleWorld) member(name string, role emrv1.Role, org string) *apptest.Actor {
	a := apptest.NewActor(name)
	w.c.Must(apptest.Registrar(org), apptest.RegisterMember(a, role, org))
	return a
}

// patient enrolls a new patient.
func (w *ruleWorld) patient(name string) (*apptest.Actor, []byte) {
	a, id := apptest.NewActor(name), apptest.PatientID(name)
	w.c.Must(a, apptest.Enroll(a))
	return a, id
}

// records has w.pat add one record per category, in one block.
func (w *ruleWorld) records(categories ...string) {
	msgs := make([]*emrv1.Msg, len(categories))
	for i, cat := range categories {
		msgs[i] = apptest.AddRecord(w.pid, cat, fmt.Sprintf("rules-rec-%d", i))
	}
	ruleAllOK(w.c.TB, w.c.Block(ruleSigned(w.c, w.pat, msgs...)...))
}

// study registers a study of the research institute led by w.sci.
func (w *ruleWorld) study(id string) {
	w.c.Must(w.regR, apptest.RegisterStudy(id, w.sci))
}

// ruleSigned signs msgs by a with consecutive sequences from its committed one.
func ruleSigned(c *apptest.Chain, a *apptest.Actor, msgs ...*emrv1.Msg) [][]byte {
	seq := c.Seq(a.Address)
	txs := make([][]byte, len(msgs))
	for i, m := range msgs {
		txs[i] = a.Tx(apptest.ChainID, seq+uint64(i), m)
	}
	return txs
}

// ruleTxSignedWith is a's transaction of msg at sequence seq whose signature
// is sign(body bytes) instead of a's signature over app.SignBytes.
func ruleTxSignedWith(t testing.TB, a *apptest.Actor, seq uint64, msg *emrv1.Msg, sign func(bodyBytes []byte) []byte) []byte {
	t.Helper()
	body := ruleMarshal(t, &emrv1.TxBody{ChainId: apptest.ChainID, SignerPubKey: a.SignPub(), Sequence: seq, Msg: msg})
	return ruleMarshal(t, &emrv1.Tx{BodyBytes: body, Signature: sign(body)})
}

func ruleSign(a *apptest.Actor, msg []byte) []byte {
	sig, err := a.Sign.Sign(msg)
	if err != nil {
		panic(err)
	}
	return sig
}

func ruleAllOK(t testing.TB, results []app.Result) {
	t.Helper()
	for i, r := range results {
		if !r.OK() {
			t.Fatalf("tx %d: code %d: %s", i, r.Code, r.Log)
		}
	}
}

// ruleCheck reports unless res has want's code (nil: success) and a log
// containing every part.
func ruleCheck(t testing.TB, what string, res app.Result, want *app.CodedError, logParts ...string) {
	t.Helper()
	var code uint32
	if want != nil {
		code = want.Code()
	}
	if res.Code != code {
		t.Errorf("%s: code %d (%s), want %d (%v)", what, res.Code, res.Log, code, want)
		return
	}
	for _, part := range logParts {
		if !strings.Contains(res.Log, part) {
			t.Errorf("%s: log %q does not say %q", what, res.Log, part)
		}
	}
}

// ruleCase is one message evaluated with Simulate.
type ruleCase struct {
	name   string
	signer *apptest.Actor
	msg    *emrv1.Msg
	want   *app.CodedError // nil: success
	log    []string
}

func ruleRun(t *testing.T, c *apptest.Chain, at time.Time, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		ruleCheck(t, tc.name, c.Simulate(tc.signer, at, tc.msg), tc.want, tc.log...)
	}
}

func ruleQueryCode(c *apptest.Chain, method string, req, resp proto.Message) uint32 {
	return app.CodeOf(c.TryQuery(method, req, resp))
}

func rulePatient(c *apptest.Chain, id []byte) *emrv1.Patient {
	var resp emrv1.QueryPatientResponse
	c.Query("Patient", &emrv1.QueryPatientRequest{PatientId: hexOf(id)}, &resp)
	return resp.Patient
}

func ruleMember(c *apptest.Chain, addr []byte) *emrv1.Member {
	var resp emrv1.QueryMemberResponse
	c.Query("Member", &emrv1.QueryMemberRequest{Address: hexOf(addr)}, &resp)
	return resp.Member
}

func rulePermissions(c *apptest.Chain, id []byte) []*emrv1.Permission {
	var resp emrv1.QueryPermissionsResponse
	c.Query("Permissions", &emrv1.QueryPermissionsRequest{PatientId: hexOf(id)}, &resp)
	return resp.Permissions
}

// rulePermission is the patient's permission to grantee (nil if none), as
// the Permissions list has it; the Permission query must give the same
// (NOT_FOUND for none).
func rulePermission(c *apptest.Chain, id []byte, grantee *apptest.Actor) *emrv1.Permission {
	c.TB.Helper()
	var listed *emrv1.Permission
	for _, p := range rulePermissions(c, id) {
		if string(p.Grantee) == string(grantee.Address) {
			listed = p
		}
	}
	var resp emrv1.QueryPermissionResponse
	err := c.TryQuery("Permission", &emrv1.QueryPermissionRequest{PatientId: hexOf(id), Grantee: hexOf(grantee.Address)}, &resp)
	switch {
	case listed == nil && app.CodeOf(err) == app.ErrNotFound.Code():
	case err != nil:
		c.TB.Fatalf("Permission of %x for %s: %v (listed: %v)", id, grantee.Name, err, listed)
	case !proto.Equal(resp.Permission, listed):
		c.TB.Fatalf("Permission of %x for %s: %v, but Permissions lists %v", id, grantee.Name, resp.Permission, listed)
	}
	return listed
}

func ruleRecord(c *apptest.Chain, id []byte, seq uint64) *emrv1.Record {
	var resp emrv1.QueryRecordResponse
	c.Query("Record", &emrv1.QueryRecordRequest{PatientId: hexOf(id), Sequence: seq}, &resp)
	return resp.Record
}

func ruleEvents(c *apptest.Chain, id []byte, page *emrv1.PageRequest) *emrv1.QueryAccessEventsResponse {
	var resp emrv1.QueryAccessEventsResponse
	c.Query("AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: hexOf(id), Page: page}, &resp)
	return &resp
}

func ruleRecordSeqs(recs []*emrv1.Record) []uint64 {
	out := []uint64{}
	for _, r := range recs {
		out = append(out, r.Sequence)
	}
	return out
}

func ruleEventSeqs(evs []*emrv1.AccessEvent) []uint64 {
	out := []uint64{}
	for _, e := range evs {
		out = append(out, e.Sequence)
	}
	return out
}

func ruleRFC3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ruleAddr is how logs print an address.
func ruleAddr(a *apptest.Actor) string { return fmt.Sprintf("%X", a.Address) }

// --- transaction encoding helpers ---

var ruleDeterministic = proto.MarshalOptions{Deterministic: true}

func ruleMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	bz, err := ruleDeterministic.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	return bz
}

// ruleEnvelope signs body bytes (whatever they are) by a into a canonical Tx.
func ruleEnvelope(t testing.TB, a *apptest.Actor, body []byte) []byte {
	t.Helper()
	return ruleMarshal(t, &emrv1.Tx{BodyBytes: body, Signature: ruleSign(a, body)})
}

func ruleOpen(t testing.TB, raw []byte) *emrv1.Tx {
	t.Helper()
	var tx emrv1.Tx
	if err := proto.Unmarshal(raw, &tx); err != nil {
		t.Fatalf("open tx: %v", err)
	}
	return &tx
}

func ruleSimulateRaw(t testing.TB, c *apptest.Chain, raw []byte) app.Result {
	t.Helper()
	res, err := c.App.Simulate(c.Now, raw)
	if err != nil {
		t.Fatalf("Simulate: %v", err)
	}
	return res
}

// ruleUnknownField is field 15 (unknown everywhere), varint 1.
func ruleUnknownField() []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, 15, protowire.VarintType), 1)
}

// ======================= transaction level =======================

func TestTxBadSignature(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	newbie := apptest.NewActor("rules-newbie")
	good := c.Tx(w.regA, apptest.RegisterMember(newbie, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	env := ruleOpen(t, good)
	before := c.Seq(w.regA.Address)

	withSig := func(mutate func(sig []byte) []byte) []byte {
		sig := mutate(slices.Clone(env.Signature))
		return ruleMarshal(t, &emrv1.Tx{BodyBytes: env.BodyBytes, Signature: sig})
	}
	// A body byte: the first character of the organization's id. The body
	// stays decodable and canonical; only the signature is wrong. (A
	// flipped chain id is refused as another chain's, unverified:
	// TestWrongChainIsNotVerified.)
	body := slices.Clone(env.BodyBytes)
	i := strings.Index(string(body), apptest.HospitalA)
	if i < 0 {
		t.Fatal("the organization's id not found in body")
	}
	body[i] ^= 0x01
	otherSig, err := w.regB.Sign.Sign(env.BodyBytes)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		raw  []byte
	}{
		{"signature first byte flipped", withSig(func(s []byte) []byte { s[0] ^= 0x01; return s })},
		{"signature last byte flipped", withSig(func(s []byte) []byte { s[len(s)-1] ^= 0x01; return s })},
		{"signature middle byte flipped", withSig(func(s []byte) []byte { s[40] ^= 0x80; return s })},
		{"body byte flipped", ruleMarshal(t, &emrv1.Tx{BodyBytes: body, Signature: env.Signature})},
		{"signed by another key", ruleMarshal(t, &emrv1.Tx{BodyBytes: env.BodyBytes, Signature: otherSig})},
	}
	for _, tc := range cases {
		res := c.Block(tc.raw)[0]
		ruleCheck(t, tc.name, res, app.ErrBadSignature, "not signed by signer "+ruleAddr(w.regA))
	}
	// Batch verification path: a block with a bad and a good signature.
	results := c.Block(cases[0].raw, good)
	ruleCheck(t, "bad signature beside a good one", results[0], app.ErrBadSignature)
	ruleCheck(t, "good signature beside a bad one", results[1], nil)
	if got := c.Seq(w.regA.Address); got != before+1 {
		t.Fatalf("registrar sequence %d, want %d (only the good tx counts)", got, before+1)
	}
}

func TestTxWrongChain(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	newbie := apptest.NewActor("rules-newbie")
	raw := w.regA.Tx("other-chain", c.Seq(w.regA.Address), apptest.RegisterMember(newbie, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	before := c.Seq(w.regA.Address)
	ruleCheck(t, "wrong chain", c.Block(raw)[0], app.ErrWrongChain, `"other-chain"`, `"emrchain-test"`)
	if got := c.Seq(w.regA.Address); got != before {
		t.Fatalf("sequence moved to %d", got)
	}
	if code := ruleQueryCode(c, "Member", &emrv1.QueryMemberRequest{Address: hexOf(newbie.Address)}, &emrv1.QueryMemberResponse{}); code != app.ErrNotFound.Code() {
		t.Fatalf("member registered by a wrong-chain tx (query code %d)", code)
	}
}

// TestTxTimeoutHeight: a transaction is refused (ErrTxExpired) in every
// block past its timeout height, by CheckTx, recheck and FinalizeBlock
// alike, and changes nothing there; in the block at its timeout height,
// or with none (0), it executes.
func TestTxTimeoutHeight(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	reg := w.regA
	msg := func(name string) *emrv1.Msg {
		return apptest.RegisterMember(apptest.NewActor(name), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	}
	next := uint64(c.Height() + 1) // the height of the next block
	s := c.Seq(reg.Address)

	expired := reg.TxUntil(apptest.ChainID, s, next-1, msg("rules-t1"))
	ruleCheck(t, "CheckTx past the timeout", c.App.CheckTx(expired, false), app.ErrTxExpired,
		fmt.Sprintf("block %d is past the transaction's timeout height %d", next, next-1))
	ruleCheck(t, "block past the timeout", c.Block(expired)[0], app.ErrTxExpired)
	if got := c.Seq(reg.Address); got != s {
		t.Fatalf("an expired transaction moved the sequence to %d", got)
	}

	next = uint64(c.Height() + 1)
	atLimit := reg.TxUntil(apptest.ChainID, s, next, msg("rules-t2"))
	ruleCheck(t, "CheckTx at the timeout", c.App.CheckTx(atLimit, false), nil)
	c.Block() // the mempool's tx waited a block: recheck now refuses it
	ruleCheck(t, "recheck a block past the timeout", c.App.CheckTx(atLimit, true), app.ErrTxExpired)

	next = uint64(c.Height() + 1)
	ruleCheck(t, "block at the timeout", c.Block(reg.TxUntil(apptest.ChainID, s, next, msg("rules-t3")))[0], nil)
	ruleCheck(t, "no timeout", c.Block(reg.TxUntil(apptest.ChainID, s+1, 0, msg("rules-t4")))[0], nil)
}

func TestTxReplayAndSequence(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	reg := w.regA
	msg := func(name string) *emrv1.Msg {
		return apptest.RegisterMember(apptest.NewActor(name), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	}
	s := c.Seq(reg.Address)

	// Replay in the next block.
	tx := reg.Tx(apptest.ChainID, s, msg("rules-r1"))
	ruleCheck(t, "first submission", c.Block(tx)[0], nil)
	ruleCheck(t, "replay in the next block", c.Block(tx)[0], app.ErrBadSequence,
		fmt.Sprintf("must use sequence %d, the transaction has %d", s+1, s))

	// Replay in the same block.
	tx2 := reg.Tx(apptest.ChainID, s+1, msg("rules-r2"))
	results := c.Block(tx2, tx2)
	ruleCheck(t, "first in block", results[0], nil)
	ruleCheck(t, "replay in the same block", results[1], app.ErrBadSequence)

	// A future sequence is refused, and does not consume anything: once
	// its turn comes, the very same tx is accepted.
	future := reg.Tx(apptest.ChainID, s+3, msg("rules-r4"))
	ruleCheck(t, "future sequence", c.Block(future)[0], app.ErrBadSequence,
		fmt.Sprintf("must use sequence %d, the transaction has %d", s+2, s+3))
	if got := c.Seq(reg.Address); got != s+2 {
		t.Fatalf("sequence %d after a refused future tx, want %d", got, s+2)
	}
	ruleCheck(t, "the sequence in turn", c.Block(reg.Tx(apptest.ChainID, s+2, msg("rules-r3")))[0], nil)
	ruleCheck(t, "the future tx in its turn", c.Block(future)[0], nil)
	if got := c.Seq(reg.Address); got != s+4 {
		t.Fatalf("sequence %d, want %d", got, s+4)
	}
}

func TestTxTooLarge(t *testing.T) {
	g := apptest.Consortium()
	g.Params.MaxTxBytes = 1024
	c := apptest.New(t, apptest.Options{Genesis: g})
	reg := apptest.Registrar(apptest.HospitalA)

	// A well-formed, correctly signed tx above the limit.
	m := apptest.Grant(apptest.PatientID("p"), reg, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: c.Now.Add(time.Hour)})
	m.GetGrant().WrappedKek = make([]byte, 1500)
	raw := c.Tx(reg, m)
	if len(raw) <= 1024 {
		t.Fatalf("test tx is only %d bytes", len(raw))
	}
	ruleCheck(t, "signed tx above max_tx_bytes", c.Block(raw)[0], app.ErrTxTooLarge,
		fmt.Sprintf("%d bytes, the limit is 1024", len(raw)))

	// The limit is inclusive: exactly max_tx_bytes passes the size check
	// (and then fails to decode); one more byte does not.
	junk := func(n int) []byte { return slices.Repeat([]byte{0xff}, n) }
	ruleCheck(t, "exactly max_tx_bytes", c.Block(junk(1024))[0], app.ErrTxDecode)
	ruleCheck(t, "max_tx_bytes+1", c.Block(junk(1025))[0], app.ErrTxTooLarge, "1025 bytes, the limit is 1024")
}

func TestTxUnknownSigner(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	stranger := apptest.NewActor("rules-stranger")
	for _, tc := range []struct {
		name string
		msg  *emrv1.Msg
	}{
		{"register member", apptest.RegisterMember(apptest.NewActor("rules-x"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)},
		{"grant", apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rWrite}, NotAfter: w.year})},
		{"add record", apptest.AddRecord(w.pid, ruleLab, "x")},
		{"record access", apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1)},
	} {
		ruleCheck(t, tc.name, c.Exec(stranger, tc.msg), app.ErrUnknownSigner,
			ruleAddr(stranger)+" is not a member of the consortium")
	}
	if got := c.Seq(stranger.Address); got != 0 {
		t.Fatalf("stranger's sequence %d, want 0", got)
	}
}

func TestTxDecodeGarbage(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	reg := w.regA
	good := c.Tx(reg, apptest.RegisterMember(apptest.NewActor("rules-x"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	env := ruleOpen(t, good)
	body := func(b *emrv1.TxBody) []byte { return ruleEnvelope(t, reg, ruleMarshal(t, b)) }
	msg := apptest.RegisterMember(apptest.NewActor("rules-x"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	before := c.Seq(reg.Address)

	cases := []struct {
		name string
		raw  []byte
		log  string
	}{
		{"empty", []byte{}, "signature must be 64 bytes"},
		{"text", []byte("this is not a transaction"), "envelope"},
		{"0xff bytes", []byte{0xff, 0xff, 0xff, 0xff}, "envelope"},
		{"truncated", good[:len(good)-10], "envelope"},
		{"garbage body", ruleMarshal(t, &emrv1.Tx{BodyBytes: []byte{0xff, 0xff, 0xff}, Signature: env.Signature}), "body"},
		{"short signature", ruleMarshal(t, &emrv1.Tx{BodyBytes: env.BodyBytes, Signature: env.Signature[:63]}), "signature must be 64 bytes, got 63"},
		{"no message", body(&emrv1.TxBody{ChainId: apptest.ChainID, SignerPubKey: reg.SignPub()}), "carries no message"},
		{"empty message", body(&emrv1.TxBody{ChainId: apptest.ChainID, SignerPubKey: reg.SignPub(), Msg: &emrv1.Msg{}}), "carries no message"},
		{"empty chain id", body(&emrv1.TxBody{SignerPubKey: reg.SignPub(), Msg: msg}), "empty chain id"},
		{"short signer key", body(&emrv1.TxBody{ChainId: apptest.ChainID, SignerPubKey: reg.SignPub()[:31], Msg: msg}), "signer public key must be 32 bytes, got 31"},
	}
	for _, tc := range cases {
		ruleCheck(t, tc.name, c.Block(tc.raw)[0], app.ErrTxDecode, tc.log)
	}
	if got := c.Seq(reg.Address); got != before {
		t.Fatalf("sequence %d after undecodable txs, want %d", got, before)
	}
}

// TestTxNonCanonical: a body (or envelope) that decodes but is not the
// deterministic encoding of what it decodes to is refused, so one signed
// meaning has one encoding and one tx hash.
func TestTxNonCanonical(t *testing.T) {
	// A fresh chain: the genesis registrar is at sequence 0, which the
	// canonical body omits.
	c := apptest.New(t, apptest.Options{})
	reg := apptest.Registrar(apptest.HospitalA)
	msgBytes := ruleMarshal(t, apptest.RegisterMember(apptest.NewActor("rules-x"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	chain := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), apptest.ChainID)
	key := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), reg.SignPub())
	msg := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), msgBytes)
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }

	canonical := cat(chain, key, msg)
	if ruleCheck(t, "hand-built canonical body", ruleSimulateRaw(t, c, ruleEnvelope(t, reg, canonical)), nil); t.Failed() {
		t.FailNow()
	}
	zeroSeq := protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 0)
	// The chain id's length as a two-byte varint (0x8d 0x00 = 13).
	longLen := cat(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{byte(len(apptest.ChainID)) | 0x80, 0x00}, []byte(apptest.ChainID))
	sig, err := reg.Sign.Sign(canonical)
	if err != nil {
		t.Fatal(err)
	}
	reversedEnvelope := cat(
		protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), sig),
		protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), canonical),
	)

	for _, tc := range []struct {
		name, log string
		raw       []byte
	}{
		{"body fields out of order", "body: not canonically encoded", ruleEnvelope(t, reg, cat(key, chain, msg))},
		{"explicit zero sequence", "body: not canonically encoded", ruleEnvelope(t, reg, cat(chain, key, zeroSeq, msg))},
		{"non-minimal length varint", "body: not canonically encoded", ruleEnvelope(t, reg, cat(longLen, key, msg))},
		{"unknown field before the message", "body: not canonically encoded", ruleEnvelope(t, reg, cat(chain, key, ruleUnknownField(), msg))},
		{"envelope fields reversed", "envelope: not canonically encoded", reversedEnvelope},
	} {
		ruleCheck(t, tc.name, c.Block(tc.raw)[0], app.ErrTxDecode, tc.log)
	}
	if got := c.Seq(reg.Address); got != 0 {
		t.Fatalf("sequence %d after non-canonical txs", got)
	}
}

// TestUnknownFieldsRefused: an unknown field appended to a body, a message
// or the envelope is refused as not canonically encoded. (proto.Unmarshal
// keeps unknown fields and Marshal writes them back, so a re-marshal check
// alone once let them round-trip: the same signed body then had several
// encodings and tx hashes, and a field a newer version would act on was
// silently ignored.)
func TestUnknownFieldsRefused(t *testing.T) {
	c := apptest.New(t, apptest.Options{}) // the registrar at sequence 0, which the hand-built body omits
	reg := apptest.Registrar(apptest.HospitalA)
	newbie := apptest.NewActor("rules-x")
	good := c.Tx(reg, apptest.RegisterMember(newbie, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	env := ruleOpen(t, good)

	inner := slices.Concat(ruleMarshal(t, apptest.RegisterMember(newbie, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA).GetRegisterMember()), ruleUnknownField())
	msgBytes := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), inner) // Msg.register_member
	nestedBody := slices.Concat(
		protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), apptest.ChainID),
		protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), reg.SignPub()),
		protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), msgBytes),
	)
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"unknown field appended to the body", ruleEnvelope(t, reg, slices.Concat(env.BodyBytes, ruleUnknownField()))},
		{"unknown field appended to the message", ruleEnvelope(t, reg, nestedBody)},
		{"unknown field appended to the envelope", slices.Concat(good, protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1))},
	} {
		ruleCheck(t, tc.name, ruleSimulateRaw(t, c, tc.raw), app.ErrTxDecode, "not canonically encoded")
	}
}

// TestFailedTxChangesNothing: a failing tx leaves no trace, not even its
// signer's sequence, also when it fails after having written (a rotation
// that updated one grantee's envelope before finding another missing).
// (The app hash of the block still changes: every block records itself.)
func TestFailedTxChangesNothing(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	spec := apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year}
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.Grant(w.pid, w.doc, spec),
		apptest.Grant(w.pid, w.doc2, spec),
		apptest.AddRecord(w.pid, ruleLab, "r1"),
	)...))
	seq := c.Seq(w.pat.Address)
	patient := rulePatient(c, w.pid)
	perms := rulePermissions(c, w.pid)
	record := ruleRecord(c, w.pid, 1)

	// Whichever grantee is visited first gets its new envelope written
	// before the other is found missing.
	rotate := func(env *apptest.Actor) *emrv1.Msg {
		return apptest.RotateKey(w.pid, 2,
			[]*emrv1.KeyEnvelope{{Grantee: env.Address, WrappedKek: []byte("kek-v2")}},
			[]*emrv1.RewrappedKey{{RecordSequence: 1, WrappedFileKey: []byte("fk-v2")}})
	}
	for _, env := range []*apptest.Actor{w.doc, w.doc2} {
		h := c.Height()
		ruleCheck(t, "rotation missing an envelope", c.Exec(w.pat, rotate(env)), app.ErrInvalidMsg)
		if c.Height() != h+1 {
			t.Fatal("the block was not committed")
		}
	}
	// A failing tx between two good ones of other signers.
	results := c.Block(
		ruleSigned(c, w.regA, apptest.RegisterMember(apptest.NewActor("rules-y"), emrv1.Role_ROLE_AUDITOR, apptest.HospitalA))[0],
		w.pat.Tx(apptest.ChainID, seq, rotate(w.doc)),
		ruleSigned(c, w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))[0],
	)
	ruleCheck(t, "good tx before", results[0], nil)
	ruleCheck(t, "failing tx", results[1], app.ErrInvalidMsg)
	ruleCheck(t, "good tx after", results[2], nil)

	if got := c.Seq(w.pat.Address); got != seq {
		t.Errorf("patient sequence %d after failed txs, want %d", got, seq)
	}
	after := rulePatient(c, w.pid)
	after.AccessCount-- // the good read above
	if !proto.Equal(after, patient) {
		t.Errorf("patient changed:\n got %v\nwant %v", after, patient)
	}
	if got := rulePermissions(c, w.pid); len(got) != len(perms) || !proto.Equal(&emrv1.QueryPermissionsResponse{Permissions: got}, &emrv1.QueryPermissionsResponse{Permissions: perms}) {
		t.Errorf("permissions changed:\n got %v\nwant %v", got, perms)
	}
	if got := ruleRecord(c, w.pid, 1); !proto.Equal(got, record) {
		t.Errorf("record changed:\n got %v\nwant %v", got, record)
	}
}

// ======================= RegisterMember =======================

func TestRegisterMemberAuthority(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	// A second registrar of hospital-a, suspended by the first.
	reg2 := w.member("rules-registrar-a2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalA)
	c.Must(w.regA, apptest.SetStatus(reg2, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))

	newbie := apptest.NewActor("rules-newbie")
	into := func(org string) *emrv1.Msg {
		return apptest.RegisterMember(newbie, emrv1.Role_ROLE_CLINICIAN, org)
	}
	ruleRun(t, c, c.Now, []ruleCase{
		{"registrar of hospital-a into hospital-a", w.regA, into(apptest.HospitalA), nil, nil},
		{"registrar of research into research", w.regR, apptest.RegisterMember(newbie, emrv1.Role_ROLE_RESEARCHER, apptest.Research), nil, nil},
		{"registrar of hospital-b into hospital-a", w.regB, into(apptest.HospitalA), app.ErrUnauthorized,
			[]string{`the signer is a registrar of "hospital-b", not of "hospital-a"`}},
		{"clinician signer", w.doc, into(apptest.HospitalA), app.ErrUnauthorized, []string{"only a registrar may do this, the signer is a clinician"}},
		{"researcher signer", w.sci, into(apptest.Research), app.ErrUnauthorized, []string{"the signer is a researcher"}},
		{"auditor signer", w.aud, into(apptest.HospitalA), app.ErrUnauthorized, []string{"the signer is a auditor"}},
		{"patient signer", w.pat, into(apptest.HospitalA), app.ErrUnauthorized, []string{"the signer is a patient"}},
		// Every registrar belongs to an existing organization (genesis
		// validates it), so an unknown organization fails on the
		// organization mismatch, before the organization lookup.
		{"registrar into an unknown organization", w.regA, into("no-such-org"), app.ErrUnauthorized,
			[]string{`not of "no-such-org"`}},
		{"suspended registrar", reg2, into(apptest.HospitalA), app.ErrSignerSuspended,
			[]string{ruleAddr(reg2) + " is suspended and can sign nothing"}},
	})
}

func TestRegisterMemberRole(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	newbie := apptest.NewActor("rules-newbie")
	with := func(edit func(m *emrv1.MsgRegisterMember)) *emrv1.Msg {
		msg := apptest.RegisterMember(newbie, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
		edit(msg.GetRegisterMember())
		return msg
	}
	role := func(r emrv1.Role) *emrv1.Msg { return with(func(m *emrv1.MsgRegisterMember) { m.Role = r }) }
	const roleRule = "role must be clinician, researcher, auditor, registrar, emergency service or storage service"
	ruleRun(t, c, c.Now, []ruleCase{
		{"clinician", w.regA, role(emrv1.Role_ROLE_CLINICIAN), nil, nil},
		{"researcher", w.regA, role(emrv1.Role_ROLE_RESEARCHER), nil, nil},
		{"auditor", w.regA, role(emrv1.Role_ROLE_AUDITOR), nil, nil},
		{"registrar", w.regA, role(emrv1.Role_ROLE_REGISTRAR), nil, nil},
		{"emergency service", w.regA, role(emrv1.Role_ROLE_EMERGENCY_SERVICE), nil, nil},
		{"storage service of an organization not named", w.regA, role(emrv1.Role_ROLE_STORAGE_SERVICE), app.ErrUnauthorized, []string{"may not have a storage service", "params.storage_organizations"}},
		{"patient", w.regA, role(emrv1.Role_ROLE_PATIENT), app.ErrInvalidMsg, []string{"register_member", roleRule}},
		{"unspecified", w.regA, role(emrv1.Role_ROLE_UNSPECIFIED), app.ErrInvalidMsg, []string{roleRule}},
		{"out of range", w.regA, role(emrv1.Role(42)), app.ErrInvalidMsg, []string{roleRule}},
		{"short signing key", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.SignPubKey = m.SignPubKey[:31] }), app.ErrInvalidMsg, []string{"signing key must be 32 bytes"}},
		{"no encryption key", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.EncPubKey = nil }), app.ErrInvalidMsg, []string{"encryption key must be 32 bytes"}},
		{"non-canonical encryption key", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.EncPubKey = slices.Clone(m.EncPubKey); m.EncPubKey[31] |= 0x80 }),
			app.ErrInvalidMsg, []string{"encryption key is not a canonical X25519 key"}},
		{"small-order encryption key (u = 1)", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.EncPubKey = append([]byte{1}, make([]byte, 31)...) }),
			app.ErrInvalidMsg, []string{"encryption key is an X25519 point of small order"}},
		{"bad organization id", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.OrganizationId = "Hospital A" }), app.ErrInvalidMsg, []string{"organization id"}},
		{"no credential", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.CredentialRef = "" }), app.ErrInvalidMsg, []string{"credential reference is empty"}},
		{"credential with a terminal escape", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.CredentialRef = "licence:1\x1b[2K" }), app.ErrInvalidMsg,
			[]string{"credential reference holds the control character U+001B"}},
		{"credential with a newline", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.CredentialRef = "licence:1\nrole: registrar" }), app.ErrInvalidMsg,
			[]string{"U+000A"}},
		{"credential with a right-to-left override", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.CredentialRef = "licence:\u202e4321" }), app.ErrInvalidMsg,
			[]string{"U+202E"}},
		{"credential with a zero-width space", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.CredentialRef = "licence:12\u200b34" }), app.ErrInvalidMsg,
			[]string{"U+200B"}},
		{"credential with a line separator", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.CredentialRef = "licence:1\u2028role: registrar" }), app.ErrInvalidMsg,
			[]string{"U+2028"}},
		{"credential in Persian, with a zero-width non-joiner", w.regA, with(func(m *emrv1.MsgRegisterMember) { m.CredentialRef = "پروانه\u200cپزشکی:1234" }), nil, nil},
	})
}

func TestRegisterMemberDuplicate(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	ruleRun(t, c, c.Now, []ruleCase{
		{"existing clinician, other role", w.regA, apptest.RegisterMember(w.doc, emrv1.Role_ROLE_RESEARCHER, apptest.HospitalA), app.ErrAlreadyExists,
			[]string{ruleAddr(w.doc) + " is already a clinician"}},
		{"existing clinician, by another organization", w.regB, apptest.RegisterMember(w.doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB), app.ErrAlreadyExists, nil},
		{"enrolled patient", w.regA, apptest.RegisterMember(w.pat, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA), app.ErrAlreadyExists, []string{"is already a patient"}},
		{"genesis registrar", w.regA, apptest.RegisterMember(w.regB, emrv1.Role_ROLE_REGISTRAR, apptest.HospitalA), app.ErrAlreadyExists, []string{"is already a registrar"}},
		{"itself", w.regA, apptest.RegisterMember(w.regA, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA), app.ErrAlreadyExists, nil},
	})
	if m := ruleMember(c, w.doc.Address); m.Role != emrv1.Role_ROLE_CLINICIAN || m.OrganizationId != apptest.HospitalA {
		t.Fatalf("the existing member changed: %v", m)
	}
}

func TestRegisterMemberStored(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	newbie := apptest.NewActor("rules-newbie")
	c.Must(w.regA, apptest.RegisterMember(newbie, emrv1.Role_ROLE_AUDITOR, apptest.HospitalA))
	h := c.Height()
	want := &emrv1.Member{
		Address:          newbie.Address,
		SignPubKey:       newbie.SignPub(),
		EncPubKey:        newbie.EncPub(),
		Role:             emrv1.Role_ROLE_AUDITOR,
		OrganizationId:   apptest.HospitalA,
		CredentialRef:    "licence:rules-newbie",
		Status:           emrv1.MemberStatus_MEMBER_STATUS_ACTIVE,
		RegisteredBy:     w.regA.Address,
		RegisteredHeight: h,
	}
	if got := ruleMember(c, newbie.Address); !proto.Equal(got, want) {
		t.Fatalf("member\n got %v\nwant %v", got, want)
	}
	// A genesis member: no registrar, the genesis credential.
	reg := ruleMember(c, w.regA.Address)
	if len(reg.RegisteredBy) != 0 || reg.CredentialRef != "genesis:registrar-hospital-a" || reg.Status != emrv1.MemberStatus_MEMBER_STATUS_ACTIVE {
		t.Fatalf("genesis registrar: %v", reg)
	}
	// The new member is a signer now (it is refused for lack of consent,
	// not as unknown).
	ruleCheck(t, "new member signs", c.Simulate(newbie, c.Now, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1)), app.ErrNotFound)
}

// ======================= SetMemberStatus =======================

func TestSetMemberStatusSuspension(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead, rWrite}, NotAfter: w.year}))
	w.records(ruleLab)
	read := apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1)
	c.Must(w.doc, read)

	c.Must(w.regA, apptest.SetStatus(w.doc, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	if m := ruleMember(c, w.doc.Address); m.Status != emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED {
		t.Fatalf("status %v, want suspended", m.Status)
	}
	seq := c.Seq(w.doc.Address)
	suspended := ruleAddr(w.doc) + " is suspended and can sign nothing"
	ruleCheck(t, "suspended reads", c.Exec(w.doc, read), app.ErrSignerSuspended, suspended)
	ruleCheck(t, "suspended writes", c.Exec(w.doc, apptest.AddRecord(w.pid, ruleLab, "x")), app.ErrSignerSuspended, suspended)
	ruleCheck(t, "suspended registers", c.Exec(w.doc, apptest.RegisterMember(apptest.NewActor("rules-z"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)), app.ErrSignerSuspended)
	if got := c.Seq(w.doc.Address); got != seq {
		t.Fatalf("suspended member's sequence moved to %d", got)
	}
	ruleCheck(t, "grant to a suspended member", c.Simulate(w.pat, c.Now, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year})),
		app.ErrGranteeSuspended, ruleAddr(w.doc)+" is suspended")
	// The consent itself is untouched by the suspension.
	if p := rulePermission(c, w.pid, w.doc); p == nil || p.RevokedHeight != 0 {
		t.Fatalf("permission after suspension: %v", p)
	}

	c.Must(w.regA, apptest.SetStatus(w.doc, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE))
	ruleCheck(t, "read after reactivation", c.Exec(w.doc, read), nil)
	if ev := ruleEvents(c, w.pid, nil); ev.Page.Total != 2 {
		t.Fatalf("access events total %d, want 2 (before and after the suspension)", ev.Page.Total)
	}
}

func TestSetMemberStatusRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	reg2 := w.member("rules-registrar-a2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalA)
	suspend := func(a *apptest.Actor) *emrv1.Msg {
		return apptest.SetStatus(a, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	}
	activate := func(a *apptest.Actor) *emrv1.Msg {
		return apptest.SetStatus(a, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE)
	}
	ruleRun(t, c, c.Now, []ruleCase{
		{"registrar suspends a clinician of its organization", w.regA, suspend(w.doc), nil, nil},
		{"registrar suspends another registrar of its organization", w.regA, suspend(reg2), nil, nil},
		{"registrar of another organization", w.regB, suspend(w.doc), app.ErrUnauthorized,
			[]string{`registrar of "hospital-b", not of "hospital-a"`}},
		{"clinician signer", w.doc, suspend(w.aud), app.ErrUnauthorized, []string{"only a registrar may do this"}},
		{"self-change", w.regA, suspend(w.regA), app.ErrInvalidMsg, []string{"a registrar cannot change its own status"}},
		{"same status", w.regA, activate(w.doc), app.ErrInvalidMsg, []string{ruleAddr(w.doc) + " is already active"}},
		{"patient", w.regA, suspend(w.pat), app.ErrUnauthorized, []string{"patients are not members of an organization"}},
		{"unknown member", w.regA, suspend(apptest.NewActor("rules-nobody")), app.ErrNotFound, []string{"no member"}},
		{"unspecified status", w.regA, apptest.SetStatus(w.doc, emrv1.MemberStatus_MEMBER_STATUS_UNSPECIFIED), app.ErrInvalidMsg,
			[]string{"status must be active or suspended"}},
		// Retired is the status an organization's retirement gives, by
		// proposal only: no registrar (nor proposal) sets it on one member.
		{"retired status", w.regA, apptest.SetStatus(w.doc, emrv1.MemberStatus_MEMBER_STATUS_RETIRED), app.ErrInvalidMsg,
			[]string{"status must be active or suspended"}},
		{"retired status by proposal", w.regA, apptest.ConsortiumSetStatus(w.doc, emrv1.MemberStatus_MEMBER_STATUS_RETIRED), app.ErrInvalidMsg,
			[]string{"status must be active or suspended"}},
	})
	c.Must(w.regA, suspend(w.doc))
	ruleCheck(t, "suspend twice", c.Simulate(w.regA, c.Now, suspend(w.doc)), app.ErrInvalidMsg, "is already suspended")
}

// ======================= EnrollPatient =======================

func TestEnrollPatient(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	p2, id2 := apptest.NewActor("rules-patient-2"), apptest.PatientID("rules-patient-2")
	c.Must(p2, apptest.Enroll(p2))
	h := c.Height()

	want := &emrv1.Patient{Id: id2, Owner: p2.Address, KeyVersion: 1, EnrolledHeight: h, KekCheck: apptest.KEKCheck(1)}
	if got := rulePatient(c, id2); !proto.Equal(got, want) {
		t.Fatalf("patient\n got %v\nwant %v", got, want)
	}
	var byOwner emrv1.QueryPatientResponse
	c.Query("PatientByOwner", &emrv1.QueryPatientByOwnerRequest{Owner: hexOf(p2.Address)}, &byOwner)
	if !proto.Equal(byOwner.Patient, want) {
		t.Fatalf("PatientByOwner\n got %v\nwant %v", byOwner.Patient, want)
	}
	m := ruleMember(c, p2.Address)
	if m.Role != emrv1.Role_ROLE_PATIENT || m.OrganizationId != "" || m.Status != emrv1.MemberStatus_MEMBER_STATUS_ACTIVE ||
		string(m.EncPubKey) != string(p2.EncPub()) || len(m.RegisteredBy) != 0 || m.RegisteredHeight != h {
		t.Fatalf("patient's member entry: %v", m)
	}
	if got := c.Seq(p2.Address); got != 1 {
		t.Fatalf("patient sequence %d, want 1", got)
	}

	p3 := apptest.NewActor("rules-patient-3")
	seed3 := apptest.PatientSeed(p3.Name)
	with := func(m *emrv1.Msg, edit func(*emrv1.MsgEnrollPatient)) *emrv1.Msg {
		edit(m.GetEnrollPatient())
		return m
	}
	ruleRun(t, c, c.Now, []ruleCase{
		{"new account, new id", p3, apptest.Enroll(p3), nil, nil},
		{"the same seed under another key: another id", p3, apptest.EnrollSeed(p3, apptest.PatientSeed(p2.Name)), nil, nil},
		{"another key's id and seed", p3, apptest.EnrollAs(p3, p2.Name), app.ErrInvalidMsg,
			[]string{fmt.Sprintf("patient id %x is not bound to the signer's key", id2)}},
		{"id of another seed", p3, with(apptest.Enroll(p3), func(m *emrv1.MsgEnrollPatient) { m.IdSeed = apptest.PatientSeed("other") }),
			app.ErrInvalidMsg, []string{"is not bound to the signer's key"}},
		{"the same enrollment again", p2, apptest.Enroll(p2), app.ErrAlreadyExists, []string{ruleAddr(p2) + " is already a patient"}},
		{"patient enrolls a second id", p2, apptest.EnrollSeed(p2, apptest.PatientSeed("rules-patient-2b")), app.ErrAlreadyExists,
			[]string{ruleAddr(p2) + " is already a patient"}},
		{"clinician", w.doc, apptest.Enroll(w.doc), app.ErrAlreadyExists, []string{"is already a clinician"}},
		{"registrar", w.regA, apptest.Enroll(w.regA), app.ErrAlreadyExists, []string{"is already a registrar"}},
		{"short id", p3, with(apptest.Enroll(p3), func(m *emrv1.MsgEnrollPatient) { m.PatientId = m.PatientId[:31] }),
			app.ErrInvalidMsg, []string{"patient id must be 32 bytes"}},
		{"short seed", p3, apptest.EnrollSeed(p3, seed3[:31]), app.ErrInvalidMsg, []string{"id seed must be 32 bytes"}},
		{"no seed", p3, with(apptest.Enroll(p3), func(m *emrv1.MsgEnrollPatient) { m.IdSeed = nil }),
			app.ErrInvalidMsg, []string{"id seed must be 32 bytes, got 0"}},
	})
	for _, owner := range []*apptest.Actor{w.doc, p3} {
		if code := ruleQueryCode(c, "PatientByOwner", &emrv1.QueryPatientByOwnerRequest{Owner: hexOf(owner.Address)}, &emrv1.QueryPatientResponse{}); code != app.ErrNotFound.Code() {
			t.Errorf("PatientByOwner(%s): code %d, want %d", owner.Name, code, app.ErrNotFound.Code())
		}
	}
}

// TestEnrollmentCannotBeFrontRun: a squatter who copies a pending
// EnrollPatient's id and seed into a transaction of its own, ordered before
// it in the block, is refused, and the patient enrolls with its id.
func TestEnrollmentCannotBeFrontRun(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	patient, squatter := apptest.NewActor("enroll-victim"), apptest.NewActor("enroll-squatter")
	id := apptest.PatientID(patient.Name)
	results := c.Block(c.Tx(squatter, apptest.EnrollAs(squatter, patient.Name)), c.Tx(patient, apptest.Enroll(patient)))
	ruleCheck(t, "squatter", results[0], app.ErrInvalidMsg, "is not bound to the signer's key")
	ruleCheck(t, "patient", results[1], nil)
	if got := rulePatient(c, id); got == nil || string(got.Owner) != string(patient.Address) {
		t.Fatalf("patient %x: %v, want owned by %X", id, got, patient.Address)
	}
}

// ======================= Grant =======================

func TestGrantRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.study(ruleStudy)
	docS := w.member("rules-doc-suspended", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	c.Must(w.regA, apptest.SetStatus(docS, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	pat2, _ := w.patient("rules-patient-2")

	now := c.Now
	grant := func(grantee *apptest.Actor, spec apptest.GrantSpec) *emrv1.Msg {
		if spec.NotAfter.IsZero() {
			spec.NotAfter = w.year
		}
		return apptest.Grant(w.pid, grantee, spec)
	}
	read := apptest.GrantSpec{Rights: []emrv1.Right{rRead}}
	noKEK := func(m *emrv1.Msg) *emrv1.Msg { m.GetGrant().WrappedKek = nil; return m }
	bigKEK := grant(w.doc, read)
	bigKEK.GetGrant().WrappedKek = make([]byte, 513)
	maxKEK := grant(w.doc, read)
	maxKEK.GetGrant().WrappedKek = make([]byte, 512)

	ruleRun(t, c, now, []ruleCase{
		{"owner grants read", w.pat, grant(w.doc, read), nil, nil},
		{"owner grants a researcher", w.pat, grant(w.sci, read), nil, nil},
		{"non-owner", w.doc, grant(w.doc2, read), app.ErrUnauthorized, []string{"only the patient's owner may do this"}},
		{"another patient", pat2, grant(w.doc, read), app.ErrUnauthorized, nil},
		{"unknown patient", w.pat, apptest.Grant(apptest.PatientID("nobody"), w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year}),
			app.ErrNotFound, []string{"no patient"}},
		{"grantee registrar", w.pat, grant(w.regA, read), app.ErrUnauthorized, []string{"consent can be given to clinicians and researchers", "registrar"}},
		{"grantee auditor", w.pat, grant(w.aud, read), app.ErrUnauthorized, []string{"auditor"}},
		{"grantee patient", w.pat, grant(pat2, read), app.ErrUnauthorized, []string{"patient"}},
		{"grantee itself", w.pat, grant(w.pat, read), app.ErrUnauthorized, nil},
		{"unknown grantee", w.pat, grant(apptest.NewActor("rules-nobody"), read), app.ErrNotFound, []string{"no member"}},
		{"suspended grantee", w.pat, grant(docS, read), app.ErrGranteeSuspended, []string{ruleAddr(docS) + " is suspended"}},
		{"unknown category", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: []string{ruleLab, "dental"}}),
			app.ErrUnknownCategory, []string{`"dental"`}},
		{"malformed category", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: []string{"Lab Results"}}),
			app.ErrInvalidMsg, nil},
		{"not_after is the block time", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: now}), app.ErrInvalidMsg,
			[]string{fmt.Sprintf("not_after %s is not after the block time %s", ruleRFC3339(now), ruleRFC3339(now))}},
		{"not_after before the block time", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: now.Add(-time.Hour)}), app.ErrInvalidMsg,
			[]string{"not_after " + ruleRFC3339(now.Add(-time.Hour))}},
		{"not_after one second after the block time", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: now.Add(time.Second)}), nil, nil},
		{"no not_after", w.pat, func() *emrv1.Msg { m := grant(w.doc, read); m.GetGrant().NotAfter = nil; return m }(), app.ErrInvalidMsg,
			[]string{"not_after is required"}},
		{"not_before equals not_after", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotBefore: w.year, NotAfter: w.year}), app.ErrInvalidMsg,
			[]string{fmt.Sprintf("not_before (%s) must be before not_after (%s)", ruleRFC3339(w.year), ruleRFC3339(w.year))}},
		{"not_before after not_after", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotBefore: w.year.Add(time.Hour)}), app.ErrInvalidMsg,
			[]string{"must be before not_after"}},
		{"read without wrapped KEK", w.pat, noKEK(grant(w.doc, read)), app.ErrInvalidMsg, []string{"a grant needs the patient key wrapped to the grantee"}},
		{"share without wrapped KEK", w.pat, noKEK(grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: ruleStudy})), app.ErrInvalidMsg,
			[]string{"needs the patient key"}},
		// A writer wraps new file keys under the KEK, so it needs it too.
		{"write-only without wrapped KEK", w.pat, noKEK(grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rWrite}})), app.ErrInvalidMsg,
			[]string{"needs the patient key"}},
		{"wrapped KEK above max_wrapped_key_bytes", w.pat, bigKEK, app.ErrTooLarge, []string{"wrapped key is 513 bytes, the limit is 512"}},
		{"wrapped KEK at max_wrapped_key_bytes", w.pat, maxKEK, nil, nil},
		{"share with a registered study", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: ruleStudy, Anonymise: true}), nil, nil},
		{"share without a registered study", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: "no-such-study"}), app.ErrNotFound,
			[]string{`no study "no-such-study"`}},
		{"share without a study id", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead, rShare}}), app.ErrInvalidMsg,
			[]string{"share right: study id is empty"}},
		{"study id without share", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Study: ruleStudy}), app.ErrInvalidMsg,
			[]string{"study id and anonymise belong to the share right"}},
		{"anonymise without share", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Anonymise: true}), app.ErrInvalidMsg,
			[]string{"belong to the share right"}},
		{"no rights", w.pat, grant(w.doc, apptest.GrantSpec{}), app.ErrInvalidMsg, []string{"no rights given"}},
		{"unspecified right", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead, emrv1.Right_RIGHT_UNSPECIFIED}}), app.ErrInvalidMsg,
			[]string{"unknown right"}},
		{"key version 0", w.pat, func() *emrv1.Msg { m := grant(w.doc, read); m.GetGrant().KeyVersion = 0; return m }(), app.ErrInvalidMsg,
			[]string{"key version must be at least 1"}},
		{"key version ahead of the patient's", w.pat, grant(w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, KeyVersion: 2}), app.ErrKeyVersion,
			[]string{"the grant carries key version 2, the patient's key is at version 1"}},
	})
}

// TestGrantAfterRotation: a grant sealed under the patient's key before a
// rotation that executes after it (a second device, or a grant still in the
// mempool) is refused, instead of being stored as holding the new version
// with the old key, which the grantee could not use; sealed under the new
// version it stands.
func TestGrantAfterRotation(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	read := func(version uint64) *emrv1.Msg {
		return apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year, KeyVersion: version})
	}
	res := c.Block(ruleSigned(c, w.pat, apptest.RotateKey(w.pid, 2, nil, nil), read(1))...)
	ruleCheck(t, "the rotation", res[0], nil)
	ruleCheck(t, "a grant sealed before it", res[1], app.ErrKeyVersion, "the grant carries key version 1, the patient's key is at version 2")
	c.Must(w.pat, read(2))
	if perms := rulePermissions(c, w.pid); len(perms) != 1 || perms[0].KeyVersion != 2 {
		t.Fatalf("permissions after the rotation: %v", perms)
	}
}

func TestGrantReplacesAndNormalises(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.study(ruleStudy)
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead, rWrite}, Categories: []string{ruleLab}, NotAfter: w.year}))

	// The second grant replaces the first; rights and categories are
	// stored sorted and without duplicates.
	at := c.Now
	later := w.year.Add(24 * time.Hour)
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{
		Rights:     []emrv1.Right{rShare, rRead, rWrite, rRead, rShare},
		Categories: []string{ruleLab, ruleImaging, ruleLab},
		NotAfter:   later,
		Study:      ruleStudy,
		Anonymise:  true,
	}))
	h := c.Height()
	perms := rulePermissions(c, w.pid)
	if len(perms) != 1 {
		t.Fatalf("%d permissions, want 1: %v", len(perms), perms)
	}
	p := perms[0]
	if !slices.Equal(p.Rights, []emrv1.Right{rRead, rWrite, rShare}) {
		t.Errorf("rights %v, want [read write share]", p.Rights)
	}
	if !slices.Equal(p.Categories, []string{ruleImaging, ruleLab}) {
		t.Errorf("categories %v, want [imaging lab-results]", p.Categories)
	}
	if string(p.Grantee) != string(w.doc.Address) || string(p.PatientId) != string(w.pid) {
		t.Errorf("grantee/patient: %v", p)
	}
	if !p.NotBefore.AsTime().Equal(at) || !p.NotAfter.AsTime().Equal(later) {
		t.Errorf("window [%v, %v), want [%v, %v) (not_before defaults to the block time)", p.NotBefore.AsTime(), p.NotAfter.AsTime(), at, later)
	}
	if p.StudyId != ruleStudy || !p.Anonymise || p.KeyVersion != 1 || p.GrantedHeight != h || p.RevokedHeight != 0 ||
		string(p.WrappedKek) != "kek-for-rules-doc-a" {
		t.Errorf("permission: %v", p)
	}

	// Replace again with a narrower, write-only grant.
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rWrite}, NotAfter: w.year}))
	perms = rulePermissions(c, w.pid)
	if len(perms) != 1 || !slices.Equal(perms[0].Rights, []emrv1.Right{rWrite}) || len(perms[0].Categories) != 0 ||
		perms[0].StudyId != "" || perms[0].Anonymise {
		t.Fatalf("after the second replacement: %v", perms)
	}

	// Grants by grantee.
	pat2, id2 := w.patient("rules-patient-2")
	c.Must(pat2, apptest.Grant(id2, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year}))
	var grants emrv1.QueryGrantsResponse
	c.Query("Grants", &emrv1.QueryGrantsRequest{Grantee: hexOf(w.doc.Address)}, &grants)
	var got []string
	for _, g := range grants.Permissions {
		if string(g.Grantee) != string(w.doc.Address) {
			t.Errorf("Grants(doc) lists a permission of %x", g.Grantee)
		}
		got = append(got, hexOf(g.PatientId))
	}
	want := []string{hexOf(w.pid), hexOf(id2)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Grants(doc) patients %v, want %v (one per patient, patient id order)", got, want)
	}
	c.Query("Grants", &emrv1.QueryGrantsRequest{Grantee: hexOf(w.doc2.Address)}, &grants)
	if len(grants.Permissions) != 0 {
		t.Fatalf("Grants(doc2) = %v, want none", grants.Permissions)
	}
}

// ======================= Revoke =======================

func TestRevokeRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: []string{ruleLab}, NotAfter: w.year}))
	w.records(ruleLab)
	read := apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1)
	c.Must(w.doc, read)

	ruleRun(t, c, c.Now, []ruleCase{
		{"owner revokes", w.pat, apptest.Revoke(w.pid, w.doc), nil, nil},
		{"grantee revokes", w.doc, apptest.Revoke(w.pid, w.doc), app.ErrUnauthorized, []string{"only the patient's owner"}},
		{"registrar revokes", w.regA, apptest.Revoke(w.pid, w.doc), app.ErrUnauthorized, nil},
		{"unknown grant", w.pat, apptest.Revoke(w.pid, w.doc2), app.ErrNoPermission, []string{"the patient has granted " + ruleAddr(w.doc2) + " nothing"}},
		{"unknown grantee", w.pat, apptest.Revoke(w.pid, apptest.NewActor("rules-nobody")), app.ErrNoPermission, nil},
		{"unknown patient", w.pat, apptest.Revoke(apptest.PatientID("nobody"), w.doc), app.ErrNotFound, nil},
	})

	at := c.Now
	c.Must(w.pat, apptest.Revoke(w.pid, w.doc))
	h := c.Height()
	check := func(when string) {
		t.Helper()
		p := rulePermission(c, w.pid, w.doc)
		if p == nil || p.RevokedHeight != h || p.RevokedTime == nil || !p.RevokedTime.AsTime().Equal(at) {
			t.Fatalf("%s: permission %v, want revoked at height %d, time %v", when, p, h, at)
		}
		if !slices.Equal(p.Rights, []emrv1.Right{rRead}) || !slices.Equal(p.Categories, []string{ruleLab}) {
			t.Fatalf("%s: the revoked permission lost its terms: %v", when, p)
		}
	}
	check("after revoke")
	ruleCheck(t, "revoke twice", c.Exec(w.pat, apptest.Revoke(w.pid, w.doc)), app.ErrPermissionRevoked,
		fmt.Sprintf("already revoked at height %d", h))
	ruleCheck(t, "read after revoke", c.Exec(w.doc, read), app.ErrPermissionRevoked,
		fmt.Sprintf("record 1: permission revoked at height %d", h))
	check("after the refused second revoke")
	var grants emrv1.QueryGrantsResponse
	c.Query("Grants", &emrv1.QueryGrantsRequest{Grantee: hexOf(w.doc.Address)}, &grants)
	if len(grants.Permissions) != 1 || grants.Permissions[0].RevokedHeight != h {
		t.Fatalf("Grants(doc) after revoke: %v", grants.Permissions)
	}

	// After the revocation's two key rotations (nobody else holds a
	// grant), a new grant replaces the revoked one.
	for v := uint64(2); v <= 3; v++ {
		c.Must(w.pat, apptest.RotateKey(w.pid, v, nil, nil))
	}
	regrant := apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year})
	regrant.GetGrant().KeyVersion = 3
	c.Must(w.pat, regrant)
	if p := rulePermission(c, w.pid, w.doc); p.RevokedHeight != 0 || p.RevokedTime != nil {
		t.Fatalf("re-granted permission still revoked: %v", p)
	}
	ruleCheck(t, "read after re-grant", c.Exec(w.doc, read), nil)
}

// TestRegrantDuringPendingRotation: while a revocation's key rotations
// are unfinished, the revoked member is not granted again (that would
// leave the patient no revocation to finish them by, and no record could
// be added); others are. Once the rotations are done, it may be.
func TestRegrantDuringPendingRotation(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	readWrite := apptest.GrantSpec{Rights: []emrv1.Right{rRead, rWrite}, NotAfter: w.year}
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, readWrite))
	c.Must(w.pat, apptest.Revoke(w.pid, w.doc))
	ruleRun(t, c, c.Now, []ruleCase{
		{"the revoked member again", w.pat, apptest.Grant(w.pid, w.doc, readWrite), app.ErrKeyVersion,
			[]string{"the key rotations after it are unfinished", "finish them first"}},
		{"another member", w.pat, apptest.Grant(w.pid, w.doc2, readWrite), nil, nil},
	})
	c.Must(w.pat, apptest.Grant(w.pid, w.doc2, readWrite))
	for v := uint64(2); v <= 3; v++ {
		c.Must(w.pat, apptest.RotateKey(w.pid, v, []*emrv1.KeyEnvelope{{Grantee: w.doc2.Address, WrappedKek: bytes.Repeat([]byte{1}, 93)}}, nil))
	}
	grant := apptest.Grant(w.pid, w.doc, readWrite)
	grant.GetGrant().KeyVersion = 3
	c.Must(w.pat, grant)
	ruleCheck(t, "the member granted again adds a record", c.Exec(w.doc, apptest.AddRecordAt(w.pid, ruleLab, "after", 3)), nil)
}

// ======================= RotateKey =======================

func TestRotateKeyRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.study(ruleStudy)
	docW := w.member("rules-doc-writer", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	docR := w.member("rules-doc-revoked", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	docE := w.member("rules-doc-expired", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	docF := w.member("rules-doc-future", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	expiry := c.Now.Add(2 * time.Second)
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead, rWrite}, NotAfter: w.year}),
		apptest.Grant(w.pid, w.sci, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: ruleStudy, NotAfter: w.year}),
		apptest.Grant(w.pid, docW, apptest.GrantSpec{Rights: []emrv1.Right{rWrite}, NotAfter: w.year}),
		apptest.Grant(w.pid, docR, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year}),
		apptest.Grant(w.pid, docE, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: expiry}),
		// Not yet valid, but standing: it needs the new key too.
		apptest.Grant(w.pid, docF, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotBefore: w.year.Add(-30 * 24 * time.Hour), NotAfter: w.year}),
		apptest.AddRecord(w.pid, ruleLab, "r1"),
		apptest.AddRecord(w.pid, ruleImaging, "r2"),
		apptest.Revoke(w.pid, docR),
	)...))
	for !c.Now.After(expiry) {
		c.Block()
	}
	before := map[string]*emrv1.Permission{}
	for _, p := range rulePermissions(c, w.pid) {
		before[string(p.Grantee)] = p
	}

	env := func(a *apptest.Actor) *emrv1.KeyEnvelope {
		return &emrv1.KeyEnvelope{Grantee: a.Address, WrappedKek: []byte("kek-v2-" + a.Name)}
	}
	standing := []*emrv1.KeyEnvelope{env(w.doc), env(w.sci), env(docW), env(docF)}
	with := func(extra ...*emrv1.KeyEnvelope) []*emrv1.KeyEnvelope { return slices.Concat(standing, extra) }
	without := func(a *apptest.Actor) []*emrv1.KeyEnvelope {
		return slices.DeleteFunc(slices.Clone(standing), func(e *emrv1.KeyEnvelope) bool { return string(e.Grantee) == string(a.Address) })
	}
	rewrap := func(seqs ...uint64) []*emrv1.RewrappedKey {
		var out []*emrv1.RewrappedKey
		for _, s := range seqs {
			out = append(out, &emrv1.RewrappedKey{RecordSequence: s, WrappedFileKey: []byte(fmt.Sprintf("fk-rewrapped-%d", s))})
		}
		return out
	}
	rot := func(version uint64, envs []*emrv1.KeyEnvelope, rw []*emrv1.RewrappedKey) *emrv1.Msg {
		return apptest.RotateKey(w.pid, version, envs, rw)
	}
	bigEnv := env(w.doc)
	bigEnv.WrappedKek = make([]byte, 513)
	const notStanding = "1 envelope(s) for members without a standing grant"

	ruleRun(t, c, c.Now, []ruleCase{
		{"owner, all standing grantees", w.pat, rot(2, standing, nil), nil, nil},
		// docR was revoked holding version 1's KEK: version 2's may be its
		// too (see below), so no record key is re-wrapped under it.
		{"re-wrap below the revocation's floor", w.pat, rot(2, standing, rewrap(1)), app.ErrKeyVersion,
			[]string{"no record key is re-wrapped under version 2", "rotation to version 3"}},
		{"non-owner", w.doc, rot(2, standing, nil), app.ErrUnauthorized, []string{"only the patient's owner"}},
		{"unknown patient", w.pat, apptest.RotateKey(apptest.PatientID("nobody"), 2, standing, nil), app.ErrNotFound, nil},
		{"skips a version", w.pat, rot(3, standing, nil), app.ErrKeyVersion,
			[]string{"the current key version is 1, the new one must be 2, not 3"}},
		{"version 1", w.pat, rot(1, standing, nil), app.ErrInvalidMsg, []string{"new key version must be at least 2"}},
		{"missing envelope for a reader", w.pat, rot(2, without(w.doc), nil), app.ErrInvalidMsg,
			[]string{"no new key envelope for standing grantee(s) " + ruleAddr(w.doc)}},
		{"missing envelope for a share grantee", w.pat, rot(2, without(w.sci), nil), app.ErrInvalidMsg, []string{ruleAddr(w.sci)}},
		{"missing envelope for a not-yet-valid grantee", w.pat, rot(2, without(docF), nil), app.ErrInvalidMsg, []string{ruleAddr(docF)}},
		{"envelope for a revoked grantee", w.pat, rot(2, with(env(docR)), nil), app.ErrInvalidMsg, []string{notStanding}},
		{"envelope for an expired grantee", w.pat, rot(2, with(env(docE)), nil), app.ErrInvalidMsg, []string{notStanding}},
		{"missing envelope for a write-only grantee", w.pat, rot(2, without(docW), nil), app.ErrInvalidMsg, []string{ruleAddr(docW)}},
		{"envelope for a non-grantee", w.pat, rot(2, with(env(w.doc2)), nil), app.ErrInvalidMsg, []string{notStanding}},
		{"duplicate envelope", w.pat, rot(2, with(env(w.doc)), nil), app.ErrInvalidMsg, []string{"two envelopes for " + ruleAddr(w.doc)}},
		{"envelope above max_wrapped_key_bytes", w.pat, rot(2, []*emrv1.KeyEnvelope{bigEnv, env(w.sci), env(docW), env(docF)}, nil), app.ErrTooLarge,
			[]string{"the limit is 512"}},
		{"empty envelope", w.pat, rot(2, with(&emrv1.KeyEnvelope{Grantee: w.doc2.Address}), nil), app.ErrInvalidMsg, []string{"envelope is empty"}},
		{"rewrap of an unknown record", w.pat, rot(2, standing, rewrap(1, 9)), app.ErrNotFound, []string{"the patient has no record 9"}},
		{"rewrap of record 0", w.pat, rot(2, standing, rewrap(0)), app.ErrInvalidMsg, []string{"record sequence 0 does not exist"}},
		{"rewrap twice", w.pat, rot(2, standing, rewrap(1, 1)), app.ErrInvalidMsg, []string{"record 1 re-wrapped twice"}},
		{"no KEK check value", w.pat, func() *emrv1.Msg { m := rot(2, standing, nil); m.GetRotateKey().KekCheck = nil; return m }(), app.ErrInvalidMsg,
			[]string{"KEK check value must be 16 bytes"}},
		{"re-wrapped key above max_wrapped_key_bytes", w.pat, rot(2, standing, []*emrv1.RewrappedKey{{RecordSequence: 1, WrappedFileKey: make([]byte, 513)}}),
			app.ErrTooLarge, []string{"wrapped key is 513 bytes, the limit is 512"}},
	})
	// A grant stands until its not_after, exclusive: at that very time it
	// needs no new key, and may not be given one.
	ruleRun(t, c, expiry, []ruleCase{
		{"at the expired grant's not_after", w.pat, rot(2, standing, nil), nil, nil},
		{"envelope for a grant at its not_after", w.pat, rot(2, with(env(docE)), nil), app.ErrInvalidMsg, []string{notStanding}},
	})

	c.Must(w.pat, rot(2, standing, nil))
	if p := rulePatient(c, w.pid); p.KeyVersion != 2 || !bytes.Equal(p.KekCheck, apptest.KEKCheck(2)) {
		t.Fatalf("patient key version %d, check %x; want 2 and the rotation's check value", p.KeyVersion, p.KekCheck)
	}
	for _, p := range rulePermissions(c, w.pid) {
		old := before[string(p.Grantee)]
		switch string(p.Grantee) {
		case string(w.doc.Address), string(w.sci.Address), string(docW.Address), string(docF.Address):
			if p.KeyVersion != 2 || !strings.HasPrefix(string(p.WrappedKek), "kek-v2-") {
				t.Errorf("standing grantee %x: key version %d, kek %q; want the new envelope at version 2", p.Grantee, p.KeyVersion, p.WrappedKek)
			}
			if p.RevokedHeight != old.RevokedHeight || !slices.Equal(p.Rights, old.Rights) {
				t.Errorf("rotation changed the terms of %x: %v", p.Grantee, p)
			}
		default: // revoked, expired: untouched
			if !proto.Equal(p, old) {
				t.Errorf("rotation changed %x:\n got %v\nwant %v", p.Grantee, p, old)
			}
		}
	}

	ruleRun(t, c, c.Now, []ruleCase{
		{"add record at the old version", w.pat, apptest.AddRecordAt(w.pid, ruleLab, "r3", 1), app.ErrKeyVersion,
			[]string{"the file key is wrapped under version 1, the patient's key is at version 2"}},
		{"writer adds at the old version", w.doc, apptest.AddRecordAt(w.pid, ruleLab, "r3", 1), app.ErrKeyVersion, nil},
		// docR was revoked holding the KEK of version 1, and a rotation
		// to 2 built before its revocation could have sealed it version
		// 2's: no record is wrapped under either.
		{"add record before the revocation's second rotation", w.pat, apptest.AddRecordAt(w.pid, ruleLab, "r3", 2), app.ErrKeyVersion,
			[]string{"the patient's key is at version 2, and no record is added below version 3"}},
		{"writer adds before it", w.doc, apptest.AddRecordAt(w.pid, ruleLab, "r3", 2), app.ErrKeyVersion, []string{"no record is added below version 3"}},
		{"next rotation must be 3", w.pat, rot(2, standing, nil), app.ErrKeyVersion, []string{"the current key version is 2, the new one must be 3, not 2"}},
	})
	c.Must(w.pat, rot(3, standing, rewrap(1)))
	if r := ruleRecord(c, w.pid, 1); r.KeyVersion != 3 || string(r.WrappedFileKey) != "fk-rewrapped-1" {
		t.Errorf("record 1 after rewrap: key version %d, key %q", r.KeyVersion, r.WrappedFileKey)
	}
	if r := ruleRecord(c, w.pid, 2); r.KeyVersion != 1 || string(r.WrappedFileKey) != "file-key-r2" {
		t.Errorf("record 2 (not re-wrapped): key version %d, key %q; want unchanged", r.KeyVersion, r.WrappedFileKey)
	}
	ruleRun(t, c, c.Now, []ruleCase{
		{"add record at the new version", w.pat, apptest.AddRecordAt(w.pid, ruleLab, "r3", 3), nil, nil},
		{"writer adds at the new version", w.doc, apptest.AddRecordAt(w.pid, ruleLab, "r3", 3), nil, nil},
	})
}

func TestRotateKeyTooManyRewraps(t *testing.T) {
	g := apptest.Consortium()
	g.Params.MaxRewrapsPerRotation = 1
	w := newRuleWorld(t, apptest.Options{Genesis: g})
	w.records(ruleLab, ruleLab)
	rw := func(seqs ...uint64) []*emrv1.RewrappedKey {
		var out []*emrv1.RewrappedKey
		for _, s := range seqs {
			out = append(out, &emrv1.RewrappedKey{RecordSequence: s, WrappedFileKey: []byte("k")})
		}
		return out
	}
	ruleRun(t, w.c, w.c.Now, []ruleCase{
		{"at the limit", w.pat, apptest.RotateKey(w.pid, 2, nil, rw(1)), nil, nil},
		{"above the limit", w.pat, apptest.RotateKey(w.pid, 2, nil, rw(1, 2)), app.ErrTooLarge, []string{"2 re-wrapped keys, the limit is 1"}},
	})
}

// ======================= AddRecord =======================

func TestAddRecordRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	window := c.Now.Add(time.Hour)
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rWrite}, Categories: []string{ruleLab}, NotAfter: window}))

	at1 := c.Now
	tx1 := c.Tx(w.pat, apptest.AddRecord(w.pid, ruleLab, "r1"))
	ruleCheck(t, "owner adds", c.Block(tx1)[0], nil)
	h1 := c.Height()
	ruleCheck(t, "writer within its window adds", c.Exec(w.doc, apptest.AddRecord(w.pid, ruleLab, "r2")), nil)
	ruleCheck(t, "owner adds outside the writer's categories", c.Exec(w.pat, apptest.AddRecord(w.pid, ruleImaging, "r3")), nil)

	var recs emrv1.QueryRecordsResponse
	c.Query("Records", &emrv1.QueryRecordsRequest{PatientId: hexOf(w.pid)}, &recs)
	if got := ruleRecordSeqs(recs.Records); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("record sequences %v, want [1 2 3]", got)
	}
	uploaders := []*apptest.Actor{w.pat, w.doc, w.pat}
	for i, r := range recs.Records {
		if string(r.Uploader) != string(uploaders[i].Address) {
			t.Errorf("record %d uploaded by %x, want %s", r.Sequence, r.Uploader, uploaders[i].Name)
		}
	}
	sum := apptest.Blob("r1")
	dtx1, err := app.DecodeTx(tx1)
	if err != nil {
		t.Fatal(err)
	}
	body1 := sha256.Sum256(dtx1.BodyBytes)
	want := &emrv1.Record{
		PatientId: w.pid, Sequence: 1, Category: ruleLab, Uploader: w.pat.Address,
		ObjectKey: fmt.Sprintf("blobs/%x", sum), CiphertextSha256: sum, Size: 1024, KeyVersion: 1,
		WrappedFileKey: []byte("file-key-r1"), UploaderSignature: dtx1.Signature,
		Height: h1, TxHash: app.TxHash(tx1), BodySha256: body1[:],
	}
	got := ruleRecord(c, w.pid, 1)
	if !got.Time.AsTime().Equal(at1) {
		t.Errorf("record 1 time %v, want the block time %v", got.Time.AsTime(), at1)
	}
	got.Time = nil
	if !proto.Equal(got, want) {
		t.Errorf("record 1\n got %v\nwant %v", got, want)
	}
	// The transaction's one signature is the record's uploader signature:
	// it checks from the record alone, with the uploader's key.
	if !w.pat.Sign.PubKey().VerifySignature(app.RecordSignBytesOf(got), got.UploaderSignature) {
		t.Error("record 1: the uploader signature does not verify over RecordSignBytesOf(record)")
	}
	if w.doc.Sign.PubKey().VerifySignature(app.RecordSignBytesOf(got), got.UploaderSignature) {
		t.Error("record 1: the uploader signature verifies with another member's key")
	}
	// It binds the record's patient and category themselves, not only
	// through the body hash, which a holder of the record alone cannot
	// open: it does not verify for the record under another patient, or
	// another category of the same length.
	for _, alter := range []struct {
		name   string
		change func(*emrv1.Record)
	}{
		{"another patient", func(r *emrv1.Record) { r.PatientId = apptest.PatientID("rules-someone-else") }},
		{"another category", func(r *emrv1.Record) { r.Category = "lab-resultz" }},
	} {
		altered := proto.Clone(got).(*emrv1.Record)
		alter.change(altered)
		if w.pat.Sign.PubKey().VerifySignature(app.RecordSignBytesOf(altered), got.UploaderSignature) {
			t.Errorf("record 1: the uploader signature verifies for the record under %s", alter.name)
		}
	}
	if p := rulePatient(c, w.pid); p.RecordCount != 3 {
		t.Errorf("record count %d, want 3", p.RecordCount)
	}

	maxBlob := app.DefaultParams().MaxBlobBytes
	sized := func(n uint64) *emrv1.Msg {
		m := apptest.AddRecord(w.pid, ruleLab, "big")
		m.GetAddRecord().Size = n
		return m
	}
	bigKey := apptest.AddRecord(w.pid, ruleLab, "r4")
	bigKey.GetAddRecord().WrappedFileKey = make([]byte, 513)
	// An AddRecord signed the way every other transaction is (over its body
	// bytes), or over another record's sign bytes, or by another key, is
	// refused: its signature must be the record's uploader signature.
	badSignatures := []struct {
		name string
		sign func(bodyBytes []byte) []byte
	}{
		{"signed over the body bytes", func(body []byte) []byte { return ruleSign(w.doc, body) }},
		{"signed over another category", func(body []byte) []byte {
			h := sha256.Sum256(body)
			return ruleSign(w.doc, app.RecordSignBytes(w.pid, ruleImaging, apptest.Blob("r4"), h[:]))
		}},
		{"signed over another body", func([]byte) []byte {
			h := sha256.Sum256([]byte("another body"))
			return ruleSign(w.doc, app.RecordSignBytes(w.pid, ruleLab, apptest.Blob("r4"), h[:]))
		}},
		{"signed by someone else's key", func(body []byte) []byte {
			h := sha256.Sum256(body)
			return ruleSign(w.doc2, app.RecordSignBytes(w.pid, ruleLab, apptest.Blob("r4"), h[:]))
		}},
	}
	for _, bad := range badSignatures {
		tx := ruleTxSignedWith(t, w.doc, c.Seq(w.doc.Address), apptest.AddRecord(w.pid, ruleLab, "r4"), bad.sign)
		ruleCheck(t, bad.name, ruleSimulateRaw(t, c, tx), app.ErrBadSignature,
			"the signature over (patient, category, hash, body hash) does not verify")
	}
	// A client that still sends the retired second signature (field 8 of
	// MsgAddRecord) is refused: an unknown field.
	withRetired := slices.Concat(ruleMarshal(t, apptest.AddRecord(w.pid, ruleLab, "r4").GetAddRecord()),
		protowire.AppendBytes(protowire.AppendTag(nil, 8, protowire.BytesType), make([]byte, 64)))
	retiredBody := slices.Concat(
		protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), apptest.ChainID),
		protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), w.doc.SignPub()),
		protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), c.Seq(w.doc.Address)),
		protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType),
			protowire.AppendBytes(protowire.AppendTag(nil, 7, protowire.BytesType), withRetired)), // Msg.add_record
	)
	ruleCheck(t, "the retired uploader_signature field", ruleSimulateRaw(t, c, ruleEnvelope(t, w.doc, retiredBody)),
		app.ErrTxDecode, "not canonically encoded")
	ruleRun(t, c, c.Now, []ruleCase{
		{"size above max_blob_bytes", w.pat, sized(maxBlob + 1), app.ErrTooLarge,
			[]string{fmt.Sprintf("file is %d bytes, the limit is %d", maxBlob+1, maxBlob)}},
		{"size at max_blob_bytes", w.pat, sized(maxBlob), nil, nil},
		{"size 0", w.pat, sized(0), app.ErrInvalidMsg, []string{"size must be positive"}},
		{"unknown category", w.pat, apptest.AddRecord(w.pid, "dental", "r4"), app.ErrUnknownCategory, []string{`"dental"`}},
		{"unknown patient", w.pat, apptest.AddRecord(apptest.PatientID("nobody"), ruleLab, "r4"), app.ErrNotFound, []string{"no patient"}},
		{"future key version", w.pat, apptest.AddRecordAt(w.pid, ruleLab, "r4", 2), app.ErrKeyVersion,
			[]string{"wrapped under version 2, the patient's key is at version 1"}},
		{"key version 0", w.pat, apptest.AddRecordAt(w.pid, ruleLab, "r4", 0), app.ErrInvalidMsg, []string{"key version must be at least 1"}},
		{"wrapped file key above the limit", w.pat, bigKey, app.ErrTooLarge, []string{"wrapped key is 513 bytes"}},
	})
	// At the end of its window the writer is refused, and told when it ended.
	ruleCheck(t, "writer at not_after", c.Simulate(w.doc, window, apptest.AddRecord(w.pid, ruleLab, "r4")),
		app.ErrPermissionExpired, "permission expired at "+ruleRFC3339(window))
	ruleCheck(t, "writer just before not_after", c.Simulate(w.doc, window.Add(-time.Second), apptest.AddRecord(w.pid, ruleLab, "r4")), nil)

	// In a block, signatures are batch-verified: a bad one beside good ones
	// is still refused, and only it.
	txs := ruleSigned(c, w.pat, apptest.AddRecord(w.pid, ruleLab, "r4"))
	txs = append(txs, ruleTxSignedWith(t, w.pat, c.Seq(w.pat.Address)+1, apptest.AddRecord(w.pid, ruleLab, "r5"),
		func(body []byte) []byte { return ruleSign(w.pat, body) })) // over the body: wrong
	txs = append(txs, ruleSigned(c, w.doc, apptest.AddRecord(w.pid, ruleLab, "r6"))...)
	results := c.Block(txs...)
	ruleCheck(t, "batch: good owner record", results[0], nil)
	ruleCheck(t, "batch: record signed over its body", results[1], app.ErrBadSignature, "(patient, category, hash, body hash)")
	ruleCheck(t, "batch: good writer record", results[2], nil)
	if p := rulePatient(c, w.pid); p.RecordCount != 5 {
		t.Errorf("record count %d after the batch, want 5", p.RecordCount)
	}
	if r := ruleRecord(c, w.pid, 5); string(r.Uploader) != string(w.doc.Address) || string(r.CiphertextSha256) != string(apptest.Blob("r6")) {
		t.Errorf("record 5: %v, want the writer's r6", r)
	}
}

func TestRecordsQuery(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.records(ruleLab, ruleImaging, ruleLab, ruleLab, ruleImaging, ruleLab)

	page := func(category string, after uint64, limit uint32) *emrv1.QueryRecordsResponse {
		var resp emrv1.QueryRecordsResponse
		c.Query("Records", &emrv1.QueryRecordsRequest{PatientId: hexOf(w.pid), Category: category, Page: &emrv1.PageRequest{After: after, Limit: limit}}, &resp)
		return &resp
	}
	for _, tc := range []struct {
		category     string
		after        uint64
		limit        uint32
		want         []uint64
		next         uint64
		checkedTotal bool
	}{
		{"", 0, 2, []uint64{1, 2}, 2, true},
		{"", 2, 2, []uint64{3, 4}, 4, true},
		{"", 4, 2, []uint64{5, 6}, 0, true},
		{"", 0, 0, []uint64{1, 2, 3, 4, 5, 6}, 0, true},
		{"", 6, 2, []uint64{}, 0, true},
		{ruleLab, 0, 2, []uint64{1, 3}, 3, false},
		{ruleLab, 3, 2, []uint64{4, 6}, 0, false},
		{ruleImaging, 0, 0, []uint64{2, 5}, 0, false},
		{ruleImaging, 0, 1, []uint64{2}, 2, false},
		{ruleImaging, 2, 1, []uint64{5}, 0, false},
		{"prescriptions", 0, 0, []uint64{}, 0, false}, // a category of params, with no records
	} {
		resp := page(tc.category, tc.after, tc.limit)
		name := fmt.Sprintf("Records(category=%q, after=%d, limit=%d)", tc.category, tc.after, tc.limit)
		if got := ruleRecordSeqs(resp.Records); !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", name, got, tc.want)
		}
		if resp.Page.Next != tc.next {
			t.Errorf("%s: next %d, want %d", name, resp.Page.Next, tc.next)
		}
		if tc.checkedTotal && resp.Page.Total != 6 {
			t.Errorf("%s: total %d, want 6", name, resp.Page.Total)
		}
		for _, r := range resp.Records {
			if tc.category != "" && r.Category != tc.category {
				t.Errorf("%s: record %d is %s", name, r.Sequence, r.Category)
			}
		}
	}
	all := page("", 0, 0).Records
	if got := ruleRecord(c, w.pid, 4); !proto.Equal(got, all[3]) || got.Sequence != 4 || got.Category != ruleLab {
		t.Errorf("Record(4) = %v, want %v", got, all[3])
	}
	// A category params do not list is refused, not answered with no
	// records (a misspelling would read as "none of this kind"), also
	// past the end of the list.
	for _, cat := range []string{"dental", "lab-result", "Lab-Results", ruleLab + " "} {
		for _, after := range []uint64{0, 6} {
			req := &emrv1.QueryRecordsRequest{PatientId: hexOf(w.pid), Category: cat, Page: &emrv1.PageRequest{After: after}}
			if code := ruleQueryCode(c, "Records", req, &emrv1.QueryRecordsResponse{}); code != app.ErrInvalidQuery.Code() {
				t.Errorf("Records(category=%q, after=%d): code %d, want %d (invalid query)", cat, after, code, app.ErrInvalidQuery.Code())
			}
		}
	}
	if code := ruleQueryCode(c, "Record", &emrv1.QueryRecordRequest{PatientId: hexOf(w.pid), Sequence: 7}, &emrv1.QueryRecordResponse{}); code != app.ErrNotFound.Code() {
		t.Errorf("Record(7): code %d, want %d", code, app.ErrNotFound.Code())
	}
}

// TestRecordsPageAfterMaxUint64IsEmpty: a page "after the last possible
// sequence" of Records or Shares is empty. (Their scans start at after+1,
// which wraps to 0 for after = 2^64-1: it once returned the whole list.)
func TestRecordsPageAfterMaxUint64IsEmpty(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.study(ruleStudy)
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: ruleStudy, NotAfter: w.year}))
	w.records(ruleLab, ruleLab)
	c.Must(w.doc, apptest.Share(w.pid, 1, ruleStudy, false))

	var recs emrv1.QueryRecordsResponse
	c.Query("Records", &emrv1.QueryRecordsRequest{PatientId: hexOf(w.pid), Page: &emrv1.PageRequest{After: math.MaxUint64}}, &recs)
	if len(recs.Records) != 0 {
		t.Errorf("Records(after=MaxUint64) = %v, want none", ruleRecordSeqs(recs.Records))
	}
	var shares emrv1.QuerySharesResponse
	c.Query("Shares", &emrv1.QuerySharesRequest{PatientId: hexOf(w.pid), Page: &emrv1.PageRequest{After: math.MaxUint64}}, &shares)
	if len(shares.Shares) != 0 {
		t.Errorf("Shares(after=MaxUint64) returned %d shares, want none", len(shares.Shares))
	}
}

// ======================= RecordAccess =======================

func TestRecordAccessEvents(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.study(ruleStudy)
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year}),
		apptest.Grant(w.pid, w.sci, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: ruleStudy, NotAfter: w.year}),
	)...))
	w.records(ruleLab, ruleImaging, ruleLab)

	type logged struct {
		tx     []byte
		height int64
		at     time.Time
	}
	run := func(a *apptest.Actor, msg *emrv1.Msg) logged {
		at := c.Now
		tx := c.Tx(a, msg)
		ruleCheck(t, "access by "+a.Name, c.Block(tx)[0], nil)
		return logged{tx, c.Height(), at}
	}
	docRead := run(w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1, 2))
	ownerRead := run(w.pat, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 3))
	research := run(w.sci, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_RESEARCH, 1))

	mk := func(seq, record uint64, by *apptest.Actor, purpose emrv1.Purpose, l logged) *emrv1.AccessEvent {
		return &emrv1.AccessEvent{PatientId: w.pid, Sequence: seq, RecordSequence: record, Accessor: by.Address,
			Purpose: purpose, Height: l.height, TxHash: app.TxHash(l.tx)}
	}
	want := []*emrv1.AccessEvent{ // newest first
		mk(4, 1, w.sci, emrv1.Purpose_PURPOSE_RESEARCH, research),
		mk(3, 3, w.pat, emrv1.Purpose_PURPOSE_TREATMENT, ownerRead),
		mk(2, 2, w.doc, emrv1.Purpose_PURPOSE_TREATMENT, docRead),
		mk(1, 1, w.doc, emrv1.Purpose_PURPOSE_TREATMENT, docRead),
	}
	times := []time.Time{research.at, ownerRead.at, docRead.at, docRead.at}
	all := ruleEvents(c, w.pid, nil)
	if len(all.Events) != len(want) || all.Page.Total != 4 || all.Page.Next != 0 {
		t.Fatalf("AccessEvents: %d events, total %d, next %d; want 4, 4, 0", len(all.Events), all.Page.Total, all.Page.Next)
	}
	for i, ev := range all.Events {
		if !ev.Time.AsTime().Equal(times[i]) {
			t.Errorf("event %d time %v, want %v", ev.Sequence, ev.Time.AsTime(), times[i])
		}
		ev = proto.Clone(ev).(*emrv1.AccessEvent)
		ev.Time = nil
		if !proto.Equal(ev, want[i]) {
			t.Errorf("event %d\n got %v\nwant %v", i, ev, want[i])
		}
	}
	if p := rulePatient(c, w.pid); p.AccessCount != 4 {
		t.Errorf("access count %d, want 4", p.AccessCount)
	}

	for _, tc := range []struct {
		after uint64
		limit uint32
		want  []uint64
		next  uint64
	}{
		{0, 2, []uint64{4, 3}, 3},
		{3, 2, []uint64{2, 1}, 0},
		{0, 3, []uint64{4, 3, 2}, 2},
		{2, 3, []uint64{1}, 0},
		{0, 4, []uint64{4, 3, 2, 1}, 0},
		{1, 2, []uint64{}, 0},
	} {
		resp := ruleEvents(c, w.pid, &emrv1.PageRequest{After: tc.after, Limit: tc.limit})
		if got := ruleEventSeqs(resp.Events); !slices.Equal(got, tc.want) || resp.Page.Next != tc.next || resp.Page.Total != 4 {
			t.Errorf("AccessEvents(after=%d, limit=%d) = %v next %d total %d; want %v next %d total 4",
				tc.after, tc.limit, got, resp.Page.Next, resp.Page.Total, tc.want, tc.next)
		}
	}
}

// TestResearchReadHonoursAnonymise: where the patient consented to a study
// only anonymised, a researcher holding that share right cannot log a
// research read of the record itself (and so get its ciphertext from a
// sidecar, decrypting it with the KEK every grant carries); the clinician
// who anonymises and shares it can. Without anonymisation, a researcher's
// research read stands (TestRecordAccessRules).
func TestResearchReadHonoursAnonymise(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.study(ruleStudy)
	anonymised := apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: ruleStudy, Anonymise: true, NotAfter: w.year}
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.Grant(w.pid, w.doc, anonymised),
		apptest.Grant(w.pid, w.sci, anonymised),
	)...))
	w.records(ruleLab)
	ruleRun(t, c, c.Now, []ruleCase{
		{"researcher, anonymised consent", w.sci, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_RESEARCH, 1), app.ErrUnauthorized,
			[]string{"only anonymised", "reads the anonymised share"}},
		{"clinician, anonymised consent", w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_RESEARCH, 1), nil, nil},
	})
}

func TestRecordAccessRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.study(ruleStudy)
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year}),
		apptest.Grant(w.pid, w.sci, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: ruleStudy, NotAfter: w.year}),
	)...))
	w.records(ruleLab, ruleImaging, ruleLab)
	access := func(p emrv1.Purpose, seqs ...uint64) *emrv1.Msg { return apptest.Access(w.pid, p, seqs...) }
	const (
		treatment = emrv1.Purpose_PURPOSE_TREATMENT
		research  = emrv1.Purpose_PURPOSE_RESEARCH
		emergency = emrv1.Purpose_PURPOSE_EMERGENCY
	)
	ruleRun(t, c, c.Now, []ruleCase{
		{"reader, treatment", w.doc, access(treatment, 1, 2, 3), nil, nil},
		{"owner, treatment", w.pat, access(treatment, 2), nil, nil},
		{"owner, research", w.pat, access(research, 2), nil, nil},
		{"share grantee, research", w.sci, access(research, 1, 2), nil, nil},
		{"emergency without a service", w.doc, access(emergency, 1), app.ErrInvalidMsg, []string{"an emergency read names the emergency service"}},
		{"unknown record", w.doc, access(treatment, 1, 9), app.ErrNotFound, []string{"the patient has no record 9 (it has 3)"}},
		{"unknown patient", w.doc, apptest.Access(apptest.PatientID("nobody"), treatment, 1), app.ErrNotFound, []string{"no patient"}},
		{"duplicate record", w.doc, access(treatment, 1, 2, 1), app.ErrInvalidMsg, []string{"record 1 named twice"}},
		{"record 0", w.doc, access(treatment, 0), app.ErrInvalidMsg, []string{"record sequence 0 does not exist"}},
		{"no records", w.doc, access(treatment), app.ErrInvalidMsg, []string{"no records or shares named"}},
		{"unspecified purpose", w.doc, access(emrv1.Purpose_PURPOSE_UNSPECIFIED, 1), app.ErrInvalidMsg, []string{"purpose must be treatment, research or emergency"}},
		{"research needs share (reader)", w.doc, access(research, 1), app.ErrRightNotGranted, []string{"record 1: ", "does not include share"}},
		{"treatment needs read (share grantee)", w.sci, access(treatment, 1), app.ErrRightNotGranted, []string{"does not include read"}},
	})
}

func TestRecordAccessLimit(t *testing.T) {
	g := apptest.Consortium()
	g.Params.MaxRecordsPerAccess = 2
	w := newRuleWorld(t, apptest.Options{Genesis: g})
	w.records(ruleLab, ruleLab, ruleLab)
	// Shares count with records (the limit is checked before either is
	// looked up, so share 1 need not exist).
	recordsAndAShare := apptest.Access(w.pid, emrv1.Purpose_PURPOSE_RESEARCH, 1, 2)
	recordsAndAShare.GetRecordAccess().ShareSequences = []uint64{1}
	ruleRun(t, w.c, w.c.Now, []ruleCase{
		{"at the limit", w.pat, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1, 2), nil, nil},
		{"above the limit", w.pat, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1, 2, 3), app.ErrTooLarge,
			[]string{"3 records and shares in one access, the limit is 2"}},
		{"records and a share above the limit", w.pat, recordsAndAShare, app.ErrTooLarge,
			[]string{"3 records and shares in one access, the limit is 2"}},
	})
}

// TestRecordAccessAllOrNothing: one record the reader may not see among
// records it may see writes no event at all.
func TestRecordAccessAllOrNothing(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: []string{ruleLab}, NotAfter: w.year}))
	w.records(ruleLab, ruleImaging, ruleLab)
	seq := c.Seq(w.doc.Address)

	ruleCheck(t, "one unauthorized record among authorized ones", c.Exec(w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1, 2, 3)),
		app.ErrCategoryNotGranted, `record 2: category not granted: the permission does not cover "imaging"`)
	if ev := ruleEvents(c, w.pid, nil); len(ev.Events) != 0 || ev.Page.Total != 0 {
		t.Fatalf("events after a refused access: %v (total %d)", ev.Events, ev.Page.Total)
	}
	if p := rulePatient(c, w.pid); p.AccessCount != 0 {
		t.Fatalf("access count %d after a refused access", p.AccessCount)
	}
	if got := c.Seq(w.doc.Address); got != seq {
		t.Fatalf("reader's sequence moved to %d", got)
	}
	c.Must(w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1, 3))
	if ev := ruleEvents(c, w.pid, nil); !slices.Equal(ruleEventSeqs(ev.Events), []uint64{2, 1}) ||
		ev.Events[0].RecordSequence != 3 || ev.Events[1].RecordSequence != 1 {
		t.Fatalf("events after the allowed access: %v", ev.Events)
	}
}

// ======================= share reads =======================

// TestShareReadRules: the study's principal investigator, a researcher of
// its organization and the patient log reads of a share, for research;
// nobody else does; and a read needs the consent the share was made under
// to stand as shareRecord required it.
func TestShareReadRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	const other = "rules-other-study"
	w.study(ruleStudy) // led by w.sci, of the research institute
	w.study(other)
	colleague := w.member("rules-colleague", emrv1.Role_ROLE_RESEARCHER, apptest.Research)
	outsider := w.member("rules-researcher-b", emrv1.Role_ROLE_RESEARCHER, apptest.HospitalB)
	consent := apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: ruleStudy, NotAfter: w.year}
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, consent))
	w.records(ruleLab, ruleLab)
	c.Must(w.doc, apptest.Share(w.pid, 2, ruleStudy, false))
	read := func(shares ...uint64) *emrv1.Msg { return apptest.ShareAccess(w.pid, shares...) }
	treatment := apptest.ShareAccess(w.pid, 1)
	treatment.GetRecordAccess().Purpose = emrv1.Purpose_PURPOSE_TREATMENT
	mixed := apptest.ShareAccess(w.pid, 1)
	mixed.GetRecordAccess().RecordSequences = []uint64{1}
	ruleRun(t, c, c.Now, []ruleCase{
		{"principal investigator", w.sci, read(1), nil, nil},
		{"researcher of the study's organization", colleague, read(1), nil, nil},
		{"owner", w.pat, read(1), nil, nil},
		{"owner, a record and a share", w.pat, mixed, nil, nil},
		{"researcher of another organization", outsider, read(1), app.ErrUnauthorized,
			[]string{"share 1: ", `neither its principal investigator nor a researcher of "research-institute"`}},
		{"registrar of the study's organization", w.regR, read(1), app.ErrUnauthorized,
			[]string{"share 1: ", `neither its principal investigator nor a researcher of "research-institute"`}},
		{"the sharer", w.doc, read(1), app.ErrUnauthorized, nil},
		{"for treatment", w.sci, treatment, app.ErrInvalidMsg, []string{"a share is read for research, not treatment"}},
		{"unknown share", w.sci, read(9), app.ErrNotFound, []string{"the patient has no share 9 (it has 1)"}},
		{"share 0", w.sci, read(0), app.ErrInvalidMsg, []string{"share sequence 0 does not exist"}},
		{"share named twice", w.sci, read(1, 1), app.ErrInvalidMsg, []string{"share 1 named twice"}},
	})
	ruleRun(t, c, w.year, []ruleCase{
		{"after the consent's end", w.sci, read(1), app.ErrPermissionExpired, []string{"the consent this share was made under no longer stands"}},
	})

	// A read is logged: the event names the share and the record it shares,
	// and it is the reader's last read of the share, not of the record.
	c.Must(w.sci, read(1))
	var last emrv1.QueryLastAccessResponse
	c.Query("LastAccess", &emrv1.QueryLastAccessRequest{PatientId: hexOf(w.pid), Sequence: 1, Accessor: hexOf(w.sci.Address), Share: true}, &last)
	if ev := last.Event; ev.ShareSequence != 1 || ev.RecordSequence != 2 || ev.Purpose != emrv1.Purpose_PURPOSE_RESEARCH || !bytes.Equal(ev.Accessor, w.sci.Address) {
		t.Fatalf("the last read of share 1: %v", ev)
	}
	for _, seq := range []uint64{1, 2} {
		if code := ruleQueryCode(c, "LastAccess", &emrv1.QueryLastAccessRequest{PatientId: hexOf(w.pid), Sequence: seq, Accessor: hexOf(w.sci.Address)},
			&emrv1.QueryLastAccessResponse{}); code != app.ErrNotFound.Code() {
			t.Fatalf("the reader's last read of record %d: code %d, want not found", seq, code)
		}
	}
	// The index is the reader's own: a colleague's read of the share does
	// not move it.
	c.Must(colleague, read(1))
	c.Query("LastAccess", &emrv1.QueryLastAccessRequest{PatientId: hexOf(w.pid), Sequence: 1, Accessor: hexOf(w.sci.Address), Share: true}, &last)
	if ev := last.Event; ev.Sequence != 1 || !bytes.Equal(ev.Accessor, w.sci.Address) {
		t.Fatalf("the last read of share 1 by its first reader, after a colleague's: %v", ev)
	}

	// What the patient or a registrar changes afterwards ends the study's
	// reads, as it ends a grantee's reads of a record.
	narrowed := consent
	narrowed.Anonymise = true
	moved := consent
	moved.Study = other
	otherCategories := consent
	otherCategories.Categories = []string{ruleImaging}
	readOnly := apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year} // no share right, so no study
	changes := []struct {
		name   string
		signer *apptest.Actor
		msg    *emrv1.Msg
		want   *app.CodedError
		log    string
	}{
		{"narrowed to anonymised", w.pat, apptest.Grant(w.pid, w.doc, narrowed), app.ErrUnauthorized, "only anonymised, and this share is not"},
		{"moved to another study", w.pat, apptest.Grant(w.pid, w.doc, moved), app.ErrUnauthorized, `it is now for study "rules-other-study"`},
		{"narrowed to another category", w.pat, apptest.Grant(w.pid, w.doc, otherCategories), app.ErrCategoryNotGranted,
			`no longer stands: category not granted: the permission does not cover "lab-results"`},
		{"share right withdrawn", w.pat, apptest.Grant(w.pid, w.doc, readOnly), app.ErrRightNotGranted, "no longer stands: right not granted: the permission does not include share"},
		{"sharer suspended", w.regA, apptest.SetStatus(w.doc, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED), app.ErrGranteeSuspended, "no longer stands"},
		// Last: a revoked consent is granted again only after the key
		// rotations (app.KeyRotationPending).
		{"revoked", w.pat, apptest.Revoke(w.pid, w.doc), app.ErrPermissionRevoked, "no longer stands"},
	}
	for i, change := range changes {
		c.Must(change.signer, change.msg)
		ruleRun(t, c, c.Now, []ruleCase{{change.name, w.sci, read(1), change.want, []string{"share 1: ", change.log}}})
		ruleRun(t, c, c.Now, []ruleCase{{change.name + ", the owner", w.pat, read(1), nil, nil}})
		if i == len(changes)-1 {
			break
		}
		// Restore the consent for the next change.
		if ruleMember(c, w.doc.Address).Status != emrv1.MemberStatus_MEMBER_STATUS_ACTIVE {
			c.Must(w.regA, apptest.SetStatus(w.doc, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE))
		}
		c.Must(w.pat, apptest.Grant(w.pid, w.doc, consent))
	}
}

// TestShareConsentWithoutConsent: a share whose sharer holds no consent
// at all is refused by its name, not as the reader's own missing grant.
func TestShareConsentWithoutConsent(t *testing.T) {
	sh := &emrv1.Share{StudyId: ruleStudy, Sharer: []byte{0xab, 0xcd}}
	err := app.ShareConsentStands(nil, nil, sh, ruleLab, time.Now())
	if app.CodeOf(err) != app.ErrNoPermission.Code() || !strings.Contains(err.Error(), "no consent for the sharer ABCD") {
		t.Fatalf("no consent: %v", err)
	}
}

// ======================= RegisterStudy =======================

func TestRegisterStudyRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	sciS := w.member("rules-researcher-suspended", emrv1.Role_ROLE_RESEARCHER, apptest.Research)
	c.Must(w.regR, apptest.SetStatus(sciS, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	docR := w.member("rules-doc-research", emrv1.Role_ROLE_CLINICIAN, apptest.Research)
	sciA := w.member("rules-researcher-a", emrv1.Role_ROLE_RESEARCHER, apptest.HospitalA)
	const piRule = `must be a researcher of "research-institute"`

	ruleRun(t, c, c.Now, []ruleCase{
		{"research registrar, active researcher", w.regR, apptest.RegisterStudy(ruleStudy, w.sci), nil, nil},
		{"hospital registrar", w.regA, apptest.RegisterStudy(ruleStudy, sciA), app.ErrUnauthorized,
			[]string{`only registrars of a research organization register studies, "hospital-a" is not one`}},
		{"researcher signer", w.sci, apptest.RegisterStudy(ruleStudy, w.sci), app.ErrUnauthorized, []string{"only a registrar may do this"}},
		{"PI is a clinician of the organization", w.regR, apptest.RegisterStudy(ruleStudy, docR), app.ErrInvalidMsg, []string{piRule}},
		{"PI is a researcher of another organization", w.regR, apptest.RegisterStudy(ruleStudy, sciA), app.ErrInvalidMsg, []string{piRule}},
		{"PI is the registrar", w.regR, apptest.RegisterStudy(ruleStudy, w.regR), app.ErrInvalidMsg, []string{piRule}},
		{"PI unknown", w.regR, apptest.RegisterStudy(ruleStudy, apptest.NewActor("rules-nobody")), app.ErrInvalidMsg, []string{piRule}},
		{"PI suspended", w.regR, apptest.RegisterStudy(ruleStudy, sciS), app.ErrGranteeSuspended,
			[]string{"the principal investigator " + ruleAddr(sciS) + " is suspended"}},
		{"malformed study id", w.regR, apptest.RegisterStudy("Rules Study", w.sci), app.ErrInvalidMsg, []string{"study id"}},
	})

	c.Must(w.regR, apptest.RegisterStudy(ruleStudy, w.sci))
	h := c.Height()
	ruleCheck(t, "duplicate id", c.Simulate(w.regR, c.Now, apptest.RegisterStudy(ruleStudy, w.sci)), app.ErrAlreadyExists,
		`study "rules-study" is already registered`)
	ruleCheck(t, "duplicate id, other PI", c.Simulate(w.regR, c.Now, apptest.RegisterStudy(ruleStudy, sciS)), app.ErrAlreadyExists)

	var resp emrv1.QueryStudyResponse
	c.Query("Study", &emrv1.QueryStudyRequest{Id: ruleStudy}, &resp)
	want := &emrv1.Study{
		Id: ruleStudy, Title: "Study " + ruleStudy, PrincipalInvestigator: w.sci.Address, OrganizationId: apptest.Research,
		StudyPubKey: w.sci.EncPub(), RegisteredBy: w.regR.Address, RegisteredHeight: h,
	}
	if !proto.Equal(resp.Study, want) {
		t.Fatalf("study\n got %v\nwant %v", resp.Study, want)
	}
	if code := ruleQueryCode(c, "Study", &emrv1.QueryStudyRequest{Id: "no-such-study"}, &emrv1.QueryStudyResponse{}); code != app.ErrNotFound.Code() {
		t.Fatalf("unknown study: code %d", code)
	}
}

// ======================= ShareRecord =======================

func TestShareRecordRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	const one, two = "study-one", "study-two"
	w.study(one)
	w.study(two)
	doc3 := w.member("rules-doc-ungranted", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	ruleAllOK(t, c.Block(ruleSigned(c, w.pat,
		apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead, rShare}, Study: one, Anonymise: true, NotAfter: w.year}),
		apptest.Grant(w.pid, w.doc2, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: two, NotAfter: w.year}),
		apptest.Grant(w.pid, w.sci, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Study: one, NotAfter: w.year}),
	)...))
	w.records(ruleLab)

	big := apptest.Share(w.pid, 1, one, true)
	big.GetShareRecord().Size = app.DefaultParams().MaxBlobBytes + 1
	bigKey := apptest.Share(w.pid, 1, one, true)
	bigKey.GetShareRecord().WrappedStudyKey = make([]byte, app.DefaultParams().MaxWrappedKeyBytes+1)
	ruleRun(t, c, c.Now, []ruleCase{
		{"clinician, its study, anonymised", w.doc, apptest.Share(w.pid, 1, one, true), nil, nil},
		{"clinician, its study, anonymised though not required", w.doc2, apptest.Share(w.pid, 1, two, true), nil, nil},
		{"other study", w.doc, apptest.Share(w.pid, 1, two, true), app.ErrUnauthorized,
			[]string{`the share right is for study "study-one", not "study-two"`}},
		{"anonymisation required, not done", w.doc, apptest.Share(w.pid, 1, one, false), app.ErrUnauthorized,
			[]string{`the patient consented to sharing with "study-one" only if anonymised`}},
		{"researcher signer", w.sci, apptest.Share(w.pid, 1, one, true), app.ErrUnauthorized,
			[]string{"only clinicians share records with studies, the signer is a researcher"}},
		{"owner", w.pat, apptest.Share(w.pid, 1, one, true), app.ErrUnauthorized, []string{"the signer is a patient"}},
		{"clinician without a grant", doc3, apptest.Share(w.pid, 1, one, true), app.ErrNoPermission, nil},
		{"unknown record", w.doc, apptest.Share(w.pid, 9, one, true), app.ErrNotFound, []string{"the patient has no record 9"}},
		{"unknown study", w.doc, apptest.Share(w.pid, 1, "no-such-study", true), app.ErrNotFound, []string{`no study "no-such-study"`}},
		{"unknown patient", w.doc, apptest.Share(apptest.PatientID("nobody"), 1, one, true), app.ErrNotFound, []string{"no patient"}},
		{"size above max_blob_bytes", w.doc, big, app.ErrTooLarge, nil},
		{"study key above max_wrapped_key_bytes", w.doc, bigKey, app.ErrTooLarge, []string{"wrapped key is 513 bytes, the limit is 512"}},
		{"record 0", w.doc, apptest.Share(w.pid, 0, one, true), app.ErrInvalidMsg, []string{"record sequence 0 does not exist"}},
	})

	at := c.Now
	tx := c.Tx(w.doc, apptest.Share(w.pid, 1, one, true))
	ruleCheck(t, "share", c.Block(tx)[0], nil)
	h := c.Height()
	c.Must(w.doc2, apptest.Share(w.pid, 1, two, false))

	var resp emrv1.QuerySharesResponse
	c.Query("Shares", &emrv1.QuerySharesRequest{PatientId: hexOf(w.pid)}, &resp)
	if len(resp.Shares) != 2 || resp.Page.Total != 2 || resp.Page.Next != 0 {
		t.Fatalf("Shares: %v (page %v)", resp.Shares, resp.Page)
	}
	s := resp.Shares[0]
	if s.Sequence != 1 || s.RecordSequence != 1 || s.StudyId != one || string(s.Sharer) != string(w.doc.Address) || !s.Anonymised ||
		s.Height != h || !s.Time.AsTime().Equal(at) || string(s.TxHash) != string(app.TxHash(tx)) || string(s.PatientId) != string(w.pid) {
		t.Errorf("share 1: %v", s)
	}
	if s := resp.Shares[1]; s.Sequence != 2 || s.StudyId != two || s.Anonymised || string(s.Sharer) != string(w.doc2.Address) {
		t.Errorf("share 2: %v", s)
	}
	c.Query("Shares", &emrv1.QuerySharesRequest{PatientId: hexOf(w.pid), Page: &emrv1.PageRequest{Limit: 1}}, &resp)
	if len(resp.Shares) != 1 || resp.Shares[0].Sequence != 1 || resp.Page.Next != 1 {
		t.Errorf("Shares(limit 1): %v next %d", resp.Shares, resp.Page.Next)
	}
	c.Query("Shares", &emrv1.QuerySharesRequest{PatientId: hexOf(w.pid), Page: &emrv1.PageRequest{After: 1, Limit: 1}}, &resp)
	if len(resp.Shares) != 1 || resp.Shares[0].Sequence != 2 || resp.Page.Next != 0 {
		t.Errorf("Shares(after 1, limit 1): %v next %d", resp.Shares, resp.Page.Next)
	}
	if p := rulePatient(c, w.pid); p.ShareCount != 2 {
		t.Errorf("share count %d, want 2", p.ShareCount)
	}

	// Each study numbers its own shares, in the order they were made, and
	// lists them from its index (refused shares above recorded nothing).
	c.Must(w.doc, apptest.Share(w.pid, 1, one, true))
	var st emrv1.QueryStudySharesResponse
	c.Query("StudyShares", &emrv1.QueryStudySharesRequest{StudyId: one}, &st)
	if len(st.Shares) != 2 || st.Page.Total != 2 || st.Page.Next != 0 ||
		st.Shares[0].Sequence != 1 || st.Shares[0].StudySequence != 1 || st.Shares[1].Sequence != 3 || st.Shares[1].StudySequence != 2 {
		t.Fatalf("StudyShares(%s): %v (page %v), want the patient's shares 1 and 3 as the study's 1 and 2", one, st.Shares, st.Page)
	}
	c.Query("StudyShares", &emrv1.QueryStudySharesRequest{StudyId: one, Page: &emrv1.PageRequest{Limit: 1}}, &st)
	if len(st.Shares) != 1 || st.Shares[0].StudySequence != 1 || st.Page.Next != 1 {
		t.Errorf("StudyShares(limit 1): %v next %d", st.Shares, st.Page.Next)
	}
	c.Query("StudyShares", &emrv1.QueryStudySharesRequest{StudyId: one, Page: &emrv1.PageRequest{After: 1}}, &st)
	if len(st.Shares) != 1 || st.Shares[0].StudySequence != 2 || st.Page.Next != 0 {
		t.Errorf("StudyShares(after 1): %v next %d", st.Shares, st.Page.Next)
	}
	c.Query("StudyShares", &emrv1.QueryStudySharesRequest{StudyId: two}, &st)
	if len(st.Shares) != 1 || st.Page.Total != 1 || st.Shares[0].Sequence != 2 || st.Shares[0].StudySequence != 1 || st.Shares[0].StudyId != two {
		t.Errorf("StudyShares(%s): %v (page %v), want the patient's share 2 as the study's first", two, st.Shares, st.Page)
	}
	var study emrv1.QueryStudyResponse
	if c.Query("Study", &emrv1.QueryStudyRequest{Id: one}, &study); study.Study.ShareCount != 2 {
		t.Errorf("study %s: share count %d, want 2", one, study.Study.ShareCount)
	}
}

// ======================= Queries =======================

func TestQueryRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	w.records(ruleLab)
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year}))
	maxPage := app.DefaultParams().MaxPageSize
	pid := hexOf(w.pid)
	nobody := hexOf(apptest.PatientID("nobody"))
	unknownAddr := hexOf(apptest.NewActor("rules-nobody").Address)
	over := &emrv1.PageRequest{Limit: maxPage + 1}
	atMax := &emrv1.PageRequest{Limit: maxPage}

	for _, tc := range []struct {
		name   string
		method string
		req    proto.Message
		resp   proto.Message
		want   *app.CodedError
	}{
		{"member: not hex", "Member", &emrv1.QueryMemberRequest{Address: "zz"}, &emrv1.QueryMemberResponse{}, app.ErrInvalidQuery},
		{"member: short", "Member", &emrv1.QueryMemberRequest{Address: "abcd"}, &emrv1.QueryMemberResponse{}, app.ErrInvalidQuery},
		{"member: empty", "Member", &emrv1.QueryMemberRequest{}, &emrv1.QueryMemberResponse{}, app.ErrInvalidQuery},
		{"member: unknown", "Member", &emrv1.QueryMemberRequest{Address: unknownAddr}, &emrv1.QueryMemberResponse{}, app.ErrNotFound},
		{"member: 0x and upper case", "Member", &emrv1.QueryMemberRequest{Address: "0x" + strings.ToUpper(hexOf(w.doc.Address))}, &emrv1.QueryMemberResponse{}, nil},
		{"account: not hex", "Account", &emrv1.QueryAccountRequest{Address: "xyz"}, &emrv1.QueryAccountResponse{}, app.ErrInvalidQuery},
		{"patient: not hex", "Patient", &emrv1.QueryPatientRequest{PatientId: "not-hex"}, &emrv1.QueryPatientResponse{}, app.ErrInvalidQuery},
		{"patient: an address, not a patient id", "Patient", &emrv1.QueryPatientRequest{PatientId: hexOf(w.pat.Address)}, &emrv1.QueryPatientResponse{}, app.ErrInvalidQuery},
		{"patient: unknown", "Patient", &emrv1.QueryPatientRequest{PatientId: nobody}, &emrv1.QueryPatientResponse{}, app.ErrNotFound},
		{"patient by owner: not hex", "PatientByOwner", &emrv1.QueryPatientByOwnerRequest{Owner: "q"}, &emrv1.QueryPatientResponse{}, app.ErrInvalidQuery},
		{"permissions: not hex", "Permissions", &emrv1.QueryPermissionsRequest{PatientId: "g"}, &emrv1.QueryPermissionsResponse{}, app.ErrInvalidQuery},
		{"permissions: unknown patient", "Permissions", &emrv1.QueryPermissionsRequest{PatientId: nobody}, &emrv1.QueryPermissionsResponse{}, app.ErrNotFound},
		{"permission: granted", "Permission", &emrv1.QueryPermissionRequest{PatientId: pid, Grantee: hexOf(w.doc.Address)}, &emrv1.QueryPermissionResponse{}, nil},
		{"permission: none to that member", "Permission", &emrv1.QueryPermissionRequest{PatientId: pid, Grantee: hexOf(w.sci.Address)}, &emrv1.QueryPermissionResponse{}, app.ErrNotFound},
		{"permission: unknown patient", "Permission", &emrv1.QueryPermissionRequest{PatientId: nobody, Grantee: hexOf(w.doc.Address)}, &emrv1.QueryPermissionResponse{}, app.ErrNotFound},
		{"permission: grantee not hex", "Permission", &emrv1.QueryPermissionRequest{PatientId: pid, Grantee: "g"}, &emrv1.QueryPermissionResponse{}, app.ErrInvalidQuery},
		{"permission: no grantee", "Permission", &emrv1.QueryPermissionRequest{PatientId: pid}, &emrv1.QueryPermissionResponse{}, app.ErrInvalidQuery},
		{"grants: not hex", "Grants", &emrv1.QueryGrantsRequest{Grantee: "g"}, &emrv1.QueryGrantsResponse{}, app.ErrInvalidQuery},
		{"grants: no member", "Grants", &emrv1.QueryGrantsRequest{Grantee: unknownAddr}, &emrv1.QueryGrantsResponse{}, app.ErrNotFound},
		{"grants: a member with none", "Grants", &emrv1.QueryGrantsRequest{Grantee: hexOf(w.sci.Address)}, &emrv1.QueryGrantsResponse{}, nil},
		{"records: category not in params", "Records", &emrv1.QueryRecordsRequest{PatientId: pid, Category: "dental"}, &emrv1.QueryRecordsResponse{}, app.ErrInvalidQuery},
		{"records: unknown patient", "Records", &emrv1.QueryRecordsRequest{PatientId: nobody}, &emrv1.QueryRecordsResponse{}, app.ErrNotFound},
		{"records: page above max", "Records", &emrv1.QueryRecordsRequest{PatientId: pid, Page: over}, &emrv1.QueryRecordsResponse{}, app.ErrInvalidQuery},
		{"records: page at max", "Records", &emrv1.QueryRecordsRequest{PatientId: pid, Page: atMax}, &emrv1.QueryRecordsResponse{}, nil},
		{"record: not hex", "Record", &emrv1.QueryRecordRequest{PatientId: "g", Sequence: 1}, &emrv1.QueryRecordResponse{}, app.ErrInvalidQuery},
		{"record: unknown patient", "Record", &emrv1.QueryRecordRequest{PatientId: nobody, Sequence: 1}, &emrv1.QueryRecordResponse{}, app.ErrNotFound},
		{"access events: page above max", "AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: pid, Page: over}, &emrv1.QueryAccessEventsResponse{}, app.ErrInvalidQuery},
		{"access events: unknown patient", "AccessEvents", &emrv1.QueryAccessEventsRequest{PatientId: nobody}, &emrv1.QueryAccessEventsResponse{}, app.ErrNotFound},
		{"shares: page above max", "Shares", &emrv1.QuerySharesRequest{PatientId: pid, Page: over}, &emrv1.QuerySharesResponse{}, app.ErrInvalidQuery},
		{"shares: page at max", "Shares", &emrv1.QuerySharesRequest{PatientId: pid, Page: atMax}, &emrv1.QuerySharesResponse{}, nil},
		{"study shares: unknown study", "StudyShares", &emrv1.QueryStudySharesRequest{StudyId: "no-such-study"}, &emrv1.QueryStudySharesResponse{}, app.ErrNotFound},
		{"study shares: malformed id", "StudyShares", &emrv1.QueryStudySharesRequest{StudyId: "Bad Id"}, &emrv1.QueryStudySharesResponse{}, app.ErrInvalidQuery},
		{"study: malformed id", "Study", &emrv1.QueryStudyRequest{Id: "Bad Id"}, &emrv1.QueryStudyResponse{}, app.ErrInvalidQuery},
		{"study: unknown", "Study", &emrv1.QueryStudyRequest{Id: "no-such-study"}, &emrv1.QueryStudyResponse{}, app.ErrNotFound},
		{"organization: unknown", "Organization", &emrv1.QueryOrganizationRequest{Id: "no-such-org"}, &emrv1.QueryOrganizationResponse{}, app.ErrNotFound},
		{"organization: no id", "Organization", &emrv1.QueryOrganizationRequest{Id: strings.Repeat("x", 3000)}, &emrv1.QueryOrganizationResponse{}, app.ErrInvalidQuery},
		{"organization: known", "Organization", &emrv1.QueryOrganizationRequest{Id: apptest.HospitalA}, &emrv1.QueryOrganizationResponse{}, nil},
		{"params", "Params", &emrv1.QueryParamsRequest{}, &emrv1.QueryParamsResponse{}, nil},
	} {
		var want uint32
		if tc.want != nil {
			want = tc.want.Code()
		}
		err := c.TryQuery(tc.method, tc.req, tc.resp)
		if got := app.CodeOf(err); got != want {
			t.Errorf("%s: code %d (%v), want %d", tc.name, got, err, want)
		}
	}

	raw := func(path string, data []byte, height int64) uint32 {
		_, _, err := c.App.Query(path, data, height, false)
		return app.CodeOf(err)
	}
	req, err := proto.Marshal(&emrv1.QueryParamsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		path   string
		data   []byte
		height int64
		want   *app.CodedError
	}{
		{"unknown method", app.QueryPathPrefix + "NoSuchMethod", req, 0, app.ErrInvalidQuery},
		{"unknown path", "/some/other/path", req, 0, app.ErrInvalidQuery},
		{"undecodable request", app.QueryPathPrefix + "Member", []byte{0xff, 0xff}, 0, app.ErrInvalidQuery},
		{"height not committed yet", app.QueryPathPrefix + "Params", req, c.Height() + 1, app.ErrHeightNotCommitted},
		{"negative height", app.QueryPathPrefix + "Params", req, -1, app.ErrInvalidQuery},
	} {
		if got := raw(tc.path, tc.data, tc.height); got != tc.want.Code() {
			t.Errorf("%s: code %d, want %d", tc.name, got, tc.want.Code())
		}
	}
}
