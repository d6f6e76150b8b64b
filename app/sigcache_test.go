package app

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"
	"google.golang.org/protobuf/types/known/timestamppb"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// testTx is a decoded transaction of a body of size bytes, as the cache
// holds it (its signature is not the cache's to check in add).
func testTx(i, size int) *DecodedTx {
	h := sha256.Sum256(fmt.Appendf(nil, "tx %d", i))
	return &DecodedTx{Hash: h[:], Body: &emrv1.TxBody{}, BodyBytes: make([]byte, size)}
}

// TestSigCacheBounds: the cache holds at most its size in entries and
// sigCacheMaxBytes in bytes (txCost), evicting oldest first; a transaction
// forgotten gives its bytes back at once, and one larger than the whole
// bound is not kept.
func TestSigCacheBounds(t *testing.T) {
	defer func(m int64) { sigCacheMaxBytes = m }(sigCacheMaxBytes)
	sigCacheMaxBytes = 10 * txCost(testTx(0, 1000)) // ten 1,000-byte bodies
	c := newSigCache(4)
	has := func(i int) bool { return c.get(hashKey(testTx(i, 0).Hash)) != nil }
	check := func(what string, want ...int) {
		t.Helper()
		var total int64
		for _, e := range c.valid {
			total += e.cost
		}
		if total != c.bytes || c.bytes > c.max || c.n > len(c.order) {
			t.Fatalf("%s: bytes %d (held %d, bound %d), %d slots of %d", what, c.bytes, total, c.max, c.n, len(c.order))
		}
		if len(c.valid) != len(want) {
			t.Fatalf("%s: %d cached, want %v", what, len(c.valid), want)
		}
		for _, i := range want {
			if !has(i) {
				t.Fatalf("%s: tx %d evicted, want %v cached", what, i, want)
			}
		}
	}
	for i := range 6 {
		c.add(testTx(i, 1000))
	}
	check("by entries", 2, 3, 4, 5)
	c.add(testTx(6, 9000)) // 2 goes by entries, then 3 by bytes
	check("by bytes", 4, 5, 6)
	c.forget(hashKey(testTx(5, 0).Hash))
	check("forgotten", 4, 6)
	c.add(testTx(7, 13000)) // more than the bound: not kept, nothing evicted
	check("too large", 4, 6)
	c.add(testTx(5, 1000)) // forgotten, added again
	c.add(testTx(8, 1000))
	check("again", 5, 6, 8)
}

