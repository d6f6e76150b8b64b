package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestScrub: a pass reads every stored blob, in batches, and drops the
// copies whose bytes do not hash to their SHA-256 — a flipped bit or a
// truncation — and only those; intact blobs are kept and counted.
func TestScrub(t *testing.T) {
	e := newEnv(t, nil)
	defer func(b int) { scrubBatch = b }(scrubBatch)
	scrubBatch = 2 // five blobs: three listings
	ctx := context.Background()
	var keys []blobstore.Key
	for i := range 5 {
		data := bytes.Repeat(fmt.Appendf(nil, "blob %d ", i), 1000+i)
		key := blobstore.Key{Owner: blobstore.Owner{byte(i)}, Sum: blobstore.Sum(sha256.Sum256(data))}
		if err := e.store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	flip, cut := e.store.Path(keys[1]), e.store.Path(keys[3])
	b, err := os.ReadFile(flip)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x01 // the last byte: held back by a GET, read by the scrub
	if err := os.WriteFile(flip, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(cut, 100); err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, key := range keys {
		info, err := e.store.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		stored += info.Size
	}
	rep, err := e.srv.Scrub(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checked != 5 || rep.Bytes != stored || rep.Damaged != 2 || rep.Dropped != 2 || rep.Busy != 0 || rep.Errors != 0 {
		t.Fatalf("scrub report %+v, want 5 checked (%d bytes), 2 damaged and dropped", rep, stored)
	}
	if n := testutil.ToFloat64(e.srv.metrics.damaged); n != 2 {
		t.Fatalf("damaged_copies_total %v, want 2", n)
	}
	for i, key := range keys {
		_, err := e.store.Stat(ctx, key)
		if damaged := i == 1 || i == 3; damaged != errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("blob %d (damaged %v) after the scrub: %v", i, damaged, err)
		}
	}
	// A second pass finds the intact three.
	if rep, err := e.srv.Scrub(ctx); err != nil || rep.Checked != 3 || rep.Damaged != 0 {
		t.Fatalf("second pass: %+v, %v", rep, err)
	}
}

// TestScrubRate: the scrub's reads wait until their bytes are due at the
// configured rate (a context that ends stops the wait), and a rate that is
// not positive never waits.
func TestScrubRate(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := newRateLimit(1000).wait(ended, 10_000); !errors.Is(err, context.Canceled) {
		t.Fatalf("10 KB at 1 KB/s: %v, want a wait (cut by the context)", err)
	}
	if err := newRateLimit(-1).wait(ended, 10_000); err != nil {
		t.Fatalf("no bound: %v", err)
	}
	if err := newRateLimit(1<<40).wait(ended, 10); err != nil {
		t.Fatalf("10 bytes at 1 TB/s are due at once: %v", err)
	}
}
