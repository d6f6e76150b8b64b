package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	cmtversion "github.com/cometbft/cometbft/api/cometbft/version/v1"
	"github.com/cometbft/cometbft/crypto/ed25519"
	lightdb "github.com/cometbft/cometbft/light/store/db"
	cmttypes "github.com/cometbft/cometbft/types"
)

// testLightBlock is a light block at h, well-formed enough for the light
// store (which checks nothing): signatures are zeros.
func testLightBlock(vals *cmttypes.ValidatorSet, h int64) *cmttypes.LightBlock {
	var sum [32]byte
	binary.BigEndian.PutUint64(sum[:], uint64(h))
	sum = sha256.Sum256(sum[:])
	hdr := &cmttypes.Header{Version: cmtversion.Consensus{Block: 11}, ChainID: "memdb", Height: h, Time: time.Unix(1_700_000_000+h, 0).UTC(),
		ValidatorsHash: vals.Hash(), NextValidatorsHash: vals.Hash(), AppHash: sum[:],
		ProposerAddress: vals.Validators[0].Address}
	bid := cmttypes.BlockID{Hash: hdr.Hash(), PartSetHeader: cmttypes.PartSetHeader{Total: 1, Hash: sum[:]}}
	var sigs []cmttypes.CommitSig
	for _, v := range vals.Validators {
		sigs = append(sigs, cmttypes.CommitSig{BlockIDFlag: cmttypes.BlockIDFlagCommit, ValidatorAddress: v.Address, Timestamp: hdr.Time, Signature: make([]byte, 64)})
	}
	return &cmttypes.LightBlock{SignedHeader: &cmttypes.SignedHeader{Header: hdr, Commit: &cmttypes.Commit{Height: h, BlockID: bid, Signatures: sigs}}, ValidatorSet: vals}
}

// lightPruningSize is the number of headers the light client keeps (its
// default PruningSize, which openLight does not change).
const lightPruningSize = 1000

// TestMemStorePrunesFull: the in-memory light store (a Client without a
// Home) holding more than the light client's 1,000 headers prunes, as the
// light client does after each header it saves. On a bare MemDB, lightdb's
// Prune writes its batch (the MemDB's write lock) while its iterator's
// goroutine holds the read lock: it never returned (session 36's review,
// TestReviewMemStorePruneDeadlocks).
func TestMemStorePrunesFull(t *testing.T) {
	var vs []*cmttypes.Validator
	for range 4 {
		vs = append(vs, cmttypes.NewValidator(ed25519.GenPrivKey().PubKey(), 10))
	}
	vals := cmttypes.NewValidatorSet(vs)
	s := lightdb.New(newLightMemDB(), lightPrefix)
	const n = lightPruningSize + 100
	for h := int64(1); h <= n; h++ {
		if err := s.SaveLightBlock(testLightBlock(vals, h)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Prune(lightPruningSize) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Prune(%d) of the in-memory light store holding %d headers: no return after 10 s (deadlock)", lightPruningSize, n)
	}
	first, err := s.FirstLightBlockHeight()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastLightBlockHeight()
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != lightPruningSize || first != n-lightPruningSize+1 || last != n {
		t.Fatalf("after Prune: %d headers, %d..%d; want %d, %d..%d", s.Size(), first, last, lightPruningSize, n-lightPruningSize+1, n)
	}
	lb, err := s.LightBlockBefore(last)
	if err != nil || lb.Height != last-1 {
		t.Fatalf("LightBlockBefore(%d): %v %v", last, lb, err)
	}
}

// TestCopyIterDB: the copying iterators yield what MemDB's own do, forward
// and reverse, over open and closed ranges.
func TestCopyIterDB(t *testing.T) {
	mem := dbm.NewMemDB()
	d := copyIterDB{mem}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if err := d.Set([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	collect := func(it dbm.Iterator, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		var out []string
		for ; it.Valid(); it.Next() {
			if !bytes.Equal(it.Value(), append([]byte("v"), it.Key()...)) {
				t.Fatalf("key %s: value %s", it.Key(), it.Value())
			}
			out = append(out, string(it.Key()))
		}
		return out
	}
	b := func(s string) []byte {
		if s == "" {
			return nil
		}
		return []byte(s)
	}
	for _, r := range [][2]string{{"", ""}, {"b", ""}, {"", "d"}, {"b", "d"}, {"bb", "dd"}, {"x", "z"}} {
		for _, rev := range []bool{false, true} {
			var want, got []string
			if rev {
				want, got = collect(mem.ReverseIterator(b(r[0]), b(r[1]))), collect(d.ReverseIterator(b(r[0]), b(r[1])))
			} else {
				want, got = collect(mem.Iterator(b(r[0]), b(r[1]))), collect(d.Iterator(b(r[0]), b(r[1])))
			}
			if !slices.Equal(want, got) {
				t.Fatalf("range %q reverse=%v: %v, MemDB gives %v", r, rev, got, want)
			}
		}
	}
	// A write while a copying iterator is open does not wait for it.
	it, err := d.Iterator(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set([]byte("f"), []byte("vf")); err != nil {
		t.Fatal(err)
	}
	it.Close()
}
