package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dbm "github.com/cosmos/cosmos-db"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestPendingQuotaRules: the accounting's rules, step by step, over an
// empty store and an index that references key 9.
func TestPendingQuotaRules(t *testing.T) {
	a, b, c := signerAddr{1}, signerAddr{2}, signerAddr{3}
	type op int
	const (
		reserve   op = iota
		release      // the reservation of the step's key
		reference    // the index learns the key
		sweep        // the sweep deleted the key
	)
	type step struct {
		op                op
		signer            signerAddr
		key               byte
		size              int64
		patient           bool  // the signer is a patient
		err               error // of reserve
		counted           bool  // reserve took a reservation
		mineA, mineB, sum int64 // pending bytes after the step
		patients          int64 // of them, patients' uploads
	}
	for _, tc := range []struct {
		name                       string
		perSigner, patients, total int64
		steps                      []step
	}{
		{"per signer: up to the limit, not one byte more; others unaffected", 100, 0, 0, []step{
			{op: reserve, signer: a, key: 1, size: 60, counted: true, mineA: 60, sum: 60},
			{op: reserve, signer: a, key: 2, size: 40, counted: true, mineA: 100, sum: 100},
			{op: reserve, signer: a, key: 3, size: 1, err: errSignerPendingFull, mineA: 100, sum: 100},
			{op: reserve, signer: b, key: 3, size: 100, counted: true, mineA: 100, mineB: 100, sum: 200},
			{op: reserve, signer: a, key: 4, size: 0, counted: true, mineA: 100, mineB: 100, sum: 200},
		}},
		{"total: refused once all signers together would pass it", 100, 0, 150, []step{
			{op: reserve, signer: a, key: 1, size: 100, counted: true, mineA: 100, sum: 100},
			{op: reserve, signer: b, key: 2, size: 51, err: errPendingFull, mineA: 100, sum: 100},
			{op: reserve, signer: b, key: 2, size: 50, counted: true, mineA: 100, mineB: 50, sum: 150},
		}},
		{"the signer's limit is reported before the total's", 10, 0, 10, []step{
			{op: reserve, signer: a, key: 1, size: 10, counted: true, mineA: 10, sum: 10},
			{op: reserve, signer: a, key: 2, size: 1, err: errSignerPendingFull, mineA: 10, sum: 10},
			{op: reserve, signer: b, key: 2, size: 1, err: errPendingFull, mineA: 10, sum: 10},
		}},
		{"the same blob again counts once, whoever uploads it", 100, 0, 0, []step{
			{op: reserve, signer: a, key: 1, size: 80, counted: true, mineA: 80, sum: 80},
			{op: reserve, signer: a, key: 1, size: 80, mineA: 80, sum: 80},
			{op: reserve, signer: b, key: 1, size: 80, mineA: 80, sum: 80},
		}},
		{"a referenced blob is not pending", 10, 0, 10, []step{
			{op: reserve, signer: a, key: 9, size: 1000, mineA: 0, sum: 0},
		}},
		{"referenced or swept, a blob no longer counts", 100, 0, 0, []step{
			{op: reserve, signer: a, key: 1, size: 60, counted: true, mineA: 60, sum: 60},
			{op: reserve, signer: a, key: 2, size: 40, counted: true, mineA: 100, sum: 100},
			{op: reference, key: 1, mineA: 40, sum: 40},
			{op: sweep, key: 2, sum: 0},
			{op: reserve, signer: a, key: 3, size: 100, counted: true, mineA: 100, sum: 100},
			{op: reference, key: 1, mineA: 100, sum: 100}, // again: nothing
		}},
		{"patients together: up to their limit; members keep the rest of the total", 100, 150, 200, []step{
			{op: reserve, signer: a, patient: true, key: 1, size: 100, counted: true, mineA: 100, sum: 100, patients: 100},
			{op: reserve, signer: b, patient: true, key: 2, size: 51, err: errPatientsPendingFull, mineA: 100, sum: 100, patients: 100},
			{op: reserve, signer: b, patient: true, key: 2, size: 50, counted: true, mineA: 100, mineB: 50, sum: 150, patients: 150},
			{op: reserve, signer: c, key: 3, size: 50, counted: true, mineA: 100, mineB: 50, sum: 200, patients: 150},
			{op: reserve, signer: c, key: 4, size: 1, err: errPendingFull, mineA: 100, mineB: 50, sum: 200, patients: 150},
			{op: reference, key: 1, mineB: 50, sum: 100, patients: 50},
			{op: sweep, key: 2, sum: 50},
			{op: reserve, signer: b, patient: true, key: 5, size: 100, counted: true, mineB: 100, sum: 150, patients: 100},
		}},
		{"a failed upload gives its reservation back, once", 100, 0, 0, []step{
			{op: reserve, signer: a, key: 1, size: 60, counted: true, mineA: 60, sum: 60},
			{op: release, key: 1, sum: 0},
			{op: release, key: 1, sum: 0},
			{op: reserve, signer: a, key: 2, size: 60, counted: true, mineA: 60, sum: 60},
			{op: reference, key: 2, sum: 0}, // referenced while its upload runs,
			{op: reserve, signer: a, key: 3, size: 70, counted: true, mineA: 70, sum: 70},
			{op: release, key: 2, mineA: 70, sum: 70}, // which then fails
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := blobstore.OpenFS(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			refs, err := newRefIndex(dbm.NewMemDB())
			if err != nil {
				t.Fatal(err)
			}
			key := func(k byte) blobstore.Key { return blobstore.Key{Sum: blobstore.Sum{k}} }
			if _, err := refs.add(refCursor{}, []BlockBlobs{{Height: 1, Blobs: []CommittedBlob{{Key: key(9)}}}}); err != nil {
				t.Fatal(err)
			}
			q := newPendingQuota(tc.perSigner, tc.patients, tc.total, store, refs, nil)
			refs.onAdd = q.referenced
			held := map[byte]*pendingBlob{}
			for i, s := range tc.steps {
				switch s.op {
				case reserve:
					r, err := q.reserve(context.Background(), s.signer, s.patient, key(s.key), s.size)
					if !errors.Is(err, s.err) || (err == nil) != (s.err == nil) || (r != nil) != s.counted {
						t.Fatalf("step %d: reserve = %v, %v; want counted %v, %v", i, r, err, s.counted, s.err)
					}
					var qe *pendingQuotaError
					if errors.As(err, &qe) && (qe.size != s.size || qe.limit == 0) {
						t.Fatalf("step %d: %+v", i, qe)
					}
					if r != nil {
						held[s.key] = r
					}
				case release:
					q.release(held[s.key])
				case reference:
					if _, err := refs.add(refs.cur, []BlockBlobs{{Height: refs.cur.Height + 1, Blobs: []CommittedBlob{{Key: key(s.key)}}}}); err != nil {
						t.Fatal(err)
					}
				case sweep:
					q.deleted(key(s.key))
				}
				if mineA, sum := q.usage(a); mineA != s.mineA || sum != s.sum {
					t.Fatalf("step %d: a has %d pending, all %d; want %d, %d", i, mineA, sum, s.mineA, s.sum)
				}
				if mineB, _ := q.usage(b); mineB != s.mineB {
					t.Fatalf("step %d: b has %d pending, want %d", i, mineB, s.mineB)
				}
				if got := q.patientsUsage(); got != s.patients {
					t.Fatalf("step %d: patients have %d pending, want %d", i, got, s.patients)
				}
			}
		})
	}
}

// quotaEnv is an env whose writer2 also writes, with the given bounds.
func quotaEnv(t *testing.T, perSigner, total int64, mod func(*Options)) (*env, *actor) {
	e := newEnv(t, func(o *Options) {
		o.PendingBytesPerSigner, o.PendingBytesTotal = perSigner, total
		if mod != nil {
			mod(o)
		}
	})
	w2 := e.chain.addMember("writer2", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	e.chain.grant(e.pid, w2, e.chain.head.Time.Add(24*time.Hour), emrv1.Right_RIGHT_WRITE)
	return e, w2
}

// blob is n bytes of tag, repeated.
func blob(tag string, n int) []byte {
	return bytes.Repeat([]byte(tag), n)[:n]
}

// TestPendingQuotaHTTP, through the server: an upload that would pass the
// signer's bound is refused with 429 before anything is stored, one that
// would pass the total with 507, each naming its limit; a second upload of
// a stored blob is not counted again; a record committed since the
// index's last read frees its blob's bytes at the next refused upload, and
// the sweep frees what it deletes. The refusals are counted by reason.
func TestPendingQuotaHTTP(t *testing.T) {
	e, w2 := quotaEnv(t, 100, 250, nil)
	ctx := context.Background()
	first, second := blob("a", 60), blob("b", 40)
	for _, d := range [][]byte{first, second} {
		if res, err := e.put(e.writer, d); err != nil || !res.Created {
			t.Fatalf("upload within the bound: %+v %v", res, err)
		}
	}
	over := blob("c", 1)
	_, err := e.put(e.writer, over)
	wantStatus(t, err, http.StatusTooManyRequests, "limit per signer (pending_bytes_per_signer) of 100 bytes")
	if _, err := e.store.Stat(ctx, e.key(sha256.Sum256(over))); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("a refused upload was stored: %v", err)
	}
	// The same bytes again: stored already, not counted again.
	if res, err := e.put(e.writer, first); err != nil || res.Created {
		t.Fatalf("second upload of a stored blob: %+v %v", res, err)
	}
	if res, err := e.put(e.patient, first); err != nil || res.Created {
		t.Fatalf("the owner uploads the same blob: %+v %v", res, err)
	}
	// Other signers are unaffected, up to the total.
	if _, err := e.put(e.patient, blob("d", 100)); err != nil {
		t.Fatal(err)
	}
	_, err = e.put(w2, blob("e", 51))
	wantStatus(t, err, 507, "limit (pending_bytes_total) of 250 bytes")
	if _, err := e.put(w2, blob("e", 50)); err != nil {
		t.Fatal(err)
	}
	// A record of the first blob is committed; the index has not read it,
	// until an upload would be refused.
	e.chain.advance(time.Second)
	e.chain.addRecord(e.pid, sha256.Sum256(first), e.writer)
	if res, err := e.put(e.writer, blob("f", 60)); err != nil || !res.Created {
		t.Fatalf("upload after a record freed 60 bytes: %+v %v", res, err)
	}
	if mine, total := e.srv.pending.usage(signerAddr(e.writer.Address())); mine != 100 || total != 250 {
		t.Fatalf("pending: writer %d, all %d; want 100, 250", mine, total)
	}
	// The sweep deletes the unreferenced blobs, and their bytes go.
	ageBlobs(t, e)
	if rep, err := e.srv.Sweep(ctx); err != nil || rep.Deleted != 4 {
		t.Fatalf("sweep: %+v %v", rep, err)
	}
	if mine, total := e.srv.pending.usage(signerAddr(e.writer.Address())); mine != 0 || total != 0 {
		t.Fatalf("pending after the sweep: writer %d, all %d; want 0", mine, total)
	}
	if _, err := e.put(e.writer, blob("g", 100)); err != nil {
		t.Fatal(err)
	}
	metrics := scrape(t, e)
	for _, want := range []string{
		`emrchain_sidecar_quota_refusals_total{reason="signer_pending_bytes"} 1`,
		`emrchain_sidecar_quota_refusals_total{reason="pending_bytes"} 1`,
		`emrchain_sidecar_requests_total{outcome="insufficient_storage",route="put_blob"} 1`,
		`emrchain_sidecar_pending_bytes 100`,
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

// TestPendingQuotaRestart: a sidecar started over a store that holds
// blobs counts, before it accepts an upload, those its reference index
// does not hold, and refuses what would pass the total; blobs stored
// before the start count toward the total only.
func TestPendingQuotaRestart(t *testing.T) {
	e, _ := quotaEnv(t, 100, 200, nil)
	ctx := context.Background()
	dir := t.TempDir()
	referenced := storeBlob(t, e, strings.Repeat("r", 150))
	e.chain.addRecord(e.pid, referenced, e.writer)
	e.chain.advance(time.Second)
	first := newSweeper(t, e, dir) // reads the record into the index
	if _, err := first.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	shutdown(t, first)
	storeBlob(t, e, strings.Repeat("p", 90)) // pending
	storeBlob(t, e, strings.Repeat("q", 80)) // pending

	srv, err := New(Options{Store: e.store, Chain: e.chain, SweepInterval: -1, RefIndexDir: dir,
		PendingBytesPerSigner: 100, PendingBytesTotal: 200})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, srv)
	c := NewClient("http://"+srv.Addr().String(), e.writer, nil)
	put := func(d []byte) error {
		_, err := c.Put(ctx, e.pid, testCategory, sha256.Sum256(d), bytes.NewReader(d), int64(len(d)))
		return err
	}
	wantStatus(t, put(blob("x", 31)), 507, "hold 170 bytes")
	if err := put(blob("x", 30)); err != nil {
		t.Fatalf("upload up to the total: %v", err)
	}
	if mine, total := srv.pending.usage(signerAddr(e.writer.Address())); mine != 30 || total != 200 {
		t.Fatalf("pending after the restart: writer %d, all %d; want 30, 200", mine, total)
	}
}

// TestPendingQuotaConcurrent: concurrent uploads of one signer cannot
// pass its bound together, and concurrent uploads of one blob count it
// once.
func TestPendingQuotaConcurrent(t *testing.T) {
	e, _ := quotaEnv(t, 35, 0, nil)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.put(e.writer, blob(fmt.Sprint(i), 10))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch statusOf(err) {
		case 0:
			if err != nil {
				t.Fatal(err)
			}
			ok++
		case http.StatusTooManyRequests:
		default:
			t.Fatal(err)
		}
	}
	if mine, _ := e.srv.pending.usage(signerAddr(e.writer.Address())); ok != 3 || mine != 30 {
		t.Fatalf("%d of %d concurrent 10-byte uploads passed a 35-byte bound, %d bytes pending; want 3, 30", ok, n, mine)
	}

	e, _ = quotaEnv(t, 35, 0, nil)
	same := blob("s", 30)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.put(e.writer, same)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent uploads of one blob: %v", err)
		}
	}
	if mine, total := e.srv.pending.usage(signerAddr(e.writer.Address())); mine != 30 || total != 30 {
		t.Fatalf("one blob uploaded %d times at once: %d bytes pending (%d in all), want 30", n, mine, total)
	}
}

