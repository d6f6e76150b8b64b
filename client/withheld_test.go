package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestWithheldHead: a node that reports an old head, withholding the
// blocks after it, serves the state under that head, correctly proven: an
// audit trail without the patient's newest read. A client with a witness
// that has the newer blocks refuses the node (ErrStale, naming the
// witness); a witness that claims a head it has no header for stops
// nothing. Without witnesses the client cannot tell (the documented
// limit, asserted here so that the scenario is shown to bite). The later
// subtests are the session-45 and session-46 reviews' ways around the
// check. They share one node, each with its own newest read.
func TestWithheldHead(t *testing.T) {
	w, ctx := runningWorld(t, 240*time.Second)
	honest := w.mustClient(t, w.node.RPC)
	withholding, h0, res := withholdingANewRead(t, ctx, w, honest) // the node reports head h0+1
	// The node itself, under another name, as the witness.
	witness := strings.Replace(w.node.RPC, "127.0.0.1", "localhost", 1)

	t.Run("NoWitness", func(t *testing.T) {
		events, _, err := w.mustClient(t, withholding.URL).AllAccessEvents(ctx, w.patientID)
		if err != nil || holdsRead(events, res) {
			t.Fatalf("without a witness: %d events, holding the newest read: %v, err %v; want the audit trail of height %d, without it",
				len(events), holdsRead(events, res), err, h0)
		}
	})
	t.Run("Witness", func(t *testing.T) {
		events, _, err := w.witnessedClient(t, ctx, withholding.URL, witness).AllAccessEvents(ctx, w.patientID)
		if !errors.Is(err, client.ErrStale) || !strings.Contains(err.Error(), "witness "+witness) {
			t.Fatalf("a node withholding blocks its witness has: %d events (the newest read among them: %v), err %v; want ErrStale naming the witness",
				len(events), holdsRead(events, res), err)
		}
		t.Logf("refused: %v", err)
	})
	t.Run("LyingWitness", func(t *testing.T) {
		lying := clienttest.NewProxy(t, w.node.RPC)
		lying.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return h0 + 1001 }, lieStatus: true}.rewrite)
		events, _, err := w.witnessedClient(t, ctx, w.node.RPC, lying.URL).AllAccessEvents(ctx, w.patientID)
		if err != nil || !holdsRead(events, res) {
			t.Fatalf("an honest node with a witness claiming height %d: %d events, holding the newest read: %v, err %v",
				h0+1002, len(events), holdsRead(events, res), err)
		}
	})
	t.Run("SlowWitnessBesideAnHonestOne", func(t *testing.T) { slowWitnessBesideAnHonestOne(t, ctx, w, honest, witness) })
	t.Run("ExpiredHead", func(t *testing.T) { expiredHead(t, ctx, w, honest, witness) })
	t.Run("NewestWitnessHeaderIsTheFloor", func(t *testing.T) { newestWitnessHeaderIsTheFloor(t, ctx, w, honest, witness) })
	t.Run("LaggingOrStallingFirstWitness", func(t *testing.T) { laggingOrStallingFirstWitness(t, ctx, w, honest, witness) })
}

// withholdingANewRead logs a new read of record 1 and lets the chain move
// on past lightMaxBlockLag; it returns a proxy of the node that reports
// the head from before the read and withholds the blocks after it, the
// state under that head (h0), and the read.
func withholdingANewRead(t *testing.T, ctx context.Context, w *world, honest *client.Client) (*clienttest.Proxy, int64, *client.TxResult) {
	t.Helper()
	hdr, err := honest.VerifyLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h0 := hdr.Height - 1
	res, err := honest.Submit(ctx, w.clinician, readRecord(w, 1))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the chain moves on, past lightMaxBlockLag
	withholding := clienttest.NewProxy(t, w.node.RPC)
	withholding.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return h0 }, lieStatus: true}.rewrite)
	return withholding, h0, res
}

