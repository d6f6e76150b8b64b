package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func TestProvenReaderIteratesProvenKeysOnly(t *testing.T) {
	r := &provenReader{values: map[string][]byte{"a1": []byte("x"), "a3": []byte("y"), "a2": nil, "b1": []byte("z")}}
	r.keys = [][]byte{[]byte("a1"), []byte("a3"), []byte("b1")}
	it, _ := r.Iterator([]byte("a"), []byte("b"), true)
	var got []string
	for ; it.Valid(); it.Next() {
		got = append(got, string(it.Key()))
	}
	if strings.Join(got, ",") != "a1,a3" {
		t.Fatalf("ascending = %v", got)
	}
	it, _ = r.Iterator([]byte("a"), nil, false)
	got = nil
	for ; it.Valid(); it.Next() {
		got = append(got, string(it.Key()))
	}
	if strings.Join(got, ",") != "b1,a3,a1" {
		t.Fatalf("descending = %v", got)
	}
	if v, err := r.Get([]byte("a2")); v != nil || err != nil {
		t.Fatalf("proven absent key: %q %v", v, err)
	}
	if _, err := r.Get([]byte("zz")); !errors.Is(err, ErrVerification) || string(r.missing) != "zz" {
		t.Fatalf("unproven key: %v, missing %q", err, r.missing)
	}
}

func TestEmptyRanges(t *testing.T) {
	k := func(s string) []byte { return []byte(s) }
	show := func(rs [][2][]byte) string {
		var parts []string
		for _, r := range rs {
			parts = append(parts, fmt.Sprintf("[%q,%q)", r[0], r[1]))
		}
		return strings.Join(parts, " ")
	}
	cases := []struct {
		it   iteration
		want string
	}{
		{iteration{start: k("p"), end: k("q"), ascending: true, exhausted: true}, `["p","q")`},
		{iteration{start: k("p"), end: k("q"), ascending: true, visited: [][]byte{k("p1"), k("p2")}, exhausted: true},
			`["p","p1") ["p1\x00","p2") ["p2\x00","q")`},
		{iteration{start: k("p"), end: k("q"), ascending: true, visited: [][]byte{k("p1"), k("p2")}}, // stopped early
			`["p","p1") ["p1\x00","p2")`},
		{iteration{start: k("p"), end: k("q"), visited: [][]byte{k("p9"), k("p5")}, exhausted: true},
			`["p9\x00","q") ["p5\x00","p9") ["p","p5")`},
		{iteration{start: k("p"), end: k("q"), visited: [][]byte{k("p9")}}, `["p9\x00","q")`},
		{iteration{start: k("p1"), end: k("q"), ascending: true, visited: [][]byte{k("p1")}, exhausted: true}, `["p1\x00","q")`},
	}
	for i, c := range cases {
		if got := show(c.it.emptyRanges()); got != c.want {
			t.Errorf("case %d: %s, want %s", i, got, c.want)
		}
	}
}

func TestIdentityNormalization(t *testing.T) {
	a, _ := IdentityFromNameAndBirth("  Ada   LOVELACE ", "1815-12-10")
	b, _ := IdentityFromNameAndBirth("ada lovelace", " 1815-12-10")
	if !bytes.Equal(a, b) {
		t.Fatalf("%q != %q", a, b)
	}
	if _, err := IdentityFromNameAndBirth("Ada", "10/12/1815"); err == nil {
		t.Fatal("bad date accepted")
	}
	j1, err := IdentityFromJSON([]byte(`{"name": " Ada ", "birth_date": "1815-12-10", "ids": [1, 2.50]}`))
	if err != nil {
		t.Fatal(err)
	}
	j2, _ := IdentityFromJSON([]byte(`{"ids":[1,2.50],"birth_date":"1815-12-10","name":"Ada"}`))
	if !bytes.Equal(j1, j2) || string(j1) != `json:{"birth_date":"1815-12-10","ids":[1,2.50],"name":"Ada"}` {
		t.Fatalf("canonical JSON: %s vs %s", j1, j2)
	}
	for _, bad := range []string{`[]`, `{}`, `{"a":1} {"b":2}`, `nope`} {
		if _, err := IdentityFromJSON([]byte(bad)); err == nil {
			t.Errorf("identity %q accepted", bad)
		}
	}
	secret := bytes.Repeat([]byte{1}, 32)
	seed1, _ := PatientSeed(secret, a)
	seed2, _ := PatientSeed(bytes.Repeat([]byte{2}, 32), a)
	seed3, _ := PatientSeed(secret, j1)
	if len(seed1) != 32 || bytes.Equal(seed1, seed2) || bytes.Equal(seed1, seed3) {
		t.Fatal("patient id seeds do not separate secrets and identities")
	}
	if _, err := PatientSeed(secret[:31], a); err == nil {
		t.Fatal("short secret accepted")
	}
	key1, key2 := bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32)
	kek := make([]byte, 32)
	m1, m2 := EnrollPatientMsg(key1, nil, seed1, kek).GetEnrollPatient(), EnrollPatientMsg(key2, nil, seed1, kek).GetEnrollPatient()
	if !bytes.Equal(m1.PatientId, app.BoundPatientID(key1, seed1)) || !bytes.Equal(m1.IdSeed, seed1) || bytes.Equal(m1.PatientId, m2.PatientId) {
		t.Fatal("the enrollment's id is not bound to the key and the seed")
	}
}

