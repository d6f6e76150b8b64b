package app_test

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"google.golang.org/protobuf/proto"
)

// bigRotation is a key rotation of about 1 MiB (250 envelopes of 4 KiB,
// each within the static limits ValidateMsg checks), which decodes and
// passes stateless validation.
func bigRotation(i int) *emrv1.Msg {
	var envs []*emrv1.KeyEnvelope
	for j := range 250 {
		grantee := bytes.Repeat([]byte{byte(j)}, app.AddressSize)
		grantee[0], grantee[1] = byte(i), byte(i>>8)
		envs = append(envs, &emrv1.KeyEnvelope{Grantee: grantee, WrappedKek: bytes.Repeat([]byte{byte(i)}, 4000)})
	}
	return apptest.RotateKey(apptest.PatientID("nobody"), 2, envs, nil)
}

// TestRefusedTransactionsAreNotKept: the signature cache is bounded
// in entries ("about 1 KiB each", app.sig_cache_size, default 50,000), but
// it keeps every transaction whose signature verifies, decoded, whatever
// CheckTx then decides. Anyone can sign with a key of their own: a
// stranger's transactions, refused as from an unknown signer, stay in
// memory at their full size (up to max_tx_bytes, 1 MiB by default, about
// twice that decoded). 50,000 of them are tens of gigabytes: a client of
// the public broadcast endpoints can exhaust a validator's memory with
// transactions the chain refuses.
func TestRefusedTransactionsAreNotKept(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	const n = 40
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	size := 0
	for i := range n {
		stranger := apptest.NewActor(fmt.Sprintf("stranger-%d", i))
		tx := stranger.Tx(apptest.ChainID, 0, bigRotation(i))
		size = len(tx)
		if res := c.App.CheckTx(tx, false); res.Code != app.ErrUnknownSigner.Code() {
			t.Fatalf("tx %d: CheckTx code %d (%s), want %d (unknown signer)", i, res.Code, res.Log, app.ErrUnknownSigner.Code())
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d refused transactions of %d bytes each: heap grew by %d MiB", n, size, kept>>20)
	// Generous: 64 KiB per refused transaction, where the cache's own
	// documentation budgets 1 KiB an entry.
	if limit := int64(n) * 64 << 10; kept > limit {
		t.Errorf("%d transactions refused by CheckTx (unknown signer, %d bytes each) keep %d MiB alive in the signature cache; at the default 50,000 entries that is %d GiB",
			n, size, kept>>20, kept/int64(n)*50_000>>30)
	}
	runtime.KeepAlive(c)
}

// TestWrongChainIsNotVerified: a transaction for another chain is refused
// as such before its signature is checked (and so never cached), whatever
// its signature, in CheckTx and in a block alike.
func TestWrongChainIsNotVerified(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	stranger := apptest.NewActor("stranger-other-chain")
	tx := stranger.Tx("other-chain", 0, bigRotation(1))
	var env emrv1.Tx
	if err := proto.Unmarshal(tx, &env); err != nil {
		t.Fatal(err)
	}
	env.Signature[0] ^= 0x01
	bad, err := proto.MarshalOptions{Deterministic: true}.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{"signed": tx, "bad signature": bad} {
		if res := c.App.CheckTx(raw, false); res.Code != app.ErrWrongChain.Code() {
			t.Fatalf("%s: CheckTx code %d (%s), want %d (wrong chain)", name, res.Code, res.Log, app.ErrWrongChain.Code())
		}
		if res := c.Block(raw)[0]; res.Code != app.ErrWrongChain.Code() {
			t.Fatalf("%s: in a block, code %d (%s), want %d (wrong chain)", name, res.Code, res.Log, app.ErrWrongChain.Code())
		}
	}
}