// holdsRead says whether events hold the access event of res.
func holdsRead(events []*emrv1.AccessEvent, res *client.TxResult) bool {
	return slices.ContainsFunc(events, func(ev *emrv1.AccessEvent) bool { return bytes.Equal(ev.TxHash, res.Hash) })
}

// witnessedClient is a verified client of node with witnesses and a 5-s
// timeout, closed in t.Cleanup.
func (w *world) witnessedClient(t *testing.T, ctx context.Context, node string, witnesses ...string) *client.Client {
	t.Helper()
	c, err := client.New(ctx, client.Config{Node: node, Witnesses: witnesses, Verify: true, Trust: w.trust, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("client.New(%s, witnesses %v): %v", node, witnesses, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// slowWitnessBesideAnHonestOne: a colluding (or merely slow) witness that
// claims a high head and stalls its /commit must not keep the honest
// witness's header from being fetched (each witness is asked at once,
// within its own timeout). The first version shared one timeout among the
// witnesses, and the withheld state was served.
func slowWitnessBesideAnHonestOne(t *testing.T, ctx context.Context, w *world, honest *client.Client, witness string) {
	withholding, h0, res := withholdingANewRead(t, ctx, w, honest)
	claim := h0 + 1001
	slow := clienttest.NewProxy(t, w.node.RPC)
	slow.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return claim - 1 }, lieStatus: true}.rewrite)
	slow.SetRoute(func(call clienttest.Call) string {
		if call.Method == "commit" && bytes.Contains(call.Params, fmt.Appendf(nil, `"%d"`, claim)) {
			time.Sleep(6 * time.Second) // longer than the client's timeout
		}
		return ""
	})
	events, _, err := w.witnessedClient(t, ctx, withholding.URL, slow.URL, witness).AllAccessEvents(ctx, w.patientID)
	if !errors.Is(err, client.ErrStale) {
		t.Fatalf("node withholding blocks (head %d) that witness %s has, beside a slow witness: %d events, newest read among them: %v, err %v; want ErrStale",
			h0+1, witness, len(events), holdsRead(events, res), err)
	}
}

// laggingOrStallingFirstWitness: a witness listed before the honest one
// that reports a head behind the node's (a colluder's lie, or an honest
// witness's lag) or stalls its /status past witnessWait must not keep the
// honest witness from being asked for its head. When the witnesses were
// asked one after another within one wait, it did, and the withheld
// state was served (the session-46 review).
func laggingOrStallingFirstWitness(t *testing.T, ctx context.Context, w *world, honest *client.Client, witness string) {
	withholding, h0, res := withholdingANewRead(t, ctx, w, honest)
	refused := func(t *testing.T, first string) {
		t.Helper()
		events, info, err := w.witnessedClient(t, ctx, withholding.URL, first, witness).AllAccessEvents(ctx, w.patientID)
		if !errors.Is(err, client.ErrStale) || !strings.Contains(err.Error(), "witness "+witness) {
			t.Fatalf("node withholding blocks (head %d) that witness %s has, listed after %s: read at %+v, %d events, the newest read among them: %v, err %v; want ErrStale naming %s",
				h0+1, witness, first, info, len(events), holdsRead(events, res), err, witness)
		}
	}
	t.Run("Lagging", func(t *testing.T) {
		lagging := clienttest.NewProxy(t, w.node.RPC)
		lagging.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return h0 - 1 }, lieStatus: true}.rewrite)
		refused(t, lagging.URL)
	})
	t.Run("StallingStatus", func(t *testing.T) {
		done := make(chan struct{})
		stalling := clienttest.NewProxy(t, w.node.RPC)
		t.Cleanup(func() { close(done) }) // before the proxy closes
		stalling.SetRoute(func(call clienttest.Call) string {
			if call.Method == "status" {
				select {
				case <-time.After(4 * time.Second): // past witnessWait, within the client's timeout
				case <-done:
				}
			}
			return ""
		})
		refused(t, stalling.URL)
	})
}

