package client

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"

	cmtcrypto "github.com/cometbft/cometbft/api/cometbft/crypto/v1"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	ics23 "github.com/cosmos/ics23/go"
	"golang.org/x/sync/errgroup"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// provenReader is a store.Reader over exactly the key/values a node proved
// against a verified AppHash. Reading a key it has no proof for is a
// verification failure (remembered in missing: the querier may wrap or
// flatten the error it gets); iteration yields the proven present keys in
// the range, in order.
type provenReader struct {
	keys    [][]byte          // proven present keys, sorted
	values  map[string][]byte // key → value; nil value = proven absent
	missing []byte            // first key read without a proof
	// iterations records every range the querier walked and what it saw,
	// for the completeness proofs (proveRangesComplete).
	iterations []*iteration
}

// iteration is one range walk of the querier: the keys it looked at, in
// order, and whether it walked to the end of the range (or stopped early).
type iteration struct {
	start, end []byte
	ascending  bool
	visited    [][]byte
	exhausted  bool
}

var _ store.Reader = (*provenReader)(nil)

// newProvenReader checks every proof against root (the AppHash of the
// header after the queried height) and keeps what they prove.
func newProvenReader(root []byte, proofs []*emrv1.StoreProof) (*provenReader, error) {
	r := &provenReader{values: make(map[string][]byte, len(proofs))}
	for i, p := range proofs {
		if len(p.GetKey()) == 0 {
			return nil, verificationError("proof %d has no key", i)
		}
		if _, dup := r.values[string(p.Key)]; dup {
			return nil, verificationError("key %X is proven twice", p.Key)
		}
		if err := verifyKey(root, p.Key, p.Value, app.FromProofOps(p.Ops)); err != nil {
			return nil, verificationError("proof of key %X against app hash %X: %v", p.Key, root, err)
		}
		if len(p.Value) == 0 {
			r.values[string(p.Key)] = nil
		} else {
			r.values[string(p.Key)] = bytes.Clone(p.Value)
			r.keys = append(r.keys, bytes.Clone(p.Key))
		}
	}
	sort.Slice(r.keys, func(i, j int) bool { return bytes.Compare(r.keys[i], r.keys[j]) < 0 })
	return r, nil
}

// verifyKey checks proof against root: that key holds value or, when
// value is empty, that key is absent.
func verifyKey(root, key, value []byte, proof *cmtcrypto.ProofOps) error {
	if len(value) == 0 {
		return store.VerifyAbsence(root, key, proof)
	}
	return store.VerifyMembership(root, key, value, proof)
}

func (r *provenReader) Get(key []byte) ([]byte, error) {
	v, ok := r.values[string(key)]
	if !ok {
		if r.missing == nil {
			r.missing = bytes.Clone(key)
		}
		return nil, verificationError("the answer depends on key %X, which the node did not prove", key)
	}
	return bytes.Clone(v), nil
}

func (r *provenReader) Has(key []byte) (bool, error) {
	v, err := r.Get(key)
	return v != nil, err
}

func (r *provenReader) Iterator(start, end []byte, ascending bool) (store.Iterator, error) {
	var sel [][]byte
	for _, k := range r.keys {
		if len(start) > 0 && bytes.Compare(k, start) < 0 {
			continue
		}
		if len(end) > 0 && bytes.Compare(k, end) >= 0 {
			continue
		}
		sel = append(sel, k)
	}
	if !ascending {
		slices.Reverse(sel)
	}
	rec := &iteration{start: bytes.Clone(start), end: bytes.Clone(end), ascending: ascending}
	r.iterations = append(r.iterations, rec)
	return &sliceIterator{keys: sel, values: r.values, rec: rec}, nil
}

type sliceIterator struct {
	keys   [][]byte
	values map[string][]byte
	i      int
	rec    *iteration
}

func (it *sliceIterator) Valid() bool {
	if it.i >= len(it.keys) {
		it.rec.exhausted = true
		return false
	}
	return true
}

func (it *sliceIterator) Next() { it.i++ }

func (it *sliceIterator) Key() []byte {
	k := it.keys[it.i]
	if n := len(it.rec.visited); n == 0 || !bytes.Equal(it.rec.visited[n-1], k) {
		it.rec.visited = append(it.rec.visited, k)
	}
	return k
}
func (it *sliceIterator) Value() []byte { return it.values[string(it.keys[it.i])] }
func (it *sliceIterator) Error() error  { return nil }
func (it *sliceIterator) Close() error  { return nil }

// errUnprovableRange is what lazyReader's Iterator returns: single-key
// proofs cannot show that a range holds nothing else.
var errUnprovableRange = errors.New("a key range cannot be proven key by key")

// lazyReader fetches and verifies each key it is asked for through the raw
// store path, all at one height, against root (the AppHash of the verified
// header height+1). It is used to check a node's "no": re-running the
// query over it shows whether the proven state really fails the same way.
type lazyReader struct {
	ctx      context.Context
	c        *Client
	height   int64
	root     []byte
	err      error // first verification or transport failure
	iterated bool
}

var _ store.Reader = (*lazyReader)(nil)

func (r *lazyReader) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return err
}

