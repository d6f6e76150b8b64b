package sidecar

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/blobstore/miniotest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// The tests of this file are the session-35 review's: a copy must be
// dropped only when its bytes, read whole, are not the blob.

// shortReadStore is a store whose whole-blob reads end early, once armed,
// with io.ErrUnexpectedEOF: what minio-go's Object.Read returns when the
// connection to MinIO is cut before the object's Content-Length.
type shortReadStore struct {
	blobstore.Store
	armed atomic.Bool
}

func (s *shortReadStore) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	rc, size, err := s.Store.Get(ctx, key, off, n)
	if err != nil || !s.armed.Load() {
		return rc, size, err
	}
	return &cutReader{rc: rc, left: size / 2}, size, nil
}

type cutReader struct {
	rc   io.ReadCloser
	left int64
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.rc.Close() }

// TestShortStoreReadIsNotDamage: a store read that ends early (a
// connection to MinIO cut, a proxy's idle timeout) is a failed read, not a
// copy whose bytes are not the blob: the intact copy stays.
func TestShortStoreReadIsNotDamage(t *testing.T) {
	var st *shortReadStore
	e := newEnv(t, func(o *Options) { st = &shortReadStore{Store: o.Store}; o.Store = st })
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)

	st.armed.Store(true)
	if _, err := e.get(e.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil); err == nil {
		t.Fatal("a GET whose store read ended early succeeded")
	}
	st.armed.Store(false)
	if n := testutil.ToFloat64(e.srv.metrics.damaged); n != 0 {
		t.Errorf("damaged_copies_total = %v after a short store read of an intact copy, want 0", n)
	}
	if _, err := os.Stat(e.store.Path(e.key(sum))); err != nil {
		t.Fatalf("the intact (only) copy was deleted after a short store read: %v", err)
	}
	if got, err := e.get(e.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GET once the store is reachable again: %d bytes, %v", len(got), err)
	}
}

// TestCutShortOverHTTP2: behind HTTP/2 (a TLS proxy in front of the
// sidecar), the abort resets the stream; the client still reports the
// transfer cut short.
func TestCutShortOverHTTP2(t *testing.T) {
	e := newEnv(t, nil)
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	bad := bytes.Clone(data)
	bad[len(bad)/3] ^= 0x20
	if err := os.WriteFile(e.store.Path(e.key(sum)), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(e.srv.Handler())
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	var buf bytes.Buffer
	_, err := NewClient(ts.URL, e.reader, ts.Client()).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
	if err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("a damaged copy over HTTP/2: %v; want the transfer reported cut short", err)
	}
}

