package sidecar

// Tests from the security review of the first replication (each failed on
// it), adapted to the rule that followed: only organizations the
// consortium names keep copies.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"
	dbm "github.com/cosmos/cosmos-db"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestReplicaNotARouteAroundConsent: the patient revoked hospital B's
// clinician, whom the sidecar then refuses; a storage service hospital B's
// registrar registers, or one of a research institute, gets no copy
// either, while the consortium does not name their organizations.
func TestReplicaNotARouteAroundConsent(t *testing.T) {
	e := newEnv(t, nil)
	data, sum, rec := uploadedRecord(t, e)
	nameStorageOrgs(e, "hospital-a")
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	if _, err := e.get(e.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil); err != nil {
		t.Fatalf("the reader's read before revocation: %v", err)
	}
	e.chain.revoke(e.rperm)
	_, err := e.get(e.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil)
	wantStatus(t, err, http.StatusForbidden, "")
	for _, org := range []string{"hospital-b", "research-institute"} {
		svc := e.chain.addMember("storage-"+org, emrv1.Role_ROLE_STORAGE_SERVICE, org)
		got, err := replicaGet(t, e.ts.URL, svc, e.key(sum), nil)
		wantStatus(t, err, http.StatusForbidden, "does not name organization")
		if bytes.Equal(got, data) {
			t.Fatalf("a storage service of %s got the ciphertext", org)
		}
	}
}

// TestUnknownStorageKeyLocksNothingOut: a sidecar whose storage key the
// chain does not know asks its peers nothing (each refusal would count
// against its host in the peers' failed-authentication limits, which its
// members' read-throughs share), and a member's read through it still
// gets the blob from the peer.
func TestUnknownStorageKeyLocksNothingOut(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.FailedAuthPerMinute = 3 }) // hospital A
	nameStorageOrgs(e, "hospital-b")
	for i := range 3 {
		committedBlob(t, e, bytes.Repeat([]byte(fmt.Sprintf("encrypted note %d ", i)), 50))
	}
	unregistered := &actor{KeyRecipient: KeyRecipient{KeySigner: KeySigner{Key: ed25519.GenPrivKeyFromSecret([]byte("storage key not on chain"))}, Enc: e.writer.Enc}}
	b, bSrv := peerOf(t, e, func(o *Options) { o.Storage = unregistered }, e.ts.URL)
	if _, err := bSrv.ReplicatePass(context.Background()); err == nil {
		t.Fatal("a pass with a key the chain does not know ran")
	}
	data := bytes.Repeat([]byte("encrypted lab report "), 500)
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecord(e.pid, sum, e.writer)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	var buf bytes.Buffer
	_, err := NewClient(b.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
	if err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("a member's read through B: %v (status %d)", err, statusOf(err))
	}
}

// TestStalledPeerIsCutOff: a peer that sends a replica's headers and then
// nothing is cut off after peerIdle, and the next peer, which holds the
// blob, serves it; the stalled one is then left alone.
func TestStalledPeerIsCutOff(t *testing.T) {
	defer func(d time.Duration) { peerIdle = d }(peerIdle)
	peerIdle = 200 * time.Millisecond
	e := newEnv(t, nil)
	nameStorageOrgs(e, "hospital-b")
	data := bytes.Repeat([]byte("encrypted CT report "), 200)
	key := committedBlob(t, e, data)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	_, b := peerOf(t, e, func(o *Options) { o.Storage = svc }, stallingPeer(t, data, svc), e.ts.URL)
	start := time.Now()
	if n, err := b.replicate(context.Background(), key, e.chain.params.MaxBlobBytes); err != nil || n != int64(len(data)) {
		t.Fatalf("replicate past a stalled peer: %d bytes, %v", n, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a stalled peer held the copy for %v", took)
	}
}

// stallingPeer is a peer that answers every request with data's length
// and its first 10 bytes, and then sends nothing until the test ends. With
// sealTo, it answers as a replica sealed to that storage service.
func stallingPeer(t *testing.T, data []byte, sealTo *actor) string {
	release := make(chan struct{})
	staller := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if sealTo != nil {
			sealFor(w, r, sealTo, int64(len(data)))
		}
		w.WriteHeader(http.StatusOK)
		w.Write(data[:10])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); staller.Close() })
	return staller.URL
}

