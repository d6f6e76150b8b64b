package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// replicaGet asks url for the replica of key, signed by a (unsigned if
// nil), with header set on the request; it returns the blob a 200 seals
// to a (opened with a's key: the caller is a storage service).
func replicaGet(t *testing.T, url string, a StorageIdentity, key blobstore.Key, header map[string]string) ([]byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+ReplicaPath(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if a != nil {
		if err := SignRequest(req, a, ""); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	_, blob, err := openSealed(resp, resp.Body, replicaContext(key), a.EncPrivKey(), anySealedSize)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(blob)
}

// nameStorageOrgs makes orgs the chain's params.storage_organizations.
func nameStorageOrgs(e *env, orgs ...string) {
	e.chain.edit(func() { e.chain.params.StorageOrganizations = orgs })
}

// committedBlob uploads data to e's sidecar as its writer and commits a
// record of it in a new block.
func committedBlob(t *testing.T, e *env, data []byte) blobstore.Key {
	t.Helper()
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	e.chain.advance(time.Second) // a new block, with the record
	e.chain.addRecord(e.pid, sum, e.writer)
	return e.key(sum)
}

// TestReplicaServing: a sidecar serves GET ReplicaPath whole, to an active
// storage service of an organization params.storage_organizations names
// only, and only a blob a committed record references (never a pending
// upload, never read through from a peer).
func TestReplicaServing(t *testing.T) {
	e := newEnv(t, nil)
	data := bytes.Repeat([]byte("encrypted discharge letter "), 300)
	key := committedBlob(t, e, data)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	nameStorageOrgs(e, "hospital-b", "hospital-c")

	got, err := replicaGet(t, e.ts.URL, svc, key, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("replica of a committed blob: %d of %d bytes, %v", len(got), len(data), err)
	}

	pending := bytes.Repeat([]byte("not yet recorded "), 50)
	if _, err := e.put(e.writer, pending); err != nil {
		t.Fatal(err)
	}
	suspended := e.chain.addMember("storage-c", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-c")
	e.chain.setStatus(suspended, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	emergency := e.chain.addMember("emergency-b", emrv1.Role_ROLE_EMERGENCY_SERVICE, "hospital-b")
	unnamed := e.chain.addMember("storage-r", emrv1.Role_ROLE_STORAGE_SERVICE, "research-institute")
	var absent blobstore.Key
	absent.Owner, absent.Sum = key.Owner, sha256.Sum256([]byte("never uploaded"))
	e.chain.advance(time.Second)
	e.chain.addRecord(e.pid, absent.Sum, e.writer)
	e.srv.replicaCatchUp.Store(0) // a second later: requests read new blocks once a second

	for _, c := range []struct {
		name   string
		signer StorageIdentity
		key    blobstore.Key
		header map[string]string
		status int
		reason string
	}{
		{"unsigned", nil, key, nil, http.StatusUnauthorized, ""},
		{"a clinician", e.writer, key, nil, http.StatusForbidden, "only an active storage service"},
		{"the record's reader", e.reader, key, nil, http.StatusForbidden, "only an active storage service"},
		{"an emergency service", emergency, key, nil, http.StatusForbidden, "role is emergency service"},
		{"a suspended storage service", suspended, key, nil, http.StatusForbidden, "is suspended"},
		{"a storage service of an organization not named", unnamed, key, nil, http.StatusForbidden, "does not name organization \"research-institute\""},
		{"a pending upload", svc, e.key(sha256.Sum256(pending)), nil, http.StatusNotFound, "no committed record"},
		{"a committed blob not held", svc, absent, nil, http.StatusNotFound, "not stored on this sidecar"},
		{"a range", svc, key, map[string]string{"Range": "bytes=0-9"}, http.StatusBadRequest, "copied whole"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := replicaGet(t, e.ts.URL, c.signer, c.key, c.header)
			wantStatus(t, err, c.status, c.reason)
			if len(got) != 0 {
				t.Fatalf("%d bytes served", len(got))
			}
		})
	}
}

// TestReplicatePass: a sidecar with a storage service identity copies
// from its peers every committed blob it does not hold, a page of the
// reference index at a time; it copies nothing twice, no pending upload,
// and nothing a peer forges.
func TestReplicatePass(t *testing.T) {
	defer func(p int) { replicaPage = p }(replicaPage)
	replicaPage = 2
	e := newEnv(t, nil) // hospital A's sidecar: holds the uploads
	var keys []blobstore.Key
	var blobs [][]byte
	for i := range 5 {
		data := bytes.Repeat([]byte(fmt.Sprintf("encrypted report %d ", i)), 100+i)
		keys = append(keys, committedBlob(t, e, data))
		blobs = append(blobs, data)
	}
	pending := bytes.Repeat([]byte("pending "), 99)
	if _, err := e.put(e.writer, pending); err != nil {
		t.Fatal(err)
	}
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	nameStorageOrgs(e, "hospital-b")
	_, b := peerOf(t, e, func(o *Options) { o.Storage = svc }, e.ts.URL)
	if err := b.CheckStorageService(context.Background()); err != nil {
		t.Fatal(err)
	}
	// B holds one of them already: it is not copied again.
	if err := b.store.Put(context.Background(), keys[2], bytes.NewReader(blobs[2]), int64(len(blobs[2]))); err != nil {
		t.Fatal(err)
	}

	rep, err := b.ReplicatePass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Referenced != 5 || rep.Missing != 4 || rep.Copied != 4 || rep.Failed != 0 {
		t.Fatalf("first pass: %+v; want 5 referenced, 4 missing and copied", rep)
	}
	for i, k := range keys {
		if got := readStored(t, b, k); !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %d: B holds %d of %d bytes", i, len(got), len(blobs[i]))
		}
	}
	if _, err := b.store.Stat(context.Background(), e.key(sha256.Sum256(pending))); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("a pending upload was copied: %v", err)
	}
	if n := testutil.ToFloat64(b.metrics.replicated); n != 4 {
		t.Fatalf("blobs_replicated_total is %v, want 4", n)
	}
	if rep, err := b.ReplicatePass(context.Background()); err != nil || rep.Missing != 0 || rep.Copied != 0 {
		t.Fatalf("second pass: %+v, %v; want nothing missing", rep, err)
	}

	// A peer that serves other bytes under the key, or more than the
	// chain allows, leaves nothing behind.
	forged := bytes.Repeat([]byte("forged! "), 100)
	var huge bool
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if huge {
			sealedAnswer(w, r, svc, nil, 1<<20+1)
			return
		}
		sealedAnswer(w, r, svc, forged, int64(len(forged)))
	}))
	t.Cleanup(liar.Close)
	_, c := peerOf(t, e, func(o *Options) { o.Storage = svc }, liar.URL)
	rep, err = c.ReplicatePass(context.Background())
	if err != nil || rep.Failed != 5 || rep.Copied != 0 {
		t.Fatalf("pass against a lying peer: %+v, %v; want 5 failed", rep, err)
	}
	if !bytes.Contains([]byte(rep.FirstFailure), []byte("does not hash")) && !bytes.Contains([]byte(rep.FirstFailure), []byte("size")) {
		t.Fatalf("first failure %q does not say the bytes are not the blob", rep.FirstFailure)
	}
	huge = true
	if _, err := c.replicate(context.Background(), keys[0], e.chain.params.MaxBlobBytes); err == nil || !bytes.Contains([]byte(err.Error()), []byte("above the 1048576 expected")) {
		t.Fatalf("a peer announcing more than max_blob_bytes: %v", err)
	}
	for _, k := range keys {
		if _, err := c.store.Stat(context.Background(), k); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("a forged copy was kept: %v", err)
		}
	}
}

