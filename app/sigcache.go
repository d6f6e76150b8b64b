package app

import (
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/cometbft/cometbft/crypto/ed25519"

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
// Eviction is FIFO and bounded.
type sigCache struct {
	mu    sync.Mutex
	valid map[[32]byte]*DecodedTx
	order [][32]byte // ring of inserted hashes
	next  int
}

func newSigCache(size int) *sigCache {
	if size <= 0 {
		size = 1
	}
	return &sigCache{valid: make(map[[32]byte]*DecodedTx, size), order: make([][32]byte, size)}
}

func hashKey(h []byte) (k [32]byte) {
	copy(k[:], h)
	return k
}

// get returns the verified transaction whose raw bytes hash to h, or nil.
func (c *sigCache) get(h [32]byte) *DecodedTx {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.valid[h]
}

func (c *sigCache) add(tx *DecodedTx) {
	k := hashKey(tx.Hash)
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
	c.valid[k] = tx
}

// decodeVerified returns raw decoded with its signatures verified: from
// the cache, or decoded and verified now (and cached).
func (c *sigCache) decodeVerified(raw []byte) (*DecodedTx, error) {
	if tx := c.get(sha256.Sum256(raw)); tx != nil {
		return tx, nil
	}
	tx, err := DecodeTx(raw)
	if err != nil {
		return nil, err
	}
	if err := c.verifyNow(tx); err != nil {
		return nil, err
	}
	return tx, nil
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
// not decode) and batch-verifies the signatures of the uncached ones,
// caching those that are valid. A transaction that fails here is verified
// again, alone, and refused by execTx, so batching only ever saves work.
func (c *sigCache) decodeAndPreverify(raws [][]byte) []*DecodedTx {
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
