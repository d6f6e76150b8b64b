package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestReplayedHeightWaitIsCharged: the wait for X-Emr-Min-Height runs
// before the replay cache is consulted, and X-Emr-Min-Height is not
// signed. One signed request of any member (seen by a peer sidecar it was
// forwarded to, a proxy, a log, or signed by a self-enrolled patient)
// sent again and again with a height far ahead must be charged like the
// same replay without the header (401 "replayed request"), so that the
// host is limited after FailedAuthPerMinute of them: only the first copy
// of a member's request waits uncharged (a reviewer's finding, session
// 37).
func TestReplayedHeightWaitIsCharged(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxHeightWait = 100 * time.Millisecond
		o.FailedAuthPerMinute = 2
	})
	sum := sha256.Sum256([]byte("anything"))
	ref := RecordRef(e.pid, 1)
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/blobs/"+hex.EncodeToString(sum[:])+"?"+ref.query(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := SignRequest(req, e.reader, ""); err != nil { // one request a member signed
		t.Fatal(err)
	}
	send := func(minHeight string) int {
		r := req.Clone(req.Context())
		r.Header.Del(HeaderMinHeight)
		if minHeight != "" {
			r.Header.Set(HeaderMinHeight, minHeight)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	statuses := map[int]int{}
	const n = 8
	for range n {
		statuses[send("1099511627776")]++ // the same signed request, replayed, a height far ahead
	}
	t.Logf("%d replays of one member-signed request with %s far ahead: statuses %v", n, HeaderMinHeight, statuses)
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("replays of one signed request, each kept waiting on the node, were never charged: %v", statuses)
	}
	// Control: the same replays without the header are charged (401
	// replayed) and the host is soon refused (429).
	if err := SignRequest(req, e.reader, ""); err != nil {
		t.Fatal(err)
	}
	control := map[int]int{}
	for range n {
		control[send("")]++
	}
	t.Logf("the same without the header: statuses %v", control)
	if control[http.StatusTooManyRequests] == 0 {
		t.Fatalf("control: replays without the header were not limited: %v", control)
	}
}

// TestMemberWhoGivesUpIsNotCharged: when the client gives up during the
// height wait (its own timeout shorter than MaxHeightWait, Ctrl-C), the
// request's context is cancelled and the wait ends with chain_behind. The
// lookup that decides the charge must not use that context (ctxChain: a
// lookup over the network, as NewNodeChainView over rpchttp for a
// standalone "emrchaind sidecar", fails on a cancelled context), or the
// member's request is charged as if no member had signed it (a
// reviewer's finding, session 37): its host's token must come back.
func TestMemberWhoGivesUpIsNotCharged(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxHeightWait = 300 * time.Millisecond
		o.FailedAuthPerMinute = 1
		o.Chain = ctxChain{o.Chain}
	})
	sum := sha256.Sum256([]byte("anything"))
	ref := RecordRef(e.pid, 1)
	c := e.client(e.reader)
	c.MinHeight = 1 << 40
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	var buf bytes.Buffer
	_, err := c.Get(ctx, ref, sum, &buf, nil)
	cancel()
	if err == nil {
		t.Fatal("served")
	}
	// The handler finishes its wait, then gives the host's token back,
	// unless it charges it (it would stay taken for a minute).
	host := netip.MustParseAddr("127.0.0.1")
	for i := 0; ; i++ {
		e.srv.authFails.mu.Lock()
		_, taken := e.srv.authFails.full[host]
		e.srv.authFails.mu.Unlock()
		if !taken {
			break
		}
		if i == 100 {
			t.Fatal("a member whose client gave up during the height wait was charged a failed authentication: its host's token is still taken after 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctxChain is a chain view whose member lookups fail once their context
// is done, as a lookup over rpchttp does.
type ctxChain struct{ ChainView }

func (c ctxChain) Member(ctx context.Context, addr []byte) (*emrv1.Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: abci_query Member: %v", ErrChainUnavailable, err)
	}
	return c.ChainView.Member(ctx, addr)
}
