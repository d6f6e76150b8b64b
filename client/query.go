package client

import (
	"context"
	"fmt"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	"github.com/cometbft/cometbft/light"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// QueryInfo says where a query answer comes from.
type QueryInfo struct {
	// Height of the state the answer was read from.
	Height int64
	// Time of the header at Height+1, whose AppHash the proofs were
	// checked against (zero when not verified).
	Time time.Time
	// Verified is true when the answer was verified.
	Verified bool
}

// timeOrNow is the verified header time, or the local clock when the
// answer was not verified.
func (q *QueryInfo) timeOrNow() time.Time {
	if q.Time.IsZero() {
		return time.Now()
	}
	return q.Time
}

// Query calls a method of the Query service ("Member", "Records", ...)
// over ABCI query. In verified mode the answer is checked as described in
// the package documentation; any failure wraps ErrVerification and resp is
// then not to be used. A "not found" from the chain wraps ErrNotFound and,
// in verified mode, is itself verified.
func (c *Client) Query(ctx context.Context, method string, req, resp proto.Message) error {
	_, err := c.QueryInfo(ctx, method, req, resp)
	return err
}

// QueryInfo is Query that also says at which height (and, verified, at
// which header time) the answer holds. In verified mode the answer is of
// the state at readHeight: never older than Client.MinHeight, and the
// height is then raised to the answer's.
func (c *Client) QueryInfo(ctx context.Context, method string, req, resp proto.Message) (*QueryInfo, error) {
	if queryHandler(method) == nil {
		return nil, fmt.Errorf("unknown query method %q", method)
	}
	if !c.cfg.Verify {
		if err := c.queryUnverified(ctx, 0, method, req, resp); err != nil {
			return nil, err
		}
		return &QueryInfo{Height: heightOf(resp)}, nil
	}
	height, lb, err := c.readHeight(ctx)
	if err != nil {
		return nil, err
	}
	return c.queryAt(ctx, height, lb, method, req, resp)
}

// QueryInfoAt is QueryInfo of the state at height, one an earlier answer
// was read from (its QueryInfo.Height): for reading more of one state, as
// a listing does whose items are judged by other parts of the state, or
// pages through a list. Verified, the answer is checked as QueryInfo's,
// against the verified header height+1 (which the client has verified
// already when an earlier answer came from that state).
func (c *Client) QueryInfoAt(ctx context.Context, height int64, method string, req, resp proto.Message) (*QueryInfo, error) {
	if queryHandler(method) == nil {
		return nil, fmt.Errorf("unknown query method %q", method)
	}
	if height < 1 {
		return nil, fmt.Errorf("query %s at height %d: want the height of an earlier answer", method, height)
	}
	if !c.cfg.Verify {
		if err := c.queryUnverified(ctx, height, method, req, resp); err != nil {
			return nil, err
		}
		return &QueryInfo{Height: heightOf(resp)}, nil
	}
	lb, err := c.verifiedBlock(ctx, height+1)
	if err != nil {
		return nil, err
	}
	return c.queryAt(ctx, height, lb, method, req, resp)
}

// readHeight picks the state a verified read is made at: the one the
// newest header the node has (by its status) commits to, and never older
// than minHeight. It returns that height H and the light-client-verified
// header H+1, whose AppHash proves state H. The node's status is not
// trusted: a node that claims an older head than the client has seen is
// waited for, and refused (ErrStale) if it does not catch up. Nor is it
// the only word on how new the chain is: when a witness has a header more
// than lightMaxBlockLag newer than the node's head, verified from it
// (witnessAhead), the node must reach that header too, or is refused
// alike.
//
// With a Home, the verification also reads the newest header any run of
// it has verified (withLight). When that is newer than the head chosen,
// another run returned a newer state meanwhile (before this read began,
// or while it chose): the read is chosen again, once, from that floor, so
// it is never older than what another run had verified when it began.
func (c *Client) readHeight(ctx context.Context) (int64, *cmttypes.LightBlock, error) {
	var ahead *witnessHeader // a witness's newer header, which the node must reach
	for attempt := 0; ; attempt++ {
		head, err := c.LatestHeight(ctx)
		if err != nil {
			return 0, nil, err
		}
		if floor := c.minHeight.Load() + 1; head < floor {
			if err := c.waitHeight(ctx, floor); err != nil {
				if ahead != nil {
					return 0, nil, fmt.Errorf("%w: node %s reports head %d, and witness %s has a header at height %d, %s newer: the node lags, or withholds blocks (read through another node, emrcli --node): %w",
						ErrStale, c.cfg.Node, head, ahead.witness, ahead.height, ahead.ahead.Round(time.Millisecond), err)
				}
				return 0, nil, fmt.Errorf("%w: node %s is behind height %d, which this client has already seen: %w", ErrStale, c.cfg.Node, floor-1, err)
			}
			head = floor
		}
		head = max(head, 2) // state 1 is the first one a header proves
		lb, witnessHeads, err := c.verifiedBlockAndWitnesses(ctx, head)
		if err != nil {
			return 0, nil, err
		}
		// A header already in the light store verifies without a look at
		// its age: the node's head must be within the trusting period, as
		// any newer header it could report would have to be verified from.
		if light.HeaderExpired(lb.SignedHeader, c.trust.Period, c.now()) {
			return 0, nil, trustExpired(head, lb.Time.Add(c.trust.Period))
		}
		if attempt == 0 {
			if ahead, err = c.witnessAhead(ctx, lb, witnessHeads); err != nil {
				return 0, nil, err
			}
			if ahead != nil {
				// A verified header: the reads from here on are at least as new.
				c.raiseMinHeight(ahead.height - 1)
				continue
			}
		}
		if head-1 >= c.minHeight.Load() || attempt > 0 {
			return head - 1, lb, nil
		}
	}
}

// queryAt runs a verified query at height, against lb (the verified
// header height+1), as the package documentation describes. An answer
// for another height is refused (ErrStale when older).
func (c *Client) queryAt(ctx context.Context, height int64, lb *cmttypes.LightBlock, method string, req, resp proto.Message) (*QueryInfo, error) {
	handler := queryHandler(method)
	if handler == nil {
		return nil, fmt.Errorf("unknown query method %q", method)
	}
	if lb.Height != height+1 {
		return nil, fmt.Errorf("query %s at height %d: header %d given, %d needed", method, height, lb.Height, height+1)
	}
	q, err := c.abciQuery(ctx, method, req, height, true)
	if err != nil {
		return nil, err
	}
	if q.Code != 0 {
		cerr := &ChainError{Code: q.Code, Codespace: q.Codespace, Log: q.Log}
		if q.Codespace == app.Codespace {
			return nil, c.verifyFailure(ctx, height, lb.AppHash, handler, req, cerr)
		}
		return nil, cerr
	}
	proto.Reset(resp)
	if err := proto.Unmarshal(q.Value, resp); err != nil {
		return nil, verificationError("%s response does not decode: %v", method, err)
	}
	if h := heightOf(resp); h != height {
		return nil, wrongHeight(method, height, h)
	}
	if q.Height != 0 && q.Height != height {
		return nil, wrongHeight(method+" (ABCI)", height, q.Height)
	}
	pr, err := newProvenReader(lb.AppHash, proofsOf(resp))
	if err != nil {
		return nil, err
	}
	local, err := callQuerier(ctx, handler, pr, req)
	if pr.missing != nil {
		return nil, verificationError("%s: the answer depends on key %X, which the node did not prove", method, pr.missing)
	}
	if err != nil {
		return nil, verificationError("%s: the proven state gives no answer (%v) but the node gave one", method, err)
	}
	stripped := proto.Clone(resp)
	clearHeightAndProofs(stripped)
	if !proto.Equal(stripped, local) {
		return nil, verificationError("%s: the node's answer differs from what its proofs show", method)
	}
	if err := checkComplete(ctx, method, req, local, pr); err != nil {
		return nil, err
	}
	if rangeProven[method] {
		if err := c.proveRangesComplete(ctx, height, lb.AppHash, pr); err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
	}
	c.raiseMinHeight(height)
	return &QueryInfo{Height: height, Time: lb.Time, Verified: true}, nil
}

// queryHistorical is a verified query at an explicit past height (state
// height, proven by header height+1), below Client.MinHeight if need be:
// for looking back (Submit, finding where a sequence was used), never for
// reading the current state.
func (c *Client) queryHistorical(ctx context.Context, height int64, method string, req, resp proto.Message) error {
	lb, err := c.verifiedBlock(ctx, height+1)
	if err != nil {
		return err
	}
	_, err = c.queryAt(ctx, height, lb, method, req, resp)
	return err
}

// queryUnverified asks the node about its state at height (0: its latest)
// and trusts the answer (see Sequence).
func (c *Client) queryUnverified(ctx context.Context, height int64, method string, req, resp proto.Message) error {
	q, err := c.abciQuery(ctx, method, req, height, false)
	if err != nil {
		return err
	}
	if q.Code != 0 {
		return &ChainError{Code: q.Code, Codespace: q.Codespace, Log: q.Log}
	}
	proto.Reset(resp)
	if err := proto.Unmarshal(q.Value, resp); err != nil {
		return fmt.Errorf("decode %s response: %w", method, err)
	}
	return nil
}

// abciQuery sends req to a method of the Query service at height (0 = the
// node's latest), with proofs when prove, and returns the node's answer
// whatever its code.
func (c *Client) abciQuery(ctx context.Context, method string, req proto.Message, height int64, prove bool) (*abci.QueryResponse, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", method, err)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := c.rpc.ABCIQueryWithOptions(ctx, app.QueryPathPrefix+method, data, rpcclient.ABCIQueryOptions{Height: height, Prove: prove})
	if err != nil {
		return nil, fmt.Errorf("query %s at %s: %w", method, c.cfg.Node, err)
	}
	return &res.Response, nil
}

// verifyFailure re-runs a query the node failed over state proven key by
// key at the height asked (against root, the AppHash of header height+1):
// the failure stands only when the proven state fails the same way (its
// message is then computed locally, not the node's).
func (c *Client) verifyFailure(ctx context.Context, height int64, root []byte, handler grpc.MethodHandler, req proto.Message, nodeErr *ChainError) error {
	lr := &lazyReader{ctx: ctx, c: c, height: height, root: root}
	_, err := callQuerier(ctx, handler, lr, req)
	switch {
	case lr.err != nil:
		return fmt.Errorf("checking the node's answer %q: %w", nodeErr.Log, lr.err)
	case lr.iterated:
		return verificationError("the node answered %q, which cannot be checked key by key", nodeErr.Log)
	case err == nil:
		return verificationError("the node answered %q, but the proven state answers the query", nodeErr.Log)
	case app.CodeOf(err) != nodeErr.Code:
		return verificationError("the node answered %q (code %d), the proven state says %q (code %d)", nodeErr.Log, nodeErr.Code, err, app.CodeOf(err))
	}
	c.raiseMinHeight(height)
	return &ChainError{Code: nodeErr.Code, Codespace: app.Codespace, Log: err.Error()}
}

// queryHandler finds a method of the Query service by name.
func queryHandler(method string) grpc.MethodHandler {
	for _, m := range emrv1.Query_ServiceDesc.Methods {
		if m.MethodName == method {
			return m.Handler
		}
	}
	return nil
}

// callQuerier runs the app's own query code over r: the answer the node
// should have given if r is the state.
func callQuerier(ctx context.Context, handler grpc.MethodHandler, r store.Reader, req proto.Message) (proto.Message, error) {
	out, err := handler(app.NewQuerier(r), ctx, func(in any) error {
		proto.Merge(in.(proto.Message), req)
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return out.(proto.Message), nil
}

func heightOf(m proto.Message) int64 {
	r := m.ProtoReflect()
	if f := r.Descriptor().Fields().ByName("height"); f != nil {
		return r.Get(f).Int()
	}
	return 0
}

func proofsOf(m proto.Message) []*emrv1.StoreProof {
	r := m.ProtoReflect()
	f := r.Descriptor().Fields().ByName("proofs")
	if f == nil {
		return nil
	}
	list := r.Get(f).List()
	out := make([]*emrv1.StoreProof, list.Len())
	for i := range out {
		out[i] = list.Get(i).Message().Interface().(*emrv1.StoreProof)
	}
	return out
}

func clearHeightAndProofs(m proto.Message) {
	r := m.ProtoReflect()
	for _, name := range []protoreflect.Name{"height", "proofs"} {
		if f := r.Descriptor().Fields().ByName(name); f != nil {
			r.Clear(f)
		}
	}
}

// checkNumbered checks a page of an ascending list numbered 1 to
// page.total: the items are numbered after+1, after+2, … with none
// missing, and the page ends at the list's end or says where the next
// starts.
func checkNumbered[T any](method, what string, items []T, number func(T) uint64, after uint64, page *emrv1.PageResponse) error {
	for i, item := range items {
		if got, due := number(item), after+1+uint64(i); got != due {
			return verificationError("%s: %s %d where %d was due: %ss are missing", method, what, got, due, what)
		}
	}
	n := uint64(len(items))
	switch next := page.GetNext(); {
	case next == 0 && after < page.GetTotal() && after+n != page.GetTotal():
		return verificationError("%s: the list stops at %d of %d: %ss are missing", method, after+n, page.GetTotal(), what)
	case next != 0 && (n == 0 || next != number(items[n-1])):
		return verificationError("%s: inconsistent next page %d", method, next)
	}
	return nil
}

// rangeProven are the list queries whose completeness no counter in the
// state vouches for: each range they walk is proven complete with
// non-existence proofs of the gaps (one raw-key proof per gap; BlobRefs,
// over every patient, needs about one per item). The
// sequence-numbered lists (Records, AccessEvents, Shares, StudyShares,
// BreakGlassLog) are checked against the proven patient, study or
// break-glass log counters instead
// (checkComplete). A query that reads keys one by one (Member,
// ValidatorKey, ...) needs neither: the node proves each key it read
// present or absent, and one it left out fails the re-run.
var rangeProven = map[string]bool{
	"Permissions": true, "Grants": true, "BlobRefs": true,
	// The validator set; the proposals; the organizations a proposal's
	// two thirds are counted from.
	"Validators": true, "Proposals": true, "Proposal": true,
	// An organization's registrars (its registrar index: one gap proof per
	// registrar, not per member).
	"Organization": true,
	// The organizations; an organization's members (its member index,
	// every entry a page read, matching its role filter or not).
	"Organizations": true, "Members": true,
}

// checkComplete makes sure a node cannot shorten a sequence-numbered list
// by leaving items (and their proofs) out: the items must be consecutive
// and reach the end the proven patient (study, break-glass log) counters
// say the list has.
func checkComplete(ctx context.Context, method string, req, resp proto.Message, pr *provenReader) error {
	switch method {
	case "Records":
		rq, rs := req.(*emrv1.QueryRecordsRequest), resp.(*emrv1.QueryRecordsResponse)
		after, last := rq.GetPage().GetAfter(), rs.GetPage().GetNext()
		if last == 0 {
			last = rs.GetPage().GetTotal()
		}
		// The app visited every record from after+1 to the page end; each
		// must have been proven, whatever the category filter.
		q := app.NewQuerier(pr)
		for seq := after + 1; seq <= last && seq > after; seq++ {
			pr.missing = nil
			_, err := q.Record(ctx, &emrv1.QueryRecordRequest{PatientId: rq.PatientId, Sequence: seq})
			if pr.missing != nil || err != nil {
				return verificationError("Records: record %d of %d is missing from the node's proofs", seq, rs.GetPage().GetTotal())
			}
		}
		for i, r := range rs.Records {
			if i > 0 && r.Sequence <= rs.Records[i-1].Sequence {
				return verificationError("Records: out of order at %d", r.Sequence)
			}
		}
	case "AccessEvents":
		rq, rs := req.(*emrv1.QueryAccessEventsRequest), resp.(*emrv1.QueryAccessEventsResponse)
		total, after := rs.GetPage().GetTotal(), rq.GetPage().GetAfter()
		start := total
		if after > 0 && after-1 < total {
			start = after - 1
		}
		for i, ev := range rs.Events {
			if uint64(i) >= start || ev.Sequence != start-uint64(i) {
				return verificationError("AccessEvents: event %d where %d was due: events are missing", ev.Sequence, start-uint64(i))
			}
		}
		n := uint64(len(rs.Events))
		switch next := rs.GetPage().GetNext(); {
		case next == 0 && n != start:
			return verificationError("AccessEvents: %d events listed where %d are due: events are missing", n, start)
		case next != 0 && (n == 0 || next != rs.Events[n-1].Sequence):
			return verificationError("AccessEvents: inconsistent next page %d", next)
		}
	case "Shares":
		rq, rs := req.(*emrv1.QuerySharesRequest), resp.(*emrv1.QuerySharesResponse)
		return checkNumbered("Shares", "share", rs.Shares, (*emrv1.Share).GetSequence, rq.GetPage().GetAfter(), rs.GetPage())
	case "StudyShares":
		rq, rs := req.(*emrv1.QueryStudySharesRequest), resp.(*emrv1.QueryStudySharesResponse)
		return checkNumbered("StudyShares", "share", rs.Shares, (*emrv1.Share).GetStudySequence, rq.GetPage().GetAfter(), rs.GetPage())
	case "BreakGlassLog":
		rq, rs := req.(*emrv1.QueryBreakGlassLogRequest), resp.(*emrv1.QueryBreakGlassLogResponse)
		return checkNumbered("BreakGlassLog", "break-glass read", rs.Entries, (*emrv1.BreakGlassEntry).GetSequence, rq.GetPage().GetAfter(), rs.GetPage())
	}
	return nil
}
