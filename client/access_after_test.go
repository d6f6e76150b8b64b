package client

import (
	"slices"
	"testing"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// logPage is the AccessEvents page of a log of n events, pages of limit
// events, after the cursor after: the query's answer (app.Querier).
func logPage(n, limit, after uint64) *emrv1.QueryAccessEventsResponse {
	resp := &emrv1.QueryAccessEventsResponse{Page: &emrv1.PageResponse{Total: n}}
	from := n
	if after > 0 {
		from = after - 1
	}
	for seq := from; seq >= 1 && uint64(len(resp.Events)) < limit; seq-- {
		resp.Events = append(resp.Events, &emrv1.AccessEvent{Sequence: seq})
		if uint64(len(resp.Events)) == limit && seq > 1 {
			resp.Page.Next = seq
		}
	}
	return resp
}

// TestAccessEventsAfterReadsWhatIsNew: over every log length, page size and
// last event seen, the pages read give exactly the events after it, newest
// first, and no page is read past the one that reaches it.
func TestAccessEventsAfterReadsWhatIsNew(t *testing.T) {
	for n := uint64(0); n <= 7; n++ {
		for limit := uint64(1); limit <= 4; limit++ {
			for seen := uint64(0); seen <= n+1; seen++ {
				var got []uint64
				pages := 0
				list, err := allPages("access events", func(after uint64) ([]*emrv1.AccessEvent, uint64, error) {
					pages++
					events, next := accessEventsAfter(logPage(n, limit, after), seen)
					return events, next, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range list {
					got = append(got, ev.Sequence)
				}
				var want []uint64
				for seq := n; seq > seen; seq-- {
					want = append(want, seq)
				}
				// The pages that hold the new events, or the one page that
				// says there are none: never the page after.
				wantPages := max(1, (len(want)+int(limit)-1)/int(limit))
				if !slices.Equal(got, want) || pages != wantPages {
					t.Errorf("log of %d, pages of %d, seen %d: got %v in %d pages, want %v in %d", n, limit, seen, got, pages, want, wantPages)
				}
			}
		}
	}
}
