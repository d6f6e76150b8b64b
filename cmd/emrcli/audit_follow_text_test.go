package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// fakeAccessLog is a fake node (JSON-RPC abci_query only) holding one
// patient's access log, for an unverified client.
type fakeAccessLog struct {
	mu     sync.Mutex
	events []*emrv1.AccessEvent // oldest first
	height int64
	// memberReads counts the Member queries answered.
	memberReads int
}

func (l *fakeAccessLog) add(seq uint64, height int64, tx byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, &emrv1.AccessEvent{
		Sequence: seq, RecordSequence: 1, Accessor: bytes.Repeat([]byte{0xAB}, 20),
		Purpose: emrv1.Purpose_PURPOSE_TREATMENT, Height: height, Time: timestamppb.New(time.Unix(1_700_000_000+height, 0)),
		TxHash: bytes.Repeat([]byte{tx}, 32),
	})
	l.height = height
}

func (l *fakeAccessLog) serve(w http.ResponseWriter, r *http.Request) {
	serveABCIQuery(w, r, func(method string, data []byte) (proto.Message, int64) {
		l.mu.Lock()
		defer l.mu.Unlock()
		switch method {
		case "AccessEvents":
			q := &emrv1.QueryAccessEventsRequest{}
			_ = proto.Unmarshal(data, q)
			resp := &emrv1.QueryAccessEventsResponse{Page: &emrv1.PageResponse{Total: uint64(len(l.events))}, Height: l.height}
			for i := len(l.events) - 1; i >= 0; i-- {
				if after := q.GetPage().GetAfter(); after == 0 || l.events[i].Sequence < after {
					resp.Events = append(resp.Events, l.events[i])
				}
			}
			return resp, l.height
		case "Member":
			l.memberReads++
			return &emrv1.QueryMemberResponse{Member: &emrv1.Member{Address: bytes.Repeat([]byte{0xAB}, 20),
				OrganizationId: "dev-hospital", Role: emrv1.Role_ROLE_CLINICIAN}, Height: l.height}, l.height
		}
		return nil, l.height
	})
}

// fakeNodeClient serves handler as a fake node and returns an unverified
// client of it, and a context that ends d later (both closed when the
// test ends).
func fakeNodeClient(t *testing.T, handler http.HandlerFunc, d time.Duration) (context.Context, *client.Client) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	c, err := client.New(ctx, client.Config{Node: srv.URL, ChainID: "fake", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ctx, c
}

// serveABCIQuery answers a JSON-RPC abci_query (nothing else) of a fake
// node: answer gets the Query method and the request's bytes, and returns
// the response and the height it is of (nil: an empty answer).
func serveABCIQuery(w http.ResponseWriter, r *http.Request, answer func(method string, data []byte) (proto.Message, int64)) {
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Path string `json:"path"`
			Data string `json:"data"`
		} `json:"params"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &req); err != nil || req.Method != "abci_query" {
		http.Error(w, "unsupported", http.StatusBadRequest)
		return
	}
	data, _ := hex.DecodeString(req.Params.Data)
	out, height := answer(strings.TrimPrefix(req.Params.Path, app.QueryPathPrefix), data)
	var value []byte
	if out != nil {
		value, _ = proto.Marshal(out)
	}
	result, _ := cmtjson.Marshal(&ctypes.ResultABCIQuery{Response: abci.QueryResponse{Value: value, Height: height}})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":` + string(result) + `}`))
}

// followFake runs audit --follow (text) for 2 s over log, as a fake node
// serves it, calls later 400 ms in, and returns what it printed.
func followFake(t *testing.T, log *fakeAccessLog, later func()) string {
	t.Helper()
	ctx, c := fakeNodeClient(t, log.serve, 2*time.Second)
	pid := bytes.Repeat([]byte{0x5B}, 32)
	events, info, err := c.AllAccessEvents(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]*emrv1.Member{}
	rows, err := auditRows(ctx, c, events, members)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	f := &auditFollower{a: &cli{stdout: &stdout, stderr: &stderr}, c: c, patientID: pid, label: func(s string) string { return s }, verified: info.Verified, members: members}
	if len(events) > 0 {
		f.seen = events[0].Sequence
	}
	time.AfterFunc(400*time.Millisecond, later)
	if err := f.run(ctx, rows, info.Height, 100*time.Millisecond); err != nil {
		t.Fatalf("run: %v; stderr: %s", err, stderr.String())
	}
	t.Logf("stdout:\n%s", stdout.String())
	return stdout.String()
}

