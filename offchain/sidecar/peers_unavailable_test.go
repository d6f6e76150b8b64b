package sidecar

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestUnavailablePeerIsNotNoPeer: a sidecar that lacks a blob, whose
// peers did not answer (down) or failed (5xx), cannot know that none of
// them holds it: its answer is 503 peers_unavailable, which asking again
// may mend, not 404 "no peer has it", which the client takes as a refusal
// (ErrSidecarsRefused: "retrying will not help"). A peer that answers 404
// beside one that is down does not make it a 404 either. Peers that all
// answer 404 still do.
func TestUnavailablePeerIsNotNoPeer(t *testing.T) {
	e := newEnv(t, nil)
	_, sum, rec := uploadedRecord(t, e) // only e's sidecar holds it
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "the store is down", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	lacking, _ := peerOf(t, e, nil) // up, without the blob: answers a forward 404

	get := func(peers ...string) error {
		t.Helper()
		b, _ := peerOf(t, e, nil, peers...)
		var buf bytes.Buffer
		_, err := NewClient(b.URL, e.reader, nil).Get(context.Background(), RecordRef(rec.PatientId, rec.Sequence), sum, &buf, nil)
		return err
	}
	for name, peers := range map[string][]string{
		"a peer that is down":             {down.URL},
		"a peer that fails":               {failing.URL},
		"one that lacks it and one down":  {lacking.URL, down.URL},
		"one down and one that lacks it":  {down.URL, lacking.URL},
		"one that fails and one that 404": {failing.URL, lacking.URL},
	} {
		err := get(peers...)
		var se *Error
		if statusOf(err) != http.StatusServiceUnavailable || !errors.As(err, &se) || se.Code != "peers_unavailable" {
			t.Errorf("%s: %v; want 503 peers_unavailable", name, err)
		}
	}
	wantStatus(t, get(lacking.URL), http.StatusNotFound, "no peer sidecar has the blob")
}
