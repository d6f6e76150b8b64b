package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/blobstore/miniotest"
	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// BenchmarkTransfer measures, against one real MinIO server in the same
// run, the throughput of the blob pipelines next to raw minio-go on the
// same bytes. Each iteration runs every variant once, in alternating
// order, and each variant's time is summed separately: on a shared
// machine whose load changes from second to second, variants measured
// side by side give ratios that sequential sub-benchmarks do not.
//
// <size>/upload, per iteration:
//
//   - raw: minio-go PutObject of the plaintext from memory (the baseline:
//     no sidecar, no encryption);
//   - store: the sidecar's storage step alone, blobstore.MinIO.Put of
//     ciphertext-sized bytes (hash-verified upload to a temporary object,
//     server-side copy to the final name, removal of the temporary one);
//   - sidecar: Upload's data path — encrypt (fresh data key, 64 KiB
//     AES-256-GCM segments) into a scratch file while hashing, then a
//     signed PUT through the sidecar (HTTP on loopback, authorization,
//     blobstore.MinIO.Put as above).
//
// <size>/download, per iteration:
//
//   - raw: minio-go GetObject into io.Discard;
//   - raw-file: GetObject into a file, fsynced (the durability of a
//     download's output);
//   - sidecar: Download's data path — signed GET through the sidecar into a
//     scratch file while hashing, SHA-256 check, decrypt (authenticated)
//     into the nameless pending file, fsync, link under the output name;
//   - sidecar-nosync: the same without the fsyncs.
//
// Metrics: <variant>-MB/s (plaintext bytes / the variant's summed time)
// and sidecar/raw (and sidecar/raw-file) ratios. The chain transactions
// (AddRecord, RecordAccess) and the verified record query are not
// included: they cost a block each, whatever the size. The sidecar runs in
// this process with ownerView as its chain view (in-memory lookups: one
// member, one patient, its records), so its per-request authorization is
// measured but not a node's query latency. peak-heap-MiB is the largest
// growth of this process's Go heap (client, sidecar and minio-go) sampled
// every millisecond; B/op covers every variant of an iteration.
//
// Run: go test ./client -run '^$' -bench BenchmarkTransfer -benchtime 20x
func BenchmarkTransfer(b *testing.B) {
	ctx := context.Background()
	srvMinIO := miniotest.Start(b)
	const bucket = "bench"
	store, err := blobstore.OpenMinIO(ctx, blobstore.MinIOConfig{Endpoint: srvMinIO.Endpoint, Bucket: bucket,
		AccessKey: srvMinIO.AccessKey, SecretKey: srvMinIO.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	signer := newTestRecipient("bench")
	pid := bytes.Repeat([]byte{0xbe}, 32)
	view := newOwnerView(signer, pid)
	srv, err := sidecar.New(sidecar.Options{Store: store, Chain: view, SweepInterval: -1, Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	opts := TransferOptions{Sidecars: []string{"http://" + srv.Addr().String()}, TempDir: b.TempDir()}
	raw, err := minio.New(srvMinIO.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srvMinIO.AccessKey, srvMinIO.SecretKey, "")})
	if err != nil {
		b.Fatal(err)
	}
	outDir := b.TempDir()
	aad := RecordStreamAAD(pid, "imaging")

	for _, size := range []int{64 << 10, 1 << 20, 64 << 20} {
		name := fmt.Sprintf("%dKiB", size>>10)
		if size >= 1<<20 {
			name = fmt.Sprintf("%dMiB", size>>20)
		}
		data := randomBytes(b, size)
		// seal encrypts data under a fresh data key into a scratch file.
		seal := func(b *testing.B) (*sealed, []byte) {
			key, err := crypto.GenerateKey()
			if err != nil {
				b.Fatal(err)
			}
			sl, err := sealToScratch(ctx, opts.TempDir, bytes.NewReader(data), int64(size), key, aad, nil)
			if err != nil {
				b.Fatal(err)
			}
			return sl, key
		}

		b.Run(name+"/upload", func(b *testing.B) {
			ct := randomBytes(b, int(crypto.CiphertextSize(int64(size))))
			n := 0
			v := newVariants(b, size)
			v.add("raw", func() {
				if _, err := raw.PutObject(ctx, bucket, fmt.Sprintf("raw/%s-%d", name, n), bytes.NewReader(data), int64(size),
					minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
					b.Fatal(err)
				}
			})
			v.add("store", func() {
				ct[0]++ // a new blob each time
				if err := store.Put(ctx, blobstore.Key{Sum: sha256.Sum256(ct)}, bytes.NewReader(ct), int64(len(ct))); err != nil {
					b.Fatal(err)
				}
			})
			v.add("sidecar", func() {
				sl, _ := seal(b)
				defer sl.file.Discard()
				if _, _, err := putBlob(ctx, signer, pid, testCategory, false, sl, opts); err != nil {
					b.Fatal(err)
				}
			})
			for ; b.Loop(); n++ {
				v.run(n)
			}
			v.report("raw")
		})

		b.Run(name+"/download", func(b *testing.B) {
			obj := "raw/" + name + "-get"
			if _, err := raw.PutObject(ctx, bucket, obj, bytes.NewReader(data), int64(size), minio.PutObjectOptions{}); err != nil {
				b.Fatal(err)
			}
			sl, key := seal(b)
			if _, _, err := putBlob(ctx, signer, pid, testCategory, false, sl, opts); err != nil {
				b.Fatal(err)
			}
			sl.file.Discard()
			view.addBlob(sl.sum, sl.size)
			out := filepath.Join(outDir, name+".out")
			sidecarDownload := func() {
				os.Remove(out)
				p, err := newPending(out, false)
				if err != nil {
					b.Fatal(err)
				}
				ct, _, err := fetchBlob(ctx, signer, chainBlob{view.ref(sl.sum), sl.sum[:], uint64(sl.size)}, outDir, opts, false)
				if err != nil {
					b.Fatal(err)
				}
				n, err := decryptInto(ctx, ct, sl.size, key, aad, p, nil)
				ct.Discard()
				if err != nil || n != int64(size) {
					b.Fatalf("decrypt: %d bytes, %v", n, err)
				}
				if err := p.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			rawGet := func(w io.Writer) {
				o, err := raw.GetObject(ctx, bucket, obj, minio.GetObjectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				defer o.Close()
				if n, err := io.Copy(w, o); err != nil || n != int64(size) {
					b.Fatalf("raw get: %d bytes, %v", n, err)
				}
			}
			v := newVariants(b, size)
			v.add("raw", func() { rawGet(io.Discard) })
			v.add("raw-file", func() {
				f, err := os.OpenFile(filepath.Join(outDir, name+".raw"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				rawGet(f)
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			})
			v.add("sidecar", sidecarDownload)
			v.add("sidecar-nosync", func() {
				syncOutput = false
				defer func() { syncOutput = true }()
				sidecarDownload()
			})
			for n := 0; b.Loop(); n++ {
				v.run(n)
			}
			v.report("raw", "raw-file")
		})
	}
}

// variants times several operations side by side (see BenchmarkTransfer).
type variants struct {
	b     *testing.B
	size  int
	names []string
	fns   []func()
	spent []time.Duration
	runs  int
	peak  *heapWatch
}

func newVariants(b *testing.B, size int) *variants {
	b.ReportAllocs()
	return &variants{b: b, size: size, peak: watchHeap(b)}
}

func (v *variants) add(name string, fn func()) {
	v.names = append(v.names, name)
	v.fns = append(v.fns, fn)
	v.spent = append(v.spent, 0)
}

// run runs every variant once; iteration i starts at variant i mod n.
func (v *variants) run(i int) {
	for k := range v.fns {
		j := (i + k) % len(v.fns)
		start := time.Now()
		v.fns[j]()
		v.spent[j] += time.Since(start)
	}
	v.runs++
}

// report emits <variant>-MB/s for each variant and sidecar/<base> ratios.
func (v *variants) report(bases ...string) {
	v.peak.report()
	if v.runs == 0 {
		return
	}
	mbs := map[string]float64{}
	for i, name := range v.names {
		mbs[name] = float64(v.size) * float64(v.runs) / v.spent[i].Seconds() / 1e6
		v.b.ReportMetric(mbs[name], name+"-MB/s")
	}
	for _, base := range bases {
		v.b.ReportMetric(mbs["sidecar"]/mbs[base], "sidecar/"+base)
	}
}

// heapWatch samples the Go heap's live object bytes while a benchmark runs.
type heapWatch struct {
	b    *testing.B
	base uint64
	max  atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

const heapMetric = "/memory/classes/heap/objects:bytes"

func heapNow() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func watchHeap(b *testing.B) *heapWatch {
	runtime.GC()
	w := &heapWatch{b: b, base: heapNow(), stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				if h := heapNow(); h > w.max.Load() {
					w.max.Store(h)
				}
			}
		}
	}()
	return w
}

func (w *heapWatch) report() {
	close(w.stop)
	w.wg.Wait()
	growth := int64(w.max.Load()) - int64(w.base)
	w.b.ReportMetric(float64(max(growth, 0))/(1<<20), "peak-heap-MiB")
}
