package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestCopiesArePlaced: with params.storage_copies 1 of three storage
// organizations, each committed blob is copied by exactly the storage
// service app.CopyHolders names, by a pass and by the queue of new
// blocks alike; the others count it as placed elsewhere. A damaged copy
// a sidecar held is repaired wherever the placement puts the blob.
func TestCopiesArePlaced(t *testing.T) {
	e, orgs := placedEnv(t)
	services := map[string]*Server{}
	for _, org := range orgs {
		svc := e.chain.addMember("storage-"+org, emrv1.Role_ROLE_STORAGE_SERVICE, org)
		_, srv := peerOf(t, e, func(o *Options) { o.Storage = svc }, e.ts.URL)
		services[org] = srv
	}
	ctx := context.Background()
	const blobs = 12
	var keys []blobstore.Key
	for i := range blobs {
		keys = append(keys, committedBlob(t, e, []byte(fmt.Sprintf("encrypted note %d of a placed blob", i))))
	}
	params := e.chain.params

	// A new block's blob, from the queue: copied only where placed.
	queued := keys[0]
	for org, srv := range services {
		if err := srv.CheckStorageService(ctx); err != nil {
			t.Fatal(err)
		}
		srv.copyQueued(ctx, replicaJob{key: queued})
		if got, want := holds(t, srv, queued), app.HoldsCopy(params, org, queued.Sum[:]); got != want {
			t.Errorf("%s after the queue's copy of %s: holds %v, want %v (holders %v)", org, queued, got, want, app.CopyHolders(params, queued.Sum[:]))
		}
	}

	// A pass: every blob at exactly its holder.
	for org, srv := range services {
		before := boolInt(holds(t, srv, queued))
		rep, err := srv.ReplicatePass(ctx)
		if err != nil {
			t.Fatalf("%s: pass: %v", org, err)
		}
		if rep.Referenced != blobs || rep.Failed != 0 || rep.Missing != rep.Copied || rep.Copied+rep.PlacedElsewhere+before != blobs {
			t.Fatalf("%s: pass %+v (held %d before)", org, rep, before)
		}
	}
	placed := map[string]int{}
	for _, k := range keys {
		holders := app.CopyHolders(params, k.Sum[:])
		if len(holders) != 1 {
			t.Fatalf("holders of %s: %v, want one", k, holders)
		}
		for org, srv := range services {
			if got := holds(t, srv, k); got != (org == holders[0]) {
				t.Errorf("%s holds %s: %v; its holder is %s", org, k, got, holders[0])
			}
		}
		placed[holders[0]]++
	}
	t.Logf("blobs per organization: %v", placed)
	if len(placed) < 2 {
		t.Errorf("all %d blobs placed at one organization (%v): the placement does not spread", blobs, placed)
	}

	// A repair copies back a blob the sidecar held, even one placed
	// elsewhere (the uploader's own copy, say, or one read through).
	for org, srv := range services {
		if app.HoldsCopy(params, org, queued.Sum[:]) {
			continue
		}
		srv.copyQueued(ctx, replicaJob{key: queued, repair: true})
		if !holds(t, srv, queued) {
			t.Errorf("%s: the repair of %s copied nothing", org, queued)
		}
		break
	}
}

// TestRepairLeftToPass (from the review): a storage service that held a
// blob placed elsewhere and dropped it as damaged queues its repair; when
// that job does not fit in the queue (left to the next pass), the next
// pass copies it back. It counted the blob as placed elsewhere, and the
// copy was lost for good.
func TestRepairLeftToPass(t *testing.T) {
	e, orgs := placedEnv(t)
	ctx := context.Background()
	key := committedBlob(t, e, []byte("encrypted note whose copy is repaired"))
	params := e.chain.params
	var srv *Server
	for _, org := range orgs {
		if app.HoldsCopy(params, org, key.Sum[:]) {
			continue
		}
		svc := e.chain.addMember("storage-"+org, emrv1.Role_ROLE_STORAGE_SERVICE, org)
		_, srv = peerOf(t, e, func(o *Options) { o.Storage = svc }, e.ts.URL)
		break
	}
	if err := srv.CheckStorageService(ctx); err != nil {
		t.Fatal(err)
	}
	// It held a copy (as TestCopiesArePlaced's repair gives it one).
	srv.copyQueued(ctx, replicaJob{key: key, repair: true})
	if !holds(t, srv, key) {
		t.Fatal("setup: no copy held")
	}
	// The copy is dropped as damaged while the queue is full: what
	// dropDamagedCopy does after its checks.
	for len(srv.replicas.queue) < cap(srv.replicas.queue) {
		srv.replicas.queue <- replicaJob{key: blobstore.Key{}}
	}
	if err := srv.store.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	srv.replicas.repair(key)
	if srv.replicas.dropped.Load() == 0 {
		t.Fatal("setup: the repair was queued")
	}
	rep, err := srv.ReplicatePass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !holds(t, srv, key) {
		t.Fatalf("the pass did not copy back the dropped copy (pass %+v): a repair left to the next pass is never done", rep)
	}
}

// TestRepairForgottenWhenRestored (from the re-review): a repair left to
// the pass whose blob comes back another way (a GET's read-through, an
// upload) is forgotten by the next pass, as is one of a blob no committed
// record references (a pending upload the scrub dropped): remembered for
// good, they would fill the bound, and a real repair would then be lost.
func TestRepairForgottenWhenRestored(t *testing.T) {
	e, orgs := placedEnv(t)
	ctx := context.Background()
	body := []byte("encrypted note restored by a read-through")
	key := committedBlob(t, e, body)
	var srv *Server
	for _, org := range orgs {
		if !app.HoldsCopy(e.chain.params, org, key.Sum[:]) {
			svc := e.chain.addMember("storage-"+org, emrv1.Role_ROLE_STORAGE_SERVICE, org)
			_, srv = peerOf(t, e, func(o *Options) { o.Storage = svc }, e.ts.URL)
			break
		}
	}
	if err := srv.CheckStorageService(ctx); err != nil {
		t.Fatal(err)
	}
	for len(srv.replicas.queue) < cap(srv.replicas.queue) {
		srv.replicas.queue <- replicaJob{key: blobstore.Key{}}
	}
	srv.replicas.repair(key) // dropped as damaged with the queue full
	for i := range 1000 {    // pending uploads the scrub dropped
		var k blobstore.Key
		k.Sum[0], k.Sum[1], k.Sum[31] = byte(i>>8), byte(i), 0xff
		srv.replicas.repair(k)
	}
	// A GET reads it through before the pass.
	if err := srv.store.Put(ctx, key, bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ReplicatePass(ctx); err != nil {
		t.Fatal(err)
	}
	srv.replicas.mu.Lock()
	left := len(srv.replicas.repairs)
	srv.replicas.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d repairs remembered after a pass that needed none of them, want 0", left)
	}
}

// placedEnv is an env whose chain names three storage organizations,
// one of which keeps each blob.
func placedEnv(t *testing.T) (*env, []string) {
	e := newEnv(t, nil)
	orgs := []string{"hospital-b", "hospital-c", "hospital-d"}
	nameStorageOrgs(e, orgs...)
	e.chain.edit(func() { e.chain.params.StorageCopies = 1 })
	return e, orgs
}

func holds(t *testing.T, srv *Server, key blobstore.Key) bool {
	t.Helper()
	_, err := srv.store.Stat(context.Background(), key)
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