// TestPendingQuotaOff: with every bound negative nothing is counted.
func TestPendingQuotaOff(t *testing.T) {
	e, _ := quotaEnv(t, -1, -1, func(o *Options) { o.PendingBytesPatients = -1 })
	if e.srv.pending != nil {
		t.Fatal("pending uploads are counted with no bound")
	}
	if _, err := e.put(e.writer, blob("big", 1000)); err != nil {
		t.Fatal(err)
	}
}

// TestPendingQuotaPatientsHTTP, through the server: once the patients'
// uploads together reach pending_bytes_patients, a patient's next upload is
// refused (507, naming the limit), and a clinician still uploads.
func TestPendingQuotaPatientsHTTP(t *testing.T) {
	e, _ := quotaEnv(t, 1000, 1000, func(o *Options) { o.PendingBytesPatients = 100 })
	if _, err := e.put(e.patient, blob("p", 100)); err != nil {
		t.Fatal(err)
	}
	_, err := e.put(e.patient, blob("q", 1))
	wantStatus(t, err, http.StatusInsufficientStorage, "their limit (pending_bytes_patients) of 100 bytes")
	if _, err := e.put(e.writer, blob("w", 500)); err != nil {
		t.Fatalf("a clinician's upload after the patients' share is used up: %v", err)
	}
	if got := e.srv.pending.patientsUsage(); got != 100 {
		t.Fatalf("patients' pending bytes %d, want 100", got)
	}
}

