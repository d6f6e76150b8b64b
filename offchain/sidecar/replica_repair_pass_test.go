package sidecar

import (
	"context"
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestRepairLeftToPass (from the review): a storage service that held a
// blob placed elsewhere and dropped it as damaged queues its repair; when
// that job does not fit in the queue (left to the next pass), the next
// pass copies it back. It counted the blob as placed elsewhere, and the
// copy was lost for good.
func TestRepairLeftToPass(t *testing.T) {
	e := newEnv(t, nil)
	orgs := []string{"hospital-b", "hospital-c", "hospital-d"}
	nameStorageOrgs(e, orgs...)
	e.chain.edit(func() { e.chain.params.StorageCopies = 1 })
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
