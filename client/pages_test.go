package client

import (
	"context"
	"errors"
	"testing"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestANumberedPageMissingAnItemIsRefused: a node that leaves an item of
// a numbered list (shares, a study's shares, a break-glass log) and its
// proof out of a page that is not the list's last, and puts the next
// proven item in its place, gives a page the app's query code computes
// as it does an honest one: only the numbers show the gap. The honest
// page passes.
func TestANumberedPageMissingAnItemIsRefused(t *testing.T) {
	seq := (*emrv1.Share).GetSequence
	shares := func(n ...uint64) []*emrv1.Share {
		var out []*emrv1.Share
		for _, s := range n {
			out = append(out, &emrv1.Share{Sequence: s})
		}
		return out
	}
	// Four shares, pages of two.
	if err := checkNumbered("Shares", "share", shares(1, 2), seq, 0, &emrv1.PageResponse{Total: 4, Next: 2}); err != nil {
		t.Fatalf("honest first page: %v", err)
	}
	if err := checkNumbered("Shares", "share", shares(1, 3), seq, 0, &emrv1.PageResponse{Total: 4, Next: 3}); !errors.Is(err, ErrVerification) {
		t.Fatalf("first page without share 2: %v, want ErrVerification", err)
	}
	if err := checkNumbered("Shares", "share", shares(3, 4), seq, 1, &emrv1.PageResponse{Total: 4}); !errors.Is(err, ErrVerification) {
		t.Fatalf("page after 1 without share 2: %v, want ErrVerification", err)
	}
}

// TestAccessEventsPageBoundaries: checkComplete's arithmetic of an
// AccessEvents page (newest first; after is the last sequence the
// previous page showed). A page after event 1 is honestly empty; a page
// of the newest two that skips one is refused.
func TestAccessEventsPageBoundaries(t *testing.T) {
	ctx := context.Background()
	events := func(n ...uint64) []*emrv1.AccessEvent {
		var out []*emrv1.AccessEvent
		for _, s := range n {
			out = append(out, &emrv1.AccessEvent{Sequence: s})
		}
		return out
	}
	page := func(after uint64, limit uint32) *emrv1.QueryAccessEventsRequest {
		return &emrv1.QueryAccessEventsRequest{Page: &emrv1.PageRequest{After: after, Limit: limit}}
	}
	for _, c := range []struct {
		name string
		req  *emrv1.QueryAccessEventsRequest
		resp *emrv1.QueryAccessEventsResponse
		ok   bool
	}{
		{"EmptyAfterTheFirst", page(1, 2), &emrv1.QueryAccessEventsResponse{Page: &emrv1.PageResponse{Total: 5}}, true},
		{"LastPage", page(3, 2), &emrv1.QueryAccessEventsResponse{Events: events(2, 1), Page: &emrv1.PageResponse{Total: 5}}, true},
		{"NewestTwo", page(0, 2), &emrv1.QueryAccessEventsResponse{Events: events(5, 4), Page: &emrv1.PageResponse{Total: 5, Next: 4}}, true},
		{"NewestTwoSkippingOne", page(0, 2), &emrv1.QueryAccessEventsResponse{Events: events(5, 3), Page: &emrv1.PageResponse{Total: 5, Next: 3}}, false},
		{"AllButTheOldest", page(0, 0), &emrv1.QueryAccessEventsResponse{Events: events(5, 4, 3, 2), Page: &emrv1.PageResponse{Total: 5}}, false},
	} {
		err := checkComplete(ctx, "AccessEvents", c.req, c.resp, nil)
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrVerification) {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}
}