// readStored reads srv's stored copy of key whole.
func readStored(t *testing.T, srv *Server, key blobstore.Key) []byte {
	t.Helper()
	rc, _, err := srv.store.Get(context.Background(), key, 0, -1)
	if err != nil {
		return nil
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReplicationFollowsTheChain: a running sidecar with a storage service
// identity says so once its node can tell (not before), copies a blob soon
// after its record commits, and copies back a copy its scrub dropped as
// damaged (the repair the scrub could not make without a member's request
// to forward).
func TestReplicationFollowsTheChain(t *testing.T) {
	defer func(p, f time.Duration) { replicaPoll, replicaFirstPass = p, f }(replicaPoll, replicaFirstPass)
	replicaPoll, replicaFirstPass = 20*time.Millisecond, time.Hour
	e := newEnv(t, nil)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	nameStorageOrgs(e, "hospital-b")
	store, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := &lines{}
	b, err := New(Options{Store: store, Chain: e.chain, SweepInterval: -1, ScrubInterval: -1, Peers: []string{e.ts.URL}, Storage: svc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// A node still starting cannot say whether the key is a storage
	// service's: that is not logged as a key the peers will refuse.
	e.chain.edit(func() { e.chain.down = true })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	time.Sleep(5 * replicaPoll)
	e.chain.edit(func() { e.chain.down = false })
	waitFor(t, "B to log that it copies as a storage service", func() bool { return len(log.with("as storage service")) == 1 })
	if refused := log.with("will refuse"); len(refused) != 0 {
		t.Fatalf("a chain not yet up was logged as a refused key: %q", refused)
	}

	data := bytes.Repeat([]byte("encrypted MRI report "), 400)
	key := committedBlob(t, e, data)
	waitFor(t, "B to copy the newly committed blob", func() bool { return bytes.Equal(readStored(t, b, key), data) })

	p := store.Path(key)
	damaged := bytes.Clone(data)
	damaged[len(damaged)/2] ^= 1
	if err := os.WriteFile(p, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := b.Scrub(context.Background())
	if err != nil || rep.Dropped != 1 {
		t.Fatalf("scrub: %+v, %v; want the damaged copy dropped", rep, err)
	}
	waitFor(t, "B to copy back the blob its scrub dropped", func() bool { return bytes.Equal(readStored(t, b, key), data) })
	if n := testutil.ToFloat64(b.metrics.replicated); n != 2 {
		t.Fatalf("blobs_replicated_total is %v, want 2 (the replica and its repair)", n)
	}
}

// waitFor polls cond every 10 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestCheckStorageService: the sidecar tells its operator when the chain
// does not have its storage key as an active storage service of an
// organization params.storage_organizations names.
func TestCheckStorageService(t *testing.T) {
	e := newEnv(t, nil)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	check := func(signer StorageIdentity) error {
		_, srv := peerOf(t, e, func(o *Options) { o.Storage = signer }, e.ts.URL)
		return srv.CheckStorageService(context.Background())
	}
	if err := check(svc); !errors.Is(err, errNotAStorageService) || !strings.Contains(err.Error(), "does not name") {
		t.Fatalf("a service of an organization not named: %v", err)
	}
	nameStorageOrgs(e, "hospital-b")
	if err := check(svc); err != nil {
		t.Fatal(err)
	}
	if err := check(e.writer); !errors.Is(err, errNotAStorageService) {
		t.Fatalf("a clinician's key: %v", err)
	}
	otherEnc := &actor{KeyRecipient: KeyRecipient{KeySigner: svc.KeySigner, Enc: e.writer.Enc}, member: svc.member}
	if err := check(otherEnc); !errors.Is(err, errNotAStorageService) || !strings.Contains(err.Error(), "encryption key") {
		t.Fatalf("the service's signing key with another encryption key (the peers would seal to the chain's): %v", err)
	}
	e.chain.setStatus(svc, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	if err := check(svc); !errors.Is(err, errNotAStorageService) {
		t.Fatalf("a suspended service: %v", err)
	}
}
