package sidecar

import (
	"bytes"
	"context"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestIdleTimerSparesTheRateLimit: the idle timer runs while a read of the
// peer's body waits, not while this sidecar's own rate limit sleeps: a
// slow replication rate (10,000 B/s, a 25 kB blob, idle 200 ms) still
// copies the blob. (From the re-review: the transfer was cut.)
func TestIdleTimerSparesTheRateLimit(t *testing.T) {
	defer func(d time.Duration) { replicaIdle = d }(replicaIdle)
	replicaIdle = 200 * time.Millisecond
	e := newEnv(t, nil)
	nameStorageOrgs(e, "hospital-b")
	data := bytes.Repeat([]byte("0123456789"), 2_500)
	key := committedBlob(t, e, data)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	_, b := peerOf(t, e, func(o *Options) { o.Storage = svc; o.ReplicaBytesPerSecond = 10_000 }, e.ts.URL)
	if n, err := b.replicate(context.Background(), key); err != nil || n != int64(len(data)) {
		t.Fatalf("a %d-byte blob at 10,000 B/s from a peer that sends it at once: %d bytes, %v", len(data), n, err)
	}
}