// TestPendingQuotaPatientsRestart: the patients' share survives a restart.
// The store does not say who uploaded a blob, so blobs found at the
// rebuild count toward the patients' share as well as the total: else
// every restart hands patients a fresh share on top of what they already
// hold, and together they can take the whole total from the members a
// registrar registered, which the share exists to prevent.
func TestPendingQuotaPatientsRestart(t *testing.T) {
	const patients, total = 100, 200
	e, _ := quotaEnv(t, total, total, func(o *Options) { o.PendingBytesPatients = patients })
	if _, err := e.put(e.patient, blob("p", patients)); err != nil { // the patients' share, used up
		t.Fatal(err)
	}

	srv, err := New(Options{Store: e.store, Chain: e.chain, SweepInterval: -1,
		PendingBytesPerSigner: total, PendingBytesPatients: patients, PendingBytesTotal: total})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, srv)
	put := func(a *actor, d []byte) error {
		_, err := NewClient("http://"+srv.Addr().String(), a, nil).Put(context.Background(), e.pid, testCategory,
			sha256.Sum256(d), bytes.NewReader(d), int64(len(d)))
		return err
	}
	wantStatus(t, put(e.patient, blob("q", 1)), http.StatusInsufficientStorage, "their limit (pending_bytes_patients) of 100 bytes")
	if err := put(e.writer, blob("w", total-patients)); err != nil {
		t.Fatalf("a clinician's upload within the rest of the total, after a restart: %v", err)
	}
}

// TestPendingQuotaPatientsDefault: with the patients' bound unset, it is
// half the total, so a total set below the 32 GiB default still leaves the
// registered members the other half.
func TestPendingQuotaPatientsDefault(t *testing.T) {
	e, _ := quotaEnv(t, 1000, 200, nil)
	if _, err := e.put(e.patient, blob("p", 100)); err != nil {
		t.Fatal(err)
	}
	_, err := e.put(e.patient, blob("q", 1))
	wantStatus(t, err, http.StatusInsufficientStorage, "their limit (pending_bytes_patients) of 100 bytes")
	if _, err := e.put(e.writer, blob("w", 100)); err != nil {
		t.Fatalf("a clinician's upload within the rest of the total: %v", err)
	}
}