// expiredHead: once the trusted head is older than the trusting period, a
// node that keeps reporting it (a header already in the light store
// verifies without a look at its age) is refused as an honest node's newer
// head would be: trust expired, set a new root. The witness's header
// cannot be verified from an expired one, and used to be passed over.
func expiredHead(t *testing.T, ctx context.Context, w *world, honest *client.Client, witness string) {
	withholding := clienttest.NewProxy(t, w.node.RPC)
	c := w.witnessedClient(t, ctx, withholding.URL, witness)
	if _, _, err := c.AllAccessEvents(ctx, w.patientID); err != nil {
		t.Fatal(err)
	}
	seen := c.MinHeight() // state seen; header seen+1 is trusted
	withholding.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return seen }, lieStatus: true}.rewrite)
	res, err := honest.Submit(ctx, w.clinician, readRecord(w, 1))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	client.SetClock(c, func() time.Time { return time.Now().Add(client.DefaultTrustPeriod + time.Hour) })
	events, info, err := c.AllAccessEvents(ctx, w.patientID)
	if !errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), "trusting period") {
		t.Fatalf("trusted head expired, node withholding everything after it (head %d), witness %s ahead: %+v, %d events, newest read among them: %v, err %v; want the trust expired",
			seen+1, witness, info, len(events), holdsRead(events, res), err)
	}
	t.Logf("refused: %v", err)
}

// newestWitnessHeaderIsTheFloor: a node that withholds colludes with one
// witness, which promptly serves a real header only a few blocks past the
// node's head; the node then catches up to exactly that header. An honest
// witness, answering a second later, has a far newer one: it is the floor,
// and the read fails with ErrStale. (The first mend took the first header
// to qualify.)
func newestWitnessHeaderIsTheFloor(t *testing.T, ctx context.Context, w *world, honest *client.Client, witness string) {
	hdr, err := honest.VerifyLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h0 := hdr.Height - 1 // node reports head h0+1
	time.Sleep(3500 * time.Millisecond)
	hdrA, err := honest.VerifyLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hA := hdrA.Height // the colluding witness's head
	if hA <= h0+1+2 || hdrA.Time.Sub(hdr.Time) <= 2*time.Second {
		t.Skipf("chain too slow: %d..%d", h0+1, hA)
	}
	res, err := honest.Submit(ctx, w.clinician, readRecord(w, 1)) // lands after hA
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)

	var caught atomic.Bool // the node "catches up" to hA once A's header was fetched
	node := clienttest.NewProxy(t, w.node.RPC)
	node.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 {
		if caught.Load() {
			return hA - 1
		}
		return h0
	}, lieStatus: true}.rewrite)
	colluder := clienttest.NewProxy(t, w.node.RPC)
	colluder.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return hA - 1 }, lieStatus: true}.rewrite)
	colluder.SetRoute(func(call clienttest.Call) string {
		if call.Method == "commit" && bytes.Contains(call.Params, fmt.Appendf(nil, `"%d"`, hA)) {
			caught.Store(true)
		}
		return ""
	})
	honestWitness := clienttest.NewProxy(t, witness)
	honestWitness.SetRoute(func(call clienttest.Call) string {
		if call.Method == "commit" {
			time.Sleep(time.Second) // ordinary network latency, well within the timeout
		}
		return ""
	})
	events, info, err := w.witnessedClient(t, ctx, node.URL, honestWitness.URL, colluder.URL).AllAccessEvents(ctx, w.patientID)
	if !errors.Is(err, client.ErrStale) {
		t.Fatalf("node withholding after %d with a colluding witness at %d, honest witness far ahead: read served at %+v, %d events, newest read among them: %v, err %v; want ErrStale",
			hA, hA, info, len(events), holdsRead(events, res), err)
	}
	t.Logf("refused: %v", err)
}