// cuttingProxy forwards to MinIO; once armed, it cuts the next GET of a
// blob object after half its body, as a load balancer's timeout or a
// restarting MinIO node would.
func cuttingProxy(t *testing.T, endpoint string) (*httptest.Server, *atomic.Bool) {
	var armed atomic.Bool
	tr := &http.Transport{}
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL = &url.URL{Scheme: "http", Host: endpoint, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		out.Host = r.Host
		resp, err := tr.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && resp.ContentLength > 1 && armed.CompareAndSwap(true, false) {
			_, _ = io.CopyN(w, resp.Body, resp.ContentLength/2)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.Close)
	return p, &armed
}

// minioStore is a MinIO store on srv (through endpoint) in bucket.
func minioStore(t *testing.T, srv *miniotest.Server, endpoint, bucket string) *blobstore.MinIO {
	t.Helper()
	ms, err := blobstore.OpenMinIO(context.Background(), blobstore.MinIOConfig{
		Endpoint: endpoint, Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// putRaw writes object into bucket of srv as it is: a copy damaged in
// MinIO itself.
func putRaw(t *testing.T, srv *miniotest.Server, bucket, object string, b []byte) {
	t.Helper()
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(context.Background(), bucket, object, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestMinIOCutConnectionKeepsCopy: on MinIO, a connection cut mid-object
// (minio-go: io.ErrUnexpectedEOF) fails the GET but keeps the intact copy.
func TestMinIOCutConnectionKeepsCopy(t *testing.T) {
	srv := miniotest.Start(t)
	p, armed := cuttingProxy(t, srv.Endpoint)
	ms := minioStore(t, srv, p.URL, "cut")
	e := newEnv(t, func(o *Options) { o.Store = ms })
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)

	armed.Store(true)
	if _, err := e.get(e.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil); err == nil {
		t.Fatal("a GET over a cut MinIO connection succeeded")
	}
	if _, err := ms.Stat(context.Background(), e.key(sum)); err != nil {
		t.Fatalf("the intact copy in MinIO was deleted after a cut connection: %v", err)
	}
	if got, err := e.get(e.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("next GET, MinIO reachable: %d bytes, %v", len(got), err)
	}
}

// gateStore holds, once armed, the next whole read at its end (all bytes
// read, EOF not yet returned) until release is closed.
type gateStore struct {
	blobstore.Store
	armed   atomic.Bool
	atEnd   chan struct{}
	release chan struct{}
}

func (s *gateStore) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	rc, size, err := s.Store.Get(ctx, key, off, n)
	if err != nil || !s.armed.CompareAndSwap(true, false) {
		return rc, size, err
	}
	return &gateReader{ReadCloser: rc, s: s}, size, nil
}

type gateReader struct {
	io.ReadCloser
	s    *gateStore
	done bool
}

func (g *gateReader) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if err == io.EOF && !g.done {
		g.done = true
		close(g.s.atEnd)
		<-g.s.release
	}
	return n, err
}

// TestMinIOSlowGETKeepsRepairedCopy: MinIO's Stat has whole seconds, so
// size and age cannot tell a damaged copy from an intact one written in
// the same second. Two GETs read a damaged copy on a MinIO-backed sidecar
// B; the first drops it, and the uploader puts the blob to B again; the
// slower damaged GET then finishes, and must not delete the intact copy
// (the drop reads the copy again under the blob's lock).
func TestMinIOSlowGETKeepsRepairedCopy(t *testing.T) {
	srv := miniotest.Start(t)
	ms := minioStore(t, srv, srv.Endpoint, "slowget")
	e := newEnv(t, nil) // A: intact
	data, sum, rec := uploadedRecord(t, e)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	gs := &gateStore{Store: ms, atEnd: make(chan struct{}), release: make(chan struct{})}
	b, _ := peerOf(t, e, func(o *Options) { o.Store = gs }, e.ts.URL)
	ctx := context.Background()
	key := e.key(sum)
	get := func() ([]byte, error) {
		var buf bytes.Buffer
		_, err := NewClient(b.URL, e.reader, nil).Get(ctx, RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
		return buf.Bytes(), err
	}
	// All of it within one second, whose start this waits for.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	bad := bytes.Clone(data)
	bad[7] ^= 1
	putRaw(t, srv, "slowget", "blobs/"+key.String(), bad)
	gs.armed.Store(true)
	slow := make(chan error, 1)
	go func() { _, err := get(); slow <- err }() // GET #2: reads the damaged copy, held at its end
	<-gs.atEnd
	if _, err := get(); err == nil { // GET #1: cut short, drops it
		t.Fatal("GET #1 of the damaged copy succeeded")
	}
	// The uploader puts the blob again (a relay from A keeps no copy).
	if _, err := NewClient(b.URL, e.writer, nil).Put(ctx, e.pid, testCategory, sum, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	close(gs.release)
	if err := <-slow; err == nil {
		t.Fatal("GET #2 of the damaged copy succeeded")
	}
	if _, err := ms.Stat(ctx, key); err != nil {
		t.Fatalf("the intact copy put again was deleted by the slower GET of the damaged one: %v", err)
	}
}

// waiters is the number of holders and waiters of key's lock on srv.
func waiters(srv *Server, key blobstore.Key) int {
	srv.blobs.mu.Lock()
	defer srv.blobs.mu.Unlock()
	if k := srv.blobs.held[key]; k != nil {
		return k.users
	}
	return 0
}
