package app

import (
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/cometbft/cometbft/crypto/ed25519"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Signatures need no state: the body carries the signer's public key, and
// the uploader signature of an AddRecord is by that same key. So a
// transaction is decoded and its signatures verified once, and the decoded
// transaction is remembered by the hash of its bytes between CheckTx, its
// rechecks, PrepareProposal, ProcessProposal and FinalizeBlock: a node
// decodes and verifies each transaction once, not once per step.

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

// signedMessages lists the (message, signature) pairs of tx that its
// signer's key must have signed: the body, and an AddRecord's
// (patient, category, hash).
func signedMessages(tx *DecodedTx) (msgs, sigs [][]byte) {
	msgs, sigs = [][]byte{tx.BodyBytes}, [][]byte{tx.Signature}
	if add, ok := tx.Body.Msg.Sum.(*emrv1.Msg_AddRecord); ok {
		m := add.AddRecord
		msgs = append(msgs, RecordSignBytes(m.PatientId, m.Category, m.CiphertextSha256))
		sigs = append(sigs, m.UploaderSignature)
	}
	return msgs, sigs
}

// verify checks all of a transaction's signatures, through the cache.
func (c *sigCache) verify(tx *DecodedTx) error {
	if c.get(hashKey(tx.Hash)) != nil {
		return nil
	}
	return c.verifyNow(tx)
}

// verifyNow checks all of a transaction's signatures one by one, and caches
// the transaction if they verify.
func (c *sigCache) verifyNow(tx *DecodedTx) error {
	key := ed25519.PubKey(tx.Body.SignerPubKey)
	msgs, sigs := signedMessages(tx)
	for i := range msgs {
		if key.VerifySignature(msgs[i], sigs[i]) {
			continue
		}
		if i == 0 {
			return fmt.Errorf("%w: the transaction is not signed by signer %X", ErrBadSignature, tx.Signer)
		}
		return fmt.Errorf("%w: the uploader signature over (patient, category, hash) does not verify with the key of signer %X", ErrBadSignature, tx.Signer)
	}
	c.add(tx)
	return nil
}

// decodeAndPreverify decodes a block's transactions (nil where one does
// not decode) and batch-verifies the signatures of the uncached ones,
// caching those whose signatures are all valid. A transaction that fails
// here is verified again, one signature at a time, and refused by execTx,
// so batching only ever saves work.
func (c *sigCache) decodeAndPreverify(raws [][]byte) []*DecodedTx {
	decoded := make([]*DecodedTx, len(raws))
	bv := ed25519.NewBatchVerifier()
	type span struct {
		tx         *DecodedTx
		first, end int // its signatures' positions in the batch
	}
	var pending []span
	n := 0
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
		key := ed25519.PubKey(tx.Body.SignerPubKey)
		msgs, sigs := signedMessages(tx)
		s := span{tx: tx, first: n}
		ok := true
		for j := range msgs {
			if bv.Add(key, msgs[j], sigs[j]) != nil {
				ok = false // malformed: execTx will refuse it
				break
			}
			n++
		}
		if !ok {
			// Keep the batch aligned: the pairs already added stay, the
			// transaction is simply not cached.
			continue
		}
		s.end = n
		pending = append(pending, s)
	}
	if n < 2 {
		return decoded // nothing worth a batch: execTx verifies as usual
	}
	_, valid := bv.Verify()
	for _, s := range pending {
		all := true
		for j := s.first; j < s.end; j++ {
			all = all && j < len(valid) && valid[j]
		}
		if all {
			c.add(s.tx)
		}
	}
	return decoded
}
