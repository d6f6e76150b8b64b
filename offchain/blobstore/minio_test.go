package blobstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/emrchain/emrchain/offchain/blobstore/miniotest"
)

var bucketSeq atomic.Int64

// TestMinIOConformance runs the conformance suite against a real MinIO
// server (one server, a fresh bucket per subtest, created by OpenMinIO).
func TestMinIOConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MinIO server")
	}
	srv := miniotest.Start(t)
	runConformance(t, func(t *testing.T) Store {
		s, err := OpenMinIO(context.Background(), MinIOConfig{
			Endpoint:  "http://" + srv.Endpoint,
			Bucket:    fmt.Sprintf("conformance-%d", bucketSeq.Add(1)),
			AccessKey: srv.AccessKey,
			SecretKey: srv.SecretKey,
			Prefix:    "node0/",
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// testMinIO starts a MinIO server for the test (skipped with -short) and
// returns the configuration of bucket on it.
func testMinIO(t *testing.T, bucket string) MinIOConfig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a MinIO server")
	}
	srv := miniotest.Start(t)
	return MinIOConfig{Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
}

// TestMinIOConfig: bad configurations fail at open with a clear error, and
// an existing bucket is reused.
func TestMinIOConfig(t *testing.T) {
	good := testMinIO(t, "reuse")
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := OpenMinIO(ctx, good); err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
	}
	bad := good
	bad.SecretKey = "wrong-secret-key"
	if _, err := OpenMinIO(ctx, bad); err == nil {
		t.Fatal("wrong credentials accepted")
	}
	for _, c := range []MinIOConfig{
		{Bucket: "b", AccessKey: "a", SecretKey: "s"},
		{Endpoint: good.Endpoint, AccessKey: "a", SecretKey: "s"},
		{Endpoint: good.Endpoint, Bucket: "b"},
		{Endpoint: "ftp://" + good.Endpoint, Bucket: "b", AccessKey: "a", SecretKey: "s"},
	} {
		if _, err := OpenMinIO(ctx, c); err == nil {
			t.Fatalf("config %+v accepted", c)
		}
	}
}

// TestMinIOVersionedBucket: a bucket with versioning enabled is refused at
// open (ErrBucketVersioned), since every delete there would leave the
// ciphertext readable as an old version; once versioning is suspended the
// bucket is accepted, a blob written and deleted since then leaves no
// version and no delete marker behind, and one written before is hidden.
func TestMinIOVersionedBucket(t *testing.T) {
	cfg := testMinIO(t, "versioned")
	ctx := context.Background()
	s, err := OpenMinIO(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.c.EnableVersioning(ctx, cfg.Bucket); err != nil {
		t.Fatalf("enable versioning: %v", err)
	}
	if _, err := OpenMinIO(ctx, cfg); !errors.Is(err, ErrBucketVersioned) {
		t.Fatalf("open of a versioned bucket: %v, want ErrBucketVersioned", err)
	}
	// Written while versioning was on (by a store opened before): the
	// object's version is not the null one.
	old := mustPut(t, s, []byte("ciphertext written while versioned"))
	if err := s.c.SuspendVersioning(ctx, cfg.Bucket); err != nil {
		t.Fatalf("suspend versioning: %v", err)
	}
	s, err = OpenMinIO(ctx, cfg)
	if err != nil {
		t.Fatalf("open of a suspended bucket: %v", err)
	}
	key := mustPut(t, s, []byte("ciphertext to erase"))
	kept := mustPut(t, s, []byte("ciphertext to keep"))
	for _, k := range []Key{key, old} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stat of deleted %s: %v, want ErrNotFound", k, err)
		}
	}
	// Every version and delete marker of a blob: the kept blob's one
	// version, nothing of the blob written and deleted since the
	// suspension (a plain removal would leave a marker), and the old
	// blob's version hidden behind a marker. The temporary uploads made
	// since the suspension leave nothing either (the old blob's, made
	// while versioning was on, left versions and markers under tmp/).
	versions := map[string][]string{}
	for oi := range s.c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		if strings.HasPrefix(oi.Key, s.tmpPrefix()+old.Sum.String()) {
			continue
		}
		kind := "version"
		if oi.IsDeleteMarker {
			kind = "delete marker"
		}
		versions[oi.Key] = append(versions[oi.Key], kind)
	}
	want := map[string][]string{
		s.name(kept): {"version"},
		s.name(old):  {"delete marker", "version"},
	}
	if !maps.EqualFunc(versions, want, slices.Equal) {
		t.Fatalf("versions in the bucket: %q, want %q", versions, want)
	}
}

// stallReader hands out one byte, says so on started, then blocks until
// stop closes: a client that sends the headers and trickles the body.
type stallReader struct {
	started chan<- struct{}
	stop    <-chan struct{}
	once    bool
}

func (r *stallReader) Read(p []byte) (int, error) {
	if !r.once {
		r.once = true
		p[0] = 'x'
		r.started <- struct{}{}
		return 1, nil
	}
	<-r.stop
	return 0, errors.New("client went away")
}

// stalledPutHeap is the heap that n stalled Puts of size bytes hold, each.
func stalledPutHeap(t *testing.T, s Store, n int, size int64) uint64 {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	started, stop := make(chan struct{}, n), make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := Key{Owner: testOwner, Sum: Sum{byte(i), 1}}
			_ = s.Put(context.Background(), key, &stallReader{started: started, stop: stop}, size)
		}()
	}
	for range n {
		<-started
	}
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	close(stop)
	wg.Wait()
	if after.HeapInuse < before.HeapInuse {
		return 0
	}
	return (after.HeapInuse - before.HeapInuse) / uint64(n)
}

// TestMinIOStalledPutMemory: minio-go allocates a whole part for a
// multipart upload before the body's first byte arrives, so a Put whose
// client stalls holds one part: 5 MiB (minioPartSize), not minio-go's
// default of 16 MiB.
func TestMinIOStalledPutMemory(t *testing.T) {
	const n = 8
	size := int64(16<<20 + 1) // one byte above minio-go's default single-PUT limit
	s, err := OpenMinIO(context.Background(), testMinIO(t, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	per := stalledPutHeap(t, s, n, size)
	t.Logf("%d KiB of heap per stalled Put", per>>10)
	if per > 6<<20 {
		t.Fatalf("each stalled MinIO Put of %d bytes holds %d MiB of heap; want at most one 5 MiB part", size, per>>20)
	}
}

// TestMinIOPartSize: S3's minimum part while 10,000 of them hold the blob,
// else the smallest whole MiB that does, never above S3's 5 GiB part.
func TestMinIOPartSize(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		size int64
		want uint64
	}{
		{0, 5 * mib}, {1, 5 * mib}, {16<<20 + 1, 5 * mib}, {4 << 30, 5 * mib},
		{10_000 * 5 * mib, 5 * mib}, {10_000*5*mib + 1, 6 * mib},
		{100 << 30, 11 * mib}, {5 << 40, 525 * mib},
	} {
		got := minioPartSize(c.size)
		if got != c.want {
			t.Errorf("minioPartSize(%d) = %d MiB + %d, want %d MiB", c.size, got/mib, got%mib, c.want/mib)
		}
		if c.size > int64(got)*10_000 || got > 5<<30 {
			t.Errorf("minioPartSize(%d) = %d does not fit S3's limits", c.size, got)
		}
	}
}
