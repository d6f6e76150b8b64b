package sidecar

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// A GET is authorized before it waits, and again before its first byte:
// handleGet may wait a long time between the two, for the whole-copy read
// that must precede a range (checkCopyForRange, up to rangeCheckTimeout,
// 5 minutes), or for a read-through from a peer (fetchFromPeers: the
// blob's lock, which an upload holds however slowly, then up to
// peerTimeout plus the transfer). A consent revoked, or an access window
// that ended, while the request waited must stop the bytes. These tests
// let the authority lapse during the wait and want the answer refused
// (found by the session-47 review; they failed when handleGet authorized
// once).

type waitResult struct {
	body []byte
	err  error
}

// TestRangeIsNotServedAfterTheConsentLapsedDuringTheCopyCheck: a range
// of a copy not yet verified waits for the whole-copy read; the reader's
// consent is revoked (or its access window ends) meanwhile; the range
// must not be served.
func TestRangeIsNotServedAfterTheConsentLapsedDuringTheCopyCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lapse func(e *env)
		why   string
	}{
		{"revoked", func(e *env) { e.chain.revoke(e.rperm) }, "revoked"},
		{"window ended", func(e *env) { e.chain.advance(DefaultAccessWindow + time.Minute) }, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, data, sum, rec := readableRecord(t)
			fsys, err := blobstore.OpenFS(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			store := &gatedStore{FS: fsys, opened: make(chan struct{}), release: make(chan struct{})}
			ts, _ := peerOf(t, e, func(o *Options) { o.Store = store }) // no peer
			writeCopy(t, fsys.Path(e.key(sum)), data)
			ref := RecordRef(rec.PatientId, rec.Sequence)

			done := make(chan waitResult, 1)
			go func() {
				var buf bytes.Buffer
				_, err := NewClient(ts.URL, e.reader, nil).Get(context.Background(), ref, sum, &buf, &Range{Start: 10, Length: 100})
				done <- waitResult{buf.Bytes(), err}
			}()
			<-store.opened // authorized; the range waits for the copy's check
			tc.lapse(e)
			close(store.release)
			r := <-done
			if r.err == nil {
				t.Fatalf("%d bytes of the range were served to a reader whose authority lapsed while the request waited for the copy check", len(r.body))
			}
			wantStatus(t, r.err, http.StatusForbidden, tc.why)
		})
	}
}

// TestReadThroughIsNotServedAfterTheConsentWasRevokedDuringTheTransfer:
// sidecar B lacks the blob and reads it through from peer A, which
// authorizes the forwarded request at once and then takes its time to
// deliver (a large blob, a slow link). The reader's consent is revoked
// while the transfer runs; B must not then serve the blob it kept.
func TestReadThroughIsNotServedAfterTheConsentWasRevokedDuringTheTransfer(t *testing.T) {
	e, data, sum, rec := readableRecord(t) // e's sidecar (A) holds the blob
	answered, release := make(chan struct{}), make(chan struct{})
	slowA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, r) // A authorizes and answers now
		close(answered)
		<-release // ...and the bytes reach B later
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(slowA.Close)
	b, _ := peerOf(t, e, nil, slowA.URL)

	done := make(chan waitResult, 1)
	go func() {
		var buf bytes.Buffer
		_, err := NewClient(b.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
		done <- waitResult{buf.Bytes(), err}
	}()
	<-answered
	e.chain.revoke(e.rperm)
	close(release)
	r := <-done
	if r.err == nil && bytes.Equal(r.body, data) {
		t.Fatal("B served the whole blob to a reader whose consent was revoked before B sent its first byte")
	}
	wantStatus(t, r.err, http.StatusForbidden, "revoked")
}

// freshMembers is the fake chain whose Member answers a copy, as the real
// ChainView (queryView) does: every query decodes a new message. The fake
// otherwise hands out the very *Member that setStatus edits, so a caller
// authenticated before a suspension sees it without asking the chain again.
type freshMembers struct{ *fakeChain }

func (f freshMembers) Member(ctx context.Context, addr []byte) (*emrv1.Member, error) {
	m, err := f.fakeChain.Member(ctx, addr)
	if err != nil {
		return nil, err
	}
	f.mu.Lock() // setStatus edits m under it
	defer f.mu.Unlock()
	return proto.Clone(m).(*emrv1.Member), nil
}

// TestRangeIsNotServedToAMemberSuspendedDuringTheCopyCheck: the reader is
// suspended while its range waits for the copy check. The second
// authorization reads the membership anew: the one authentication read is
// from before the wait, and with a chain that answers fresh messages (the
// real one) it would not show the suspension (the session-47 re-review).
func TestRangeIsNotServedToAMemberSuspendedDuringTheCopyCheck(t *testing.T) {
	e, data, sum, rec := readableRecord(t)
	fsys, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &gatedStore{FS: fsys, opened: make(chan struct{}), release: make(chan struct{})}
	ts, _ := peerOf(t, e, func(o *Options) { o.Store, o.Chain = store, freshMembers{e.chain} })
	writeCopy(t, fsys.Path(e.key(sum)), data)

	done := make(chan waitResult, 1)
	go func() {
		var buf bytes.Buffer
		_, err := NewClient(ts.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, &Range{Start: 10, Length: 100})
		done <- waitResult{buf.Bytes(), err}
	}()
	<-store.opened // authenticated and authorized; the range waits for the copy check
	e.chain.setStatus(e.reader, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	close(store.release)
	r := <-done
	if r.err == nil {
		t.Fatalf("%d bytes of the range were served to a member suspended while the request waited for the copy check", len(r.body))
	}
	wantStatus(t, r.err, http.StatusForbidden, "suspended")
}
