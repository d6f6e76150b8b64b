package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// testData is deterministic pseudo-random bytes.
func testData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sumOf(b []byte) Sum { return sha256.Sum256(b) }

// testOwner owns the blobs of the tests that are not about owners.
var testOwner = Owner{0x42}

// keyOf is the key of data put for testOwner.
func keyOf(data []byte) Key { return Key{Owner: testOwner, Sum: sumOf(data)} }

func mustPut(t *testing.T, s Store, data []byte) Key {
	t.Helper()
	return mustPutFor(t, s, testOwner, data)
}

func mustPutFor(t *testing.T, s Store, owner Owner, data []byte) Key {
	t.Helper()
	key := Key{Owner: owner, Sum: sumOf(data)}
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put %d bytes for %s: %v", len(data), owner, err)
	}
	return key
}

func readAll(t *testing.T, s Store, key Key, off, n int64) ([]byte, int64) {
	t.Helper()
	rc, size, err := s.Get(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("Get(%d, %d): %v", off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b, size
}

func listAll(t *testing.T, s Store) []Info {
	t.Helper()
	var out []Info
	if err := s.List(context.Background(), func(i Info) bool { out = append(out, i); return true }); err != nil {
		t.Fatalf("List: %v", err)
	}
	return out
}

// onlyReader hides every interface but io.Reader.
type onlyReader struct{ io.Reader }

// runConformance is the behaviour every Store must have.
func runConformance(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		s := open(t)
		data := testData(1, 100_000)
		sum := mustPut(t, s, data)
		got, size := readAll(t, s, sum, 0, -1)
		if size != int64(len(data)) || !bytes.Equal(got, data) {
			t.Fatalf("Get returned %d bytes (size %d), want the %d put", len(got), size, len(data))
		}
		info, err := s.Stat(ctx, sum)
		if err != nil || info.Size != int64(len(data)) || info.Key != sum || info.ModTime.IsZero() {
			t.Fatalf("Stat = %+v, %v", info, err)
		}
		if d := time.Since(info.ModTime); d < -time.Minute || d > time.Minute {
			t.Fatalf("ModTime %v is not about now", info.ModTime)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("EmptyBlob", func(t *testing.T) {
		s := open(t)
		sum := mustPut(t, s, nil)
		got, size := readAll(t, s, sum, 0, -1)
		if size != 0 || len(got) != 0 {
			t.Fatalf("empty blob: %d bytes, size %d", len(got), size)
		}
	})

	t.Run("HashMismatchStoresNothing", func(t *testing.T) {
		s := open(t)
		data := testData(2, 50_000)
		claimed := keyOf([]byte("something else"))
		err := s.Put(ctx, claimed, bytes.NewReader(data), int64(len(data)))
		if !errors.Is(err, ErrHashMismatch) {
			t.Fatalf("Put with a wrong sum: %v, want ErrHashMismatch", err)
		}
		if _, err := s.Stat(ctx, claimed); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat after a refused Put: %v, want ErrNotFound", err)
		}
		if _, err := s.Stat(ctx, keyOf(data)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the body was stored under its real sum: %v", err)
		}
		if l := listAll(t, s); len(l) != 0 {
			t.Fatalf("List after a refused Put = %v", l)
		}
		if n, err := s.CleanTemp(ctx, 0); err != nil || n != 0 {
			t.Fatalf("CleanTemp after a refused Put removed %d (%v): a temporary object survived", n, err)
		}
	})

	t.Run("SizeMismatch", func(t *testing.T) {
		s := open(t)
		data := testData(3, 10_000)
		sum := keyOf(data)
		if err := s.Put(ctx, sum, bytes.NewReader(data[:5000]), int64(len(data))); !errors.Is(err, ErrSizeMismatch) {
			t.Fatalf("short body: %v, want ErrSizeMismatch", err)
		}
		if err := s.Put(ctx, sum, bytes.NewReader(append(data, 1)), int64(len(data))); !errors.Is(err, ErrSizeMismatch) {
			t.Fatalf("long body: %v, want ErrSizeMismatch", err)
		}
		if err := s.Put(ctx, sum, bytes.NewReader(data), -1); !errors.Is(err, ErrSizeMismatch) {
			t.Fatalf("unknown size: %v, want ErrSizeMismatch", err)
		}
		if _, err := s.Stat(ctx, sum); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat after refused Puts: %v", err)
		}
	})

	t.Run("Idempotent", func(t *testing.T) {
		s := open(t)
		data := testData(4, 30_000)
		sum := mustPut(t, s, data)
		mustPut(t, s, data)
		// A wrong body for a stored sum is refused and the stored copy kept.
		bad := testData(5, len(data))
		if err := s.Put(ctx, sum, bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrHashMismatch) {
			t.Fatalf("wrong body for a stored sum: %v, want ErrHashMismatch", err)
		}
		got, _ := readAll(t, s, sum, 0, -1)
		if !bytes.Equal(got, data) {
			t.Fatal("stored blob changed")
		}
		if l := listAll(t, s); len(l) != 1 {
			t.Fatalf("List = %d blobs, want 1", len(l))
		}
	})

	t.Run("PutReplacesDamagedCopy", func(t *testing.T) {
		s := open(t)
		data := testData(6, 30_000)
		key := mustPut(t, s, data)
		truncateStored(t, s, key, int64(len(data)/2)) // torn by a disk, or a bad restore
		// A stored copy of the wrong size is not the blob: the verified
		// upload replaces it (a same-size damage only the reader's hash
		// check finds).
		mustPut(t, s, data)
		if got, size := readAll(t, s, key, 0, -1); size != int64(len(data)) || !bytes.Equal(got, data) {
			t.Fatalf("after a re-upload over a damaged copy: %d of %d bytes stored", size, len(data))
		}
		// ...and a wrong body is still refused, keeping nothing.
		truncateStored(t, s, key, 10)
		bad := testData(7, len(data))
		if err := s.Put(ctx, key, bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrHashMismatch) {
			t.Fatalf("wrong body over a damaged copy: %v, want ErrHashMismatch", err)
		}
	})

	t.Run("ConcurrentIdenticalPuts", func(t *testing.T) {
		s := open(t)
		data := testData(6, 200_000)
		sum := keyOf(data)
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.Put(ctx, sum, onlyReader{bytes.NewReader(data)}, int64(len(data)))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent Put: %v", err)
			}
		}
		got, _ := readAll(t, s, sum, 0, -1)
		if !bytes.Equal(got, data) {
			t.Fatal("blob differs after concurrent Puts")
		}
		if l := listAll(t, s); len(l) != 1 {
			t.Fatalf("List = %d blobs, want 1", len(l))
		}
	})

	t.Run("Ranges", func(t *testing.T) {
		s := open(t)
		data := testData(7, 70_001)
		sum := mustPut(t, s, data)
		size := int64(len(data))
		for _, c := range []struct{ off, n int64 }{
			{0, 1}, {0, 100}, {12345, 1000}, {size - 1, 1}, {size - 10, -1}, {size, 0}, {size, -1}, {0, size}, {5, 0},
		} {
			got, total := readAll(t, s, sum, c.off, c.n)
			end := size
			if c.n >= 0 {
				end = c.off + c.n
			}
			if total != size || !bytes.Equal(got, data[c.off:end]) {
				t.Fatalf("Get(%d, %d): %d bytes (size %d), want data[%d:%d]", c.off, c.n, len(got), total, c.off, end)
			}
		}
		for _, c := range []struct{ off, n int64 }{{size + 1, -1}, {-1, 5}, {size - 5, 6}, {0, size + 1}} {
			if _, _, err := s.Get(ctx, sum, c.off, c.n); !errors.Is(err, ErrInvalidRange) {
				t.Fatalf("Get(%d, %d) = %v, want ErrInvalidRange", c.off, c.n, err)
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		missing := keyOf([]byte("missing"))
		if _, _, err := s.Get(ctx, missing, 0, -1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get missing: %v", err)
		}
		if _, err := s.Stat(ctx, missing); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat missing: %v", err)
		}
		if err := s.Delete(ctx, missing); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delete missing: %v", err)
		}
	})

	t.Run("GetOfDeletedBlob", func(t *testing.T) {
		// A blob deleted after Get (a sweep between a reader's Stat and its
		// first Read, which MinIO makes lazily) reads whole or fails with
		// ErrNotFound, never with a backend's own error.
		s := open(t)
		data := testData(77, 5000)
		key := mustPut(t, s, data)
		rc, _, err := s.Get(ctx, key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if err := s.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		if !(err == nil && bytes.Equal(b, data)) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("reading a blob deleted after Get: %d bytes, %v; want it whole or ErrNotFound", len(b), err)
		}
	})

	t.Run("ListAfter", func(t *testing.T) {
		s := open(t)
		// Owners in three shards, two sharing one, several blobs each.
		owners := []Owner{{0x10, 1}, {0x10, 2}, {0x7f}, {0xe0, 9}}
		for i, o := range owners {
			for j := range 3 {
				mustPutFor(t, s, o, testData(uint64(500+10*i+j), 100+j))
			}
		}
		all := listAll(t, s)
		if len(all) != 12 {
			t.Fatalf("List = %d blobs, want 12", len(all))
		}
		after := func(k Key) []Key {
			var out []Key
			if err := s.ListAfter(ctx, k, func(i Info) bool { out = append(out, i.Key); return true }); err != nil {
				t.Fatalf("ListAfter %s: %v", k, err)
			}
			return out
		}
		keys := func(l []Info) []Key {
			out := make([]Key, len(l))
			for i, x := range l {
				out[i] = x.Key
			}
			return out
		}
		// After each listed key: exactly the rest, in order.
		for i, x := range all {
			if got, want := after(x.Key), keys(all[i+1:]); !slices.Equal(got, want) {
				t.Fatalf("ListAfter(entry %d) = %v, want %v", i, got, want)
			}
		}
		// After keys that are not stored: what lies above them.
		if got := after(Key{}); !slices.Equal(got, keys(all)) {
			t.Fatalf("ListAfter(zero) = %d blobs, want all %d", len(got), len(all))
		}
		between := Key{Owner: Owner{0x10, 1, 0xff}}
		if got := after(between); !slices.Equal(got, keys(all[3:])) {
			t.Fatalf("ListAfter(between owners) = %v, want the 9 of the later owners", got)
		}
		last := Key{Owner: Owner{0xff}}
		for i := range last.Owner {
			last.Owner[i] = 0xff
		}
		if got := after(last); len(got) != 0 {
			t.Fatalf("ListAfter(the largest key) = %v, want none", got)
		}
		seen := 0
		if err := s.ListAfter(ctx, all[0].Key, func(Info) bool { seen++; return seen < 2 }); err != nil || seen != 2 {
			t.Fatalf("ListAfter stopping early visited %d (%v), want 2", seen, err)
		}
	})

	t.Run("DeleteAndList", func(t *testing.T) {
		s := open(t)
		var sums []Key
		for i := range 5 {
			sums = append(sums, mustPut(t, s, testData(uint64(100+i), 1000+i)))
		}
		l := listAll(t, s)
		if len(l) != 5 {
			t.Fatalf("List = %d blobs, want 5", len(l))
		}
		for i := 1; i < len(l); i++ {
			if strings.Compare(l[i-1].Key.String(), l[i].Key.String()) >= 0 {
				t.Fatalf("List is not in ascending order: %s then %s", l[i-1].Key, l[i].Key)
			}
		}
		for _, i := range l {
			if i.Size < 1000 || i.ModTime.IsZero() {
				t.Fatalf("List entry %+v", i)
			}
		}
		seen := 0
		if err := s.List(ctx, func(Info) bool { seen++; return seen < 2 }); err != nil || seen != 2 {
			t.Fatalf("List stopping early visited %d (%v), want 2", seen, err)
		}
		if err := s.Delete(ctx, sums[2]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, sums[2]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat after Delete: %v", err)
		}
		if l := listAll(t, s); len(l) != 4 {
			t.Fatalf("List after Delete = %d blobs, want 4", len(l))
		}
	})

	t.Run("Owners", func(t *testing.T) {
		// The same bytes put for one owner are not another's: each owner
		// reaches only what was put for it.
		s := open(t)
		alice, bob := Owner{0xa1}, Owner{0x0b}
		data := testData(10, 5000)
		ak := mustPutFor(t, s, alice, data)
		bk := Key{Owner: bob, Sum: ak.Sum}
		if _, err := s.Stat(ctx, bk); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat of alice's bytes under bob: %v, want ErrNotFound", err)
		}
		if _, _, err := s.Get(ctx, bk, 0, -1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of alice's bytes under bob: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, bk); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delete of alice's bytes under bob: %v, want ErrNotFound", err)
		}
		mustPutFor(t, s, bob, data)
		other := mustPutFor(t, s, bob, testData(11, 10))
		l := listAll(t, s)
		if len(l) != 3 {
			t.Fatalf("List = %d blobs, want 3", len(l))
		}
		for i := 1; i < len(l); i++ {
			if l[i-1].Key.Compare(l[i].Key) >= 0 {
				t.Fatalf("List is not in ascending key order: %s then %s", l[i-1].Key, l[i].Key)
			}
		}
		if l[0].Key.Owner != bob || l[2].Key != ak {
			t.Fatalf("List = %s, %s, %s: want bob's two blobs, then alice's", l[0].Key, l[1].Key, l[2].Key)
		}
		if err := s.Delete(ctx, bk); err != nil {
			t.Fatal(err)
		}
		if got, _ := readAll(t, s, ak, 0, -1); !bytes.Equal(got, data) {
			t.Fatal("deleting bob's copy changed alice's")
		}
		if _, err := s.Stat(ctx, other); err != nil {
			t.Fatalf("bob's other blob: %v", err)
		}
	})

	t.Run("MultipartSized", func(t *testing.T) {
		// Above minio-go's 16 MiB part size, so the MinIO backend uploads
		// in parts; the FS backend streams it the same way.
		s := open(t)
		data := testData(8, 17<<20+123)
		sum := keyOf(data)
		if err := s.Put(ctx, sum, onlyReader{bytes.NewReader(data)}, int64(len(data))); err != nil {
			t.Fatal(err)
		}
		got, _ := readAll(t, s, sum, 16<<20-10, 100)
		if !bytes.Equal(got, data[16<<20-10:16<<20+90]) {
			t.Fatal("range across the part boundary differs")
		}
		bad := append([]byte(nil), data...)
		bad[len(bad)-1] ^= 1
		if err := s.Put(ctx, keyOf([]byte("x")), onlyReader{bytes.NewReader(bad)}, int64(len(bad))); !errors.Is(err, ErrHashMismatch) {
			t.Fatalf("large wrong body: %v", err)
		}
	})

	t.Run("CancelledPut", func(t *testing.T) {
		s := open(t)
		data := testData(9, 1<<20)
		cctx, cancel := context.WithCancel(ctx)
		r := &cancelAfter{r: bytes.NewReader(data), n: 100_000, cancel: cancel}
		if err := s.Put(cctx, keyOf(data), r, int64(len(data))); err == nil {
			t.Fatal("Put with a context cancelled mid-body succeeded")
		}
		if _, err := s.Stat(ctx, keyOf(data)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat after a cancelled Put: %v", err)
		}
	})
}

// cancelAfter cancels a context after n bytes were read.
type cancelAfter struct {
	r      io.Reader
	n      int
	read   int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.read >= c.n {
		c.cancel()
	}
	if len(p) > 8192 {
		p = p[:8192]
	}
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

// truncateStored damages the stored copy of key, as a torn write or a bad
// restore would, keeping its first n bytes.
func truncateStored(t *testing.T, s Store, key Key, n int64) {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	head, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	switch st := s.(type) {
	case *FS:
		err = os.WriteFile(st.Path(key), head, 0o600)
	case *MinIO:
		_, err = st.c.PutObject(context.Background(), st.bucket, st.name(key), bytes.NewReader(head), n, minio.PutObjectOptions{})
	default:
		t.Fatalf("no way to damage a blob of %T", s)
	}
	if err != nil {
		t.Fatalf("damage %s: %v", key, err)
	}
}