// manyElementsTx is a signed Grant of 64 KiB whose body is made of
// many tiny repeated elements: rights (1 byte each encoded, 4 decoded) or
// one-letter categories (3 bytes encoded, a 16-byte string header and a
// byte decoded). It decodes and passes ValidateMsg, and its signature
// verifies: what a Byzantine proposer's block can hold, signed by keys of
// its own (the one-letter categories), or what a self-enrolled patient's
// CheckTx accepts (the rights: duplicates are allowed).
func manyElementsTx(t testing.TB, i int, kind string) []byte {
	t.Helper()
	priv := ed25519.GenPrivKeyFromSecret([]byte(fmt.Sprintf("many-elements-%d", i)))
	const body = 64 << 10
	if kind == "rewrapped" {
		// A key rotation re-wrapping ~8,000 records, each with a
		// one-byte key: ValidateMsg has no bound on their number
		// (max_rewraps_per_rotation is checked at execution).
		m := &emrv1.MsgRotateKey{PatientId: make([]byte, PatientIDSize), NewKeyVersion: 2, KekCheck: make([]byte, 16)}
		m.PatientId[0], m.PatientId[1] = byte(i), byte(i>>8)
		for j := range body / 8 {
			m.Rewrapped = append(m.Rewrapped, &emrv1.RewrappedKey{RecordSequence: uint64(1 + j%127), WrappedFileKey: []byte{1}})
		}
		b := &emrv1.TxBody{ChainId: "other-chain", SignerPubKey: priv.PubKey().Bytes(), Msg: &emrv1.Msg{Sum: &emrv1.Msg_RotateKey{RotateKey: m}}}
		raw, err := EncodeTx(b, priv.Sign)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	categories := kind == "categories"
	m := &emrv1.MsgGrant{
		PatientId:  make([]byte, PatientIDSize),
		Grantee:    make([]byte, AddressSize),
		Rights:     []emrv1.Right{emrv1.Right_RIGHT_READ},
		NotAfter:   timestamppb.New(time.Unix(2_000_000_000, 0)),
		WrappedKek: []byte{1},
		KeyVersion: 1,
	}
	if categories {
		m.Categories = strings.Split(strings.Repeat("a", body/3), "")
	} else {
		m.Rights = make([]emrv1.Right, body)
		for j := range m.Rights {
			m.Rights[j] = emrv1.Right_RIGHT_READ
		}
	}
	m.PatientId[0], m.PatientId[1] = byte(i), byte(i>>8)
	b := &emrv1.TxBody{ChainId: "other-chain", SignerPubKey: priv.PubKey().Bytes(), Msg: &emrv1.Msg{Sum: &emrv1.Msg_Grant{Grant: m}}}
	raw, err := EncodeTx(b, priv.Sign)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestSigCacheBoundHoldsRealMemory: the signature cache is
// "bounded in bytes" by txCost (twice the body plus 512), documented as
// "at most 256 MiB in all, whatever their size". But a body of many tiny
// repeated elements decodes into several times its size, so the heap the
// cache keeps is a multiple of its bound. Scaled down: a bound of 24 MiB.
func TestSigCacheBoundHoldsRealMemory(t *testing.T) {
	for _, kind := range []string{"rights", "categories", "rewrapped"} {
		t.Run(kind, func(t *testing.T) {
			defer func(m int64) { sigCacheMaxBytes = m }(sigCacheMaxBytes)
			sigCacheMaxBytes = 24 << 20
			c := newSigCache(1000)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range 48 {
				// A block of two (the batch verifies two or more).
				raws := [][]byte{manyElementsTx(t, 2*i, kind), manyElementsTx(t, 2*i+1, kind)}
				if d := c.decodeAndPreverify(raws, "other-chain"); d[0] == nil || d[1] == nil {
					t.Fatal("does not decode")
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("%d cached, counted %d MiB of a bound of %d MiB; the heap grew by %d MiB", len(c.valid), c.bytes>>20, c.max>>20, held>>20)
			if held > c.max*5/4 {
				t.Errorf("the cache is bounded at %d MiB (txCost), but holds %d MiB of heap (%.1fx): at the default 256 MiB, about %d MiB",
					c.max>>20, held>>20, float64(held)/float64(c.max), held*256/c.max)
			}
			runtime.KeepAlive(c)
		})
	}
}

// TestSigCacheAddedAgainIsNotEvictedEarly: the cache evicts oldest first
// (FIFO). A transaction refused by CheckTx (forget: a sequence gap, say)
// and accepted on a later CheckTx is added again; its old ring slot stays,
// and when that stale slot comes up for eviction, it drops the live,
// re-added entry, while entries added before the re-add are kept.
func TestSigCacheAddedAgainIsNotEvictedEarly(t *testing.T) {
	c := newSigCache(4)
	has := func(i int) bool { return c.get(hashKey(testTx(i, 0).Hash)) != nil }
	c.add(testTx(0, 100))                // ring: 0
	c.forget(hashKey(testTx(0, 0).Hash)) // refused by CheckTx
	c.add(testTx(1, 100))                // ring: 0(stale) 1
	c.add(testTx(0, 100))                // accepted later: ring 0(stale) 1 0
	c.add(testTx(2, 100))                // ring full: 0(stale) 1 0 2
	c.add(testTx(3, 100))                // evicts the stale slot of 0
	if !has(1) || !has(2) || !has(3) {
		t.Fatalf("cached: 1 %v, 2 %v, 3 %v", has(1), has(2), has(3))
	}
	if !has(0) {
		t.Errorf("tx 0, added again after tx 1, was evicted (by its stale slot) while tx 1, older, is kept: not FIFO")
	}
}

// TestSigCacheInvariants: random add/forget sequences keep bytes
// equal to the sum over valid, at most max, n at most the ring, and every
// cached hash in the ring.
func TestSigCacheInvariants(t *testing.T) {
	defer func(m int64) { sigCacheMaxBytes = m }(sigCacheMaxBytes)
	for _, size := range []int{1, 2, 3, 7} {
		sigCacheMaxBytes = 5 * txCost(testTx(0, 100))
		c := newSigCache(size)
		r := uint64(size)
		next := func(n int) int { r = r*6364136223846793005 + 1442695040888963407; return int(r>>33) % n }
		for step := range 20000 {
			i := next(12)
			switch next(3) {
			case 0:
				c.forget(hashKey(testTx(i, 0).Hash))
			default:
				c.add(testTx(i, []int{0, 100, 300, 1000, 2 * 100}[next(5)]))
			}
			var total int64
			for _, e := range c.valid {
				total += e.cost
			}
			inRing := map[[32]byte]bool{}
			for j := 0; j < c.n; j++ {
				if s := c.order[(c.head+j)%len(c.order)]; c.valid[s.hash].gen == s.gen {
					inRing[s.hash] = true
				}
			}
			for k := range c.valid {
				if !inRing[k] {
					t.Fatalf("size %d step %d: cached hash not in the ring", size, step)
				}
			}
			if total != c.bytes || c.bytes > c.max || c.n > len(c.order) || c.n < 0 {
				t.Fatalf("size %d step %d: bytes %d held %d max %d n %d", size, step, c.bytes, total, c.max, c.n)
			}
		}
	}
}