// followText is followFake over a log of two reads that gets a third.
func followText(t *testing.T) string {
	t.Helper()
	log := &fakeAccessLog{}
	log.add(1, 10, 0x01)
	log.add(2, 11, 0x02)
	out := followFake(t, log, func() { log.add(3, 12, 0x03) })
	// The accessor (one member, in every batch) is read once: its
	// organization and role never change.
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.memberReads != 1 {
		t.Fatalf("audit --follow read the accessor's member entry %d times, want once", log.memberReads)
	}
	return out
}

// blocks are the BLOCK cells (last column) of the lines after the header.
func blocks(out string) []string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var b []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		b = append(b, f[len(f)-1])
	}
	return b
}

// TestFollowTextIsChronological: the followed reads are printed below
// the table, so with --follow the table runs oldest first (as --follow
// --json does): else the newest read shown so far sat at the top and the
// next one at the bottom, under the oldest (the session-51 review).
func TestFollowTextIsChronological(t *testing.T) {
	out := followText(t)
	if got := strings.Join(blocks(out), ","); got != "10,11,12" {
		t.Fatalf("audit --follow printed the reads of blocks %s, in that order; want 10,11,12 (oldest first, the new one last)", got)
	}
}

// TestFollowTextKeepsTheColumns: each new read is one more line of the
// table, in its columns: its BLOCK cell sits under BLOCK.
func TestFollowTextKeepsTheColumns(t *testing.T) {
	out := followText(t)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	col := strings.Index(lines[0], "BLOCK")
	last := lines[len(lines)-1]
	if !strings.HasSuffix(last, " 12") || strings.LastIndex(last, "12") != col {
		t.Fatalf("the followed read's BLOCK cell is at column %d, the header's BLOCK at %d:\n%s\n%s", strings.LastIndex(last, "12"), col, lines[0], last)
	}
}

// TestFollowFromAnEmptyLogKeepsTheColumns: a log empty when audit
// --follow starts prints the header alone; the first read then still
// sits under it (the session-51 review: the widths were the header
// words').
func TestFollowFromAnEmptyLogKeepsTheColumns(t *testing.T) {
	log := &fakeAccessLog{height: 9}
	out := followFake(t, log, func() { log.add(1, 12, 0x03) })
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the header and one read:\n%s", out)
	}
	col := strings.Index(lines[0], "BLOCK")
	if got := strings.LastIndex(lines[1], "12"); got != col {
		t.Fatalf("the followed read's BLOCK cell is at column %d, the header's BLOCK at %d:\n%s\n%s", got, col, lines[0], lines[1])
	}
}

// TestFollowEndsOnlyOnWhatAskingAgainCannotMend: a root of trust replaced
// or expired ends audit --follow; a verification failure (a witness out
// of reach is one), a node behind, or a network error does not.
func TestFollowEndsOnlyOnWhatAskingAgainCannotMend(t *testing.T) {
	for _, tc := range []struct {
		err  error
		ends bool
	}{
		{fmt.Errorf("light: %w", client.ErrTrustRootReplaced), true},
		{fmt.Errorf("%w: header 9: %w at 2026-11-25T00:00:00Z", client.ErrVerification, client.ErrTrustExpired), true},
		{fmt.Errorf("%w: header 9: no witness is left to cross-check it", client.ErrVerification), false},
		{fmt.Errorf("%w: node behind", client.ErrStale), false},
		{errors.New("dial tcp 127.0.0.1:26657: connection refused"), false},
	} {
		if got := followEnds(tc.err); got != tc.ends {
			t.Errorf("followEnds(%v) = %v, want %v", tc.err, got, tc.ends)
		}
	}
}
