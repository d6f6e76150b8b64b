package app

import (
	"sync"

	"github.com/cometbft/cometbft/crypto/ed25519"
)

// sigCache remembers which transactions (by hash) carry a valid signature,
// so each signature is verified once between CheckTx, PrepareProposal,
// ProcessProposal and FinalizeBlock. Only successes are cached: the hash
// covers the body, the public key and the signature, so a hit is exactly
// as good as a verification. Eviction is FIFO and bounded.
type sigCache struct {
	mu    sync.Mutex
	valid map[[32]byte]struct{}
	order [][32]byte // ring of inserted hashes
	next  int
}

func newSigCache(size int) *sigCache {
	if size <= 0 {
		size = 1
	}
	return &sigCache{valid: make(map[[32]byte]struct{}, size), order: make([][32]byte, size)}
}

func hashKey(h []byte) (k [32]byte) {
	copy(k[:], h)
	return k
}

func (c *sigCache) has(h []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.valid[hashKey(h)]
	return ok
}

func (c *sigCache) add(h []byte) {
	k := hashKey(h)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.valid[k]; ok {
		return
	}
	if old := c.order[c.next]; old != ([32]byte{}) {
		delete(c.valid, old)
	}
	c.order[c.next] = k
	c.next = (c.next + 1) % len(c.order)
	c.valid[k] = struct{}{}
}

// verify checks one transaction's signature, through the cache.
func (c *sigCache) verify(tx *DecodedTx) bool {
	if c.has(tx.Hash) {
		return true
	}
	if !ed25519.PubKey(tx.Body.SignerPubKey).VerifySignature(tx.BodyBytes, tx.Signature) {
		return false
	}
	c.add(tx.Hash)
	return true
}

// preverify batch-verifies the signatures of a block's decodable, uncached
// transactions and caches the valid ones; execTx then finds them cached.
// A transaction that fails here is verified again (and refused) in execTx,
// so this only ever saves work.
func (c *sigCache) preverify(raws [][]byte) {
	bv := ed25519.NewBatchVerifier()
	var pending []*DecodedTx
	for _, raw := range raws {
		tx, err := DecodeTx(raw)
		if err != nil || c.has(tx.Hash) {
			continue
		}
		if err := bv.Add(ed25519.PubKey(tx.Body.SignerPubKey), tx.BodyBytes, tx.Signature); err != nil {
			continue
		}
		pending = append(pending, tx)
	}
	if len(pending) < 2 {
		return // one signature: execTx verifies it the ordinary way
	}
	_, valid := bv.Verify()
	for i, tx := range pending {
		if i < len(valid) && valid[i] {
			c.add(tx.Hash)
		}
	}
}
