package sidecar

import (
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
	e := newEnv(t, nil)
	orgs := []string{"hospital-b", "hospital-c", "hospital-d"}
	nameStorageOrgs(e, orgs...)
	e.chain.edit(func() { e.chain.params.StorageCopies = 1 })
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