// TestUnknownKeysCostNoChainReads: replica requests for keys no block
// referenced do not make the sidecar read its node's blocks each time.
func TestUnknownKeysCostNoChainReads(t *testing.T) {
	e := newEnv(t, nil)
	committedBlob(t, e, []byte("one committed blob"))
	if _, err := e.srv.refs.catchUp(context.Background(), e.chain, e.srv.log); err != nil {
		t.Fatal(err)
	}
	nameStorageOrgs(e, "hospital-b")
	svc := e.chain.addMember("storage-z", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	e.chain.mu.Lock()
	before := len(e.chain.blockCalls)
	e.chain.mu.Unlock()
	const n = 50
	for i := range n {
		var k blobstore.Key
		k.Owner, k.Sum = e.key([32]byte{}).Owner, sha256.Sum256([]byte(strconv.Itoa(i)))
		if _, err := replicaGet(t, e.ts.URL, svc, k, nil); statusOf(err) != http.StatusNotFound {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	e.chain.mu.Lock()
	calls := len(e.chain.blockCalls) - before
	e.chain.mu.Unlock()
	if calls > n/10 {
		t.Fatalf("%d replica requests for keys no record references made the sidecar read blocks %d times", n, calls)
	}
}

// TestSlowCopiesComplete: a copy at a slow replication rate (10,000 B/s,
// a 25 kB blob, from a peer that sends it at once) completes
//   - though it takes longer than peerTimeout: the deadline grows with the
//     blob's size at the rate (from the review: it was never copied);
//   - though each read's wait on the rate limit is longer than peerIdle:
//     the idle timer runs during the peer's reads only (from the re-review:
//     the transfer was cut).
func TestSlowCopiesComplete(t *testing.T) {
	defer func(p, i time.Duration) { peerTimeout, peerIdle = p, i }(peerTimeout, peerIdle)
	for _, c := range []struct {
		name              string
		peerTimeout, idle time.Duration
	}{
		{"longer than peerTimeout", time.Second, peerIdle},
		{"rate-limit waits longer than peerIdle", peerTimeout, 200 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			peerTimeout, peerIdle = c.peerTimeout, c.idle
			e := newEnv(t, nil)
			nameStorageOrgs(e, "hospital-b")
			data := bytes.Repeat([]byte("0123456789"), 2_500)
			key := committedBlob(t, e, data)
			svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
			_, b := peerOf(t, e, func(o *Options) { o.Storage = svc; o.ReplicaBytesPerSecond = 10_000 }, e.ts.URL)
			if n, err := b.replicate(context.Background(), key, e.chain.params.MaxBlobBytes); err != nil || n != int64(len(data)) {
				t.Fatalf("a %d-byte blob at 10,000 B/s: %d bytes, %v", len(data), n, err)
			}
		})
	}
}

// TestMissingBlobsBackOff: records whose blobs nobody uploaded are asked
// for at one pass, and not again at the next: each miss doubles the passes
// until the next ask.
func TestMissingBlobsBackOff(t *testing.T) {
	e := newEnv(t, nil)
	nameStorageOrgs(e, "hospital-b")
	for i := range 6 {
		e.chain.advance(time.Second)
		e.chain.addRecord(e.pid, sha256.Sum256([]byte(fmt.Sprintf("never uploaded %d", i))), e.writer)
	}
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	_, b := peerOf(t, e, func(o *Options) { o.Storage = svc }, e.ts.URL)
	for i, want := range []ReplicaReport{
		{Referenced: 6, Missing: 6, Failed: 6},
		{Referenced: 6, Missing: 6, BackingOff: 6},
		{Referenced: 6, Missing: 6, Failed: 6},
		{Referenced: 6, Missing: 6, BackingOff: 6},
	} {
		rep, err := b.ReplicatePass(context.Background())
		rep.FirstFailure = ""
		if err != nil || rep != want {
			t.Fatalf("pass %d: %+v, %v; want %+v", i+1, rep, err, want)
		}
	}
}

// TestReplicaOfBlobAboveLoweredLimit: a blob committed while
// params.max_blob_bytes allowed it stays a committed blob after the
// consortium lowers the limit (the chain checks a size when the record
// commits), and a storage service copies it: the copy is bounded by the
// size its record gives it (the reference index), not only by today's
// limit.
func TestReplicaOfBlobAboveLoweredLimit(t *testing.T) {
	e := newEnv(t, nil)
	data := bytes.Repeat([]byte("encrypted whole-slide image "), 2000) // 56,000 bytes
	key := committedBlob(t, e, data)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	nameStorageOrgs(e, "hospital-b")
	e.chain.edit(func() { e.chain.params.MaxBlobBytes = uint64(len(data)) / 2 })

	_, b := peerOf(t, e, func(o *Options) { o.Storage = svc }, e.ts.URL)
	rep, err := b.ReplicatePass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Copied != 1 || !bytes.Equal(readStored(t, b, key), data) {
		t.Fatalf("%+v: a committed blob larger than today's max_blob_bytes was not copied", rep)
	}
}

// TestRefIndexKeepsTheLargestSize: the index keeps, per blob, the largest
// size a committed record or share gives it (in one batch and across
// batches), and reads an entry written before sizes were kept as size 0.
func TestRefIndexKeepsTheLargestSize(t *testing.T) {
	db := dbm.NewMemDB()
	refs, err := newRefIndex(db)
	if err != nil {
		t.Fatal(err)
	}
	a, b, old := blobstore.Key{Sum: blobstore.Sum{1}}, blobstore.Key{Sum: blobstore.Sum{2}}, blobstore.Key{Sum: blobstore.Sum{3}}
	if err := db.Set(refBlobKey(old), []byte{1}); err != nil {
		t.Fatal(err)
	}
	cur, err := refs.add(refCursor{}, []BlockBlobs{{Height: 1, Blobs: []CommittedBlob{{a, 700}, {a, 900}, {a, 800}, {b, 50}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refs.add(cur, []BlockBlobs{{Height: 2, Blobs: []CommittedBlob{{a, 100}, {b, 60}, {old, 0}}}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  blobstore.Key
		want uint64
	}{{a, 900}, {b, 60}, {old, 0}, {blobstore.Key{Sum: blobstore.Sum{4}}, 0}} {
		if got, err := refs.size(c.key); err != nil || got != c.want {
			t.Errorf("size of %s = %d, %v; want %d", c.key, got, err, c.want)
		}
	}
	if ok, err := refs.has(old); err != nil || !ok {
		t.Fatalf("an entry written before sizes were kept: has = %v, %v", ok, err)
	}
}