func TestCheckTxRejectionParsesCometBFT(t *testing.T) {
	err := errors.New(`error in json rpc client, with http response metadata: (Status: 200 OK, Protocol HTTP/1.1). RPC error -32603 - Internal error: broadcast error on transaction validation: tx D2A1 is invalid: code=16, data=, log='record 1: permission revoked at height 42', codespace='emrchain'`)
	cerr := checkTxRejection(err, []byte{1})
	var ce *ChainError
	if !errors.As(cerr, &ce) || ce.Code != 16 || ce.Log != "record 1: permission revoked at height 42" || ce.Codespace != app.Codespace {
		t.Fatalf("parsed %+v", cerr)
	}
	if !errors.Is(cerr, ErrTxRejected) || !errors.Is(cerr, app.ErrPermissionRevoked) || errors.Is(cerr, app.ErrNotFound) {
		t.Fatal("ChainError.Is")
	}
	if checkTxRejection(errors.New("connection refused"), nil) != nil {
		t.Fatal("a network error parsed as a rejection")
	}
	nf := &ChainError{Code: app.ErrNotFound.Code(), Codespace: app.Codespace, Log: "no member"}
	if !errors.Is(nf, ErrNotFound) || errors.Is(nf, ErrTxRejected) {
		t.Fatal("not found")
	}
}

// TestAnonymiseLimits: the bound on plaintext held for de-identification
// refuses a record above it, and the largest bound there is reads the
// record whole (limit+1 used to wrap, and nothing was read).
func TestAnonymiseLimits(t *testing.T) {
	bundle, err := os.ReadFile("../offchain/deid/testdata/synthetic-bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	rec := &emrv1.Record{Sequence: 1, Category: "lab-results"}
	for _, limit := range []int64{0, int64(len(bundle)), math.MaxInt64} {
		if out, _, err := anonymise(bytes.NewReader(bundle), rec, ShareRequest{MaxAnonymiseBytes: limit}); err != nil || len(out) == 0 {
			t.Errorf("limit %d: %d bytes, %v", limit, len(out), err)
		}
	}
	if _, _, err := anonymise(bytes.NewReader(bundle), rec, ShareRequest{MaxAnonymiseBytes: int64(len(bundle)) - 1}); !errors.Is(err, ErrCannotAnonymise) {
		t.Errorf("a record one byte above the limit: %v, want ErrCannotAnonymise", err)
	}
}

// TestNotSent: a transaction that never left (here: the context had ended
// before the broadcast) says so, and a refusal by the chain does not: a
// refused grant's sealed key reached a node (emrcli grant's hint).
func TestNotSent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Client{}).Broadcast(ctx, []byte("tx"), true)
	if err == nil || !NotSent(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("broadcast after the context ended: %v (not sent: %v); want a not-sent error wrapping context.Canceled", err, NotSent(err))
	}
	if refused := error(&ChainError{Tx: true, Code: 5, Log: "unauthorized"}); NotSent(refused) || NotSent(fmt.Errorf("grant: %w", refused)) {
		t.Fatal("a refusal by the chain reads as a transaction never sent")
	}
}
