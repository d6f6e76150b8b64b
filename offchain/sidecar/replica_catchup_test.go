package sidecar

import (
	"bytes"
	"context"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestFreshBlobNotBackedOff: a peer reads new blocks into its index once a
// second at most, so the queue's copy of a blob committed within that
// second is refused not_committed. That is no missing blob: the next pass
// copies it. (From the re-review: it was backed off for two passes.)
func TestFreshBlobNotBackedOff(t *testing.T) {
	e := newEnv(t, nil)
	nameStorageOrgs(e, "hospital-b")
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	_, b := peerOf(t, e, func(o *Options) { o.Storage = svc }, e.ts.URL)
	ctx := context.Background()

	first := committedBlob(t, e, bytes.Repeat([]byte("encrypted note of block h "), 40))
	if _, err := b.replicate(ctx, first, e.chain.params.MaxBlobBytes); err != nil {
		t.Fatalf("the blob of block h: %v", err)
	}
	second := committedBlob(t, e, bytes.Repeat([]byte("encrypted note of block h+1 "), 40))
	if err := b.CheckStorageService(ctx); err != nil { // as replicaLoop does before it copies
		t.Fatal(err)
	}
	b.copyQueued(ctx, replicaJob{key: second}) // what replicaLoop does with a queued key
	time.Sleep(1100 * time.Millisecond)
	rep, perr := b.ReplicatePass(ctx)
	if perr != nil || rep.Copied != 1 {
		t.Fatalf("the next pass: %+v, %v; want the blob of block h+1 copied, not backed off", rep, perr)
	}
}
