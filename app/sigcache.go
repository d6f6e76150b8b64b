package app

import (
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/cometbft/cometbft/crypto/ed25519"
	"google.golang.org/protobuf/reflect/protoreflect"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Signatures need no state: the body carries the signer's public key, and a
// transaction has exactly one signature (an AddRecord's is also the
// record's uploader signature, see SignBytes). So a transaction is decoded
// and its signature verified once, and the decoded transaction is
// remembered by the hash of its bytes between CheckTx, its rechecks,
// PrepareProposal, ProcessProposal and FinalizeBlock: a node decodes and
// verifies each transaction once, not once per step.

// sigCache remembers decoded transactions (by hash of their raw bytes) whose
// signatures are valid. Only successes are cached: the hash covers the
// body, the public key and the signatures, so a hit is exactly as good as
// decoding and verifying again. Cached transactions are never modified.
// Eviction is FIFO, bounded in entries and in bytes (sigCacheMaxBytes):
// anyone can sign a transaction with a key of their own, up to
// max_tx_bytes, and its signature verifies, so a bound in entries alone
// let strangers' large transactions hold gigabytes. CheckTx also forgets
// a transaction it refuses (forget): no honest block will hold it.
type sigCache struct {
	mu    sync.Mutex
	valid map[[32]byte]cachedTx
	// order is a ring of inserted hashes, oldest at head. A hash forgotten
	// since stays in it, costing a slot until evicted, not bytes; its
	// generation tells it from the same hash added again later.
	order []cacheSlot
	head  int
	n     int
	gen   uint64 // of the last add
	bytes int64  // sum of the costs in valid
	max   int64  // bound on bytes
}

type cachedTx struct {
	tx   *DecodedTx
	cost int64 // txCost
	gen  uint64
}

type cacheSlot struct {
	hash [32]byte
	gen  uint64
}

// sigCacheMaxBytes bounds the bytes a node's cache holds (txCost), whatever
// its size in entries: 50,000 transactions of the load's mix take about
// 90 MiB. (A variable for tests.)
var sigCacheMaxBytes int64 = 256 << 20

// decodedElementCost is what an element of a decoded message costs beyond
// its encoded bytes, at most: a message's struct and pointer, a list
// entry, a string's or byte slice's header.
const decodedElementCost = 96

// txCost is what a cached transaction holds in memory, about: its body
// encoded, its bytes again decoded, every element decoding made (a body of
// a million one-byte rights, or of tiny messages, decodes to several times
// its size), and the rest.
func txCost(tx *DecodedTx) int64 {
	return 2*int64(len(tx.BodyBytes)) + 512 + decodedElementCost*decodedElements(tx.Body.ProtoReflect())
}

// decodedElements counts m and the messages, list entries and map entries
// below it.
func decodedElements(m protoreflect.Message) int64 {
	n := int64(1)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				n += decodedElements(l.Get(i).Message())
			}
		case fd.IsList():
			n += int64(v.List().Len())
		case fd.IsMap():
			n += int64(v.Map().Len())
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					n += decodedElements(mv.Message())
					return true
				})
			}
		case fd.Message() != nil:
			n += decodedElements(v.Message())
		case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
			n++
		}
		return true
	})
	return n
}

func newSigCache(size int) *sigCache {
	if size <= 0 {
		size = 1
	}
	return &sigCache{valid: make(map[[32]byte]cachedTx, min(size, 1<<16)), order: make([]cacheSlot, size), max: sigCacheMaxBytes}
}

func hashKey(h []byte) (k [32]byte) {
	copy(k[:], h)
	return k
}

// get returns the verified transaction whose raw bytes hash to h, or nil.
func (c *sigCache) get(h [32]byte) *DecodedTx {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.valid[h].tx
}