func (r *lazyReader) Get(key []byte) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	ctx, cancel := r.c.withTimeout(r.ctx)
	defer cancel()
	res, err := r.c.rpc.ABCIQueryWithOptions(ctx, app.RawKeyPath, key, rpcclient.ABCIQueryOptions{Height: r.height, Prove: true})
	if err != nil {
		return nil, r.fail(fmt.Errorf("query key %X: %w", key, err))
	}
	q := res.Response
	if q.Code != 0 {
		// Never the node's own error: passed on, it would let the node
		// choose the failure of the query being checked ("not found",
		// "revoked") without proving anything.
		return nil, r.fail(verificationError("the node refuses to prove key %X at height %d: %s (%s code %d)", key, r.height, q.Log, q.Codespace, q.Code))
	}
	if q.Height != r.height {
		return nil, r.fail(wrongHeight(fmt.Sprintf("key %X", key), r.height, q.Height))
	}
	if !bytes.Equal(q.Key, key) && len(q.Key) != 0 {
		return nil, r.fail(verificationError("asked for key %X, the node answered for %X", key, q.Key))
	}
	if err := verifyKey(r.root, key, q.Value, q.ProofOps); err != nil {
		return nil, r.fail(verificationError("proof of key %X at height %d: %v", key, r.height, err))
	}
	if len(q.Value) == 0 {
		// Proven absent: nil, as newProvenReader holds it. A node's empty
		// value ("" rather than none) would read as a present key holding
		// nothing, and the re-run could then fail where the state does not.
		return nil, nil
	}
	return q.Value, nil
}

func (r *lazyReader) Has(key []byte) (bool, error) {
	v, err := r.Get(key)
	return v != nil, err
}

func (r *lazyReader) Iterator(_, _ []byte, _ bool) (store.Iterator, error) {
	r.iterated = true
	return nil, errUnprovableRange
}

// emptyRanges lists the key ranges [lo, hi) (hi nil = unbounded) that an
// honest state must have empty for the querier to have seen what it saw:
// before, between and (when it walked to the end) after the visited keys.
func (it *iteration) emptyRanges() [][2][]byte {
	succ := func(k []byte) []byte { return append(bytes.Clone(k), 0) }
	lowest := it.start
	if len(lowest) == 0 {
		lowest = []byte{0}
	}
	var out [][2][]byte
	add := func(lo, hi []byte) {
		if len(hi) == 0 || bytes.Compare(lo, hi) < 0 {
			out = append(out, [2][]byte{lo, hi})
		}
	}
	v := it.visited
	if it.ascending {
		for i := range v {
			lo := lowest
			if i > 0 {
				lo = succ(v[i-1])
			}
			add(lo, v[i])
		}
		if it.exhausted {
			lo := lowest
			if len(v) > 0 {
				lo = succ(v[len(v)-1])
			}
			add(lo, it.end)
		}
		return out
	}
	for i := range v {
		hi := it.end
		if i > 0 {
			hi = v[i-1]
		}
		add(succ(v[i]), hi)
	}
	if it.exhausted {
		hi := it.end
		if len(v) > 0 {
			hi = v[len(v)-1]
		}
		add(lowest, hi)
	}
	return out
}

// proveEmpty checks, with one raw-key proof at height against root, that
// no key lies in [lo, hi): lo itself is absent and the right neighbour in
// its non-existence proof (authenticated by the proof) is at or past hi.
func (c *Client) proveEmpty(ctx context.Context, height int64, root, lo, hi []byte) error {
	qctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := c.rpc.ABCIQueryWithOptions(qctx, app.RawKeyPath, lo, rpcclient.ABCIQueryOptions{Height: height, Prove: true})
	if err != nil {
		return fmt.Errorf("range proof at key %X: %w", lo, err)
	}
	q := res.Response
	if q.Code != 0 {
		return verificationError("the node refuses to prove the range at key %X: %s", lo, q.Log)
	}
	if q.Height != height {
		return wrongHeight(fmt.Sprintf("range proof at key %X", lo), height, q.Height)
	}
	if len(q.Value) > 0 {
		if err := store.VerifyMembership(root, lo, q.Value, q.ProofOps); err != nil {
			return verificationError("range proof at key %X: %v", lo, err)
		}
		return verificationError("the node left key %X out of a list", lo)
	}
	if err := store.VerifyAbsence(root, lo, q.ProofOps); err != nil {
		return verificationError("range proof at key %X: %v", lo, err)
	}
	var cp ics23.CommitmentProof
	if err := cp.Unmarshal(q.ProofOps.Ops[0].Data); err != nil || cp.GetNonexist() == nil {
		return verificationError("range proof at key %X is not a non-existence proof", lo)
	}
	if right := cp.GetNonexist().Right; right != nil && (len(hi) == 0 || bytes.Compare(right.Key, hi) < 0) {
		return verificationError("the node left key %X out of a list", right.Key)
	}
	return nil
}

// rangeProofsAtOnce bounds the gap proofs proveRangesComplete asks for
// at once: a list of n items needs about n of them, one round trip each.
const rangeProofsAtOnce = 8

// proveRangesComplete proves every range the querier walked complete,
// rangeProofsAtOnce proofs at a time. Once a proof fails no new ones are
// started; the error is the first failure in key order among those asked,
// as one at a time would have returned it.
func (c *Client) proveRangesComplete(ctx context.Context, height int64, root []byte, pr *provenReader) error {
	var ranges [][2][]byte
	for _, it := range pr.iterations {
		ranges = append(ranges, it.emptyRanges()...)
	}
	errs := make([]error, len(ranges))
	var (
		g      errgroup.Group
		failed atomic.Bool
	)
	g.SetLimit(rangeProofsAtOnce)
	for i, r := range ranges {
		if failed.Load() {
			break
		}
		g.Go(func() error {
			if errs[i] = c.proveEmpty(ctx, height, root, r[0], r[1]); errs[i] != nil {
				failed.Store(true)
			}
			return nil // errs keeps them in key order
		})
	}
	_ = g.Wait()
	return cmp.Or(errs...)
}
