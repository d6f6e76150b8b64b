package blobstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

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

// TestMinIOConfig: bad configurations fail at open with a clear error, and
// an existing bucket is reused.
func TestMinIOConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MinIO server")
	}
	srv := miniotest.Start(t)
	ctx := context.Background()
	good := MinIOConfig{Endpoint: srv.Endpoint, Bucket: "reuse", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
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
		{Endpoint: srv.Endpoint, AccessKey: "a", SecretKey: "s"},
		{Endpoint: srv.Endpoint, Bucket: "b"},
		{Endpoint: "ftp://" + srv.Endpoint, Bucket: "b", AccessKey: "a", SecretKey: "s"},
	} {
		if _, err := OpenMinIO(ctx, c); err == nil {
			t.Fatalf("config %+v accepted", c)
		}
	}
}