func (c *sigCache) add(tx *DecodedTx) {
	k := hashKey(tx.Hash)
	if c.get(k) != nil {
		return
	}
	cost := txCost(tx) // outside the lock: it walks the whole body
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.valid[k]; ok || cost > c.max {
		return
	}
	for c.n == len(c.order) || (c.n > 0 && c.bytes+cost > c.max) {
		c.evictOldest()
	}
	c.gen++
	c.order[(c.head+c.n)%len(c.order)] = cacheSlot{hash: k, gen: c.gen}
	c.n++
	c.valid[k] = cachedTx{tx: tx, cost: cost, gen: c.gen}
	c.bytes += cost
}

// evictOldest drops the oldest slot of the ring, and its transaction if
// that slot still holds it (not forgotten, nor forgotten and added again
// since, in a newer slot). c.mu is held.
func (c *sigCache) evictOldest() {
	old := c.order[c.head]
	c.order[c.head] = cacheSlot{}
	c.head = (c.head + 1) % len(c.order)
	c.n--
	if e, ok := c.valid[old.hash]; ok && e.gen == old.gen {
		delete(c.valid, old.hash)
		c.bytes -= e.cost
	}
}

// forget drops the transaction whose raw bytes hash to h, if cached.
func (c *sigCache) forget(h [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.valid[h]; ok {
		delete(c.valid, h)
		c.bytes -= e.cost
	}
}

// decode returns raw decoded: from the cache (verified true: its
// signature verified, for this chain), or decoded now (verified false:
// verify it).
func (c *sigCache) decode(raw []byte) (tx *DecodedTx, verified bool, err error) {
	if tx := c.get(sha256.Sum256(raw)); tx != nil {
		return tx, true, nil
	}
	tx, err = DecodeTx(raw)
	return tx, false, err
}

// verify checks a transaction's signature, through the cache.
func (c *sigCache) verify(tx *DecodedTx) error {
	if c.get(hashKey(tx.Hash)) != nil {
		return nil
	}
	return c.verifyNow(tx)
}

// verifyNow checks a transaction's signature and caches the transaction if
// it verifies.
func (c *sigCache) verifyNow(tx *DecodedTx) error {
	if !ed25519.PubKey(tx.Body.SignerPubKey).VerifySignature(tx.SignBytes(), tx.Signature) {
		if _, ok := tx.Body.Msg.Sum.(*emrv1.Msg_AddRecord); ok {
			return fmt.Errorf("%w: the signature over (patient, category, hash, body hash) does not verify with the key of signer %X", ErrBadSignature, tx.Signer)
		}
		return fmt.Errorf("%w: the transaction is not signed by signer %X", ErrBadSignature, tx.Signer)
	}
	c.add(tx)
	return nil
}

// decodeAndPreverify decodes a block's transactions (nil where one does
// not decode) and batch-verifies the signatures of the uncached ones for
// chain chainID, caching those that are valid. A transaction that fails
// here is verified again, alone, and refused by execTx, so batching only
// ever saves work; one for another chain execTx refuses unverified.
func (c *sigCache) decodeAndPreverify(raws [][]byte, chainID string) []*DecodedTx {
	decoded := make([]*DecodedTx, len(raws))
	bv := ed25519.NewBatchVerifier()
	var pending []*DecodedTx // in the batch's order
	for i, raw := range raws {
		if tx := c.get(sha256.Sum256(raw)); tx != nil {
			decoded[i] = tx
			continue
		}
		tx, err := DecodeTx(raw)
		if err != nil {
			continue
		}
		decoded[i] = tx
		if tx.Body.ChainId != chainID {
			continue
		}
		if bv.Add(ed25519.PubKey(tx.Body.SignerPubKey), tx.SignBytes(), tx.Signature) != nil {
			continue // malformed: execTx will refuse it
		}
		pending = append(pending, tx)
	}
	if len(pending) < 2 {
		return decoded // nothing worth a batch: execTx verifies as usual
	}
	_, valid := bv.Verify()
	for i, tx := range pending {
		if i < len(valid) && valid[i] {
			c.add(tx)
		}
	}
	return decoded
}
