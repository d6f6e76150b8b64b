package client_test

import (
	"bytes"
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

// TestTheNewestWitnessHeaderIsTheFloor (the session-45 re-review): a node
// that withholds colludes with one witness, which promptly serves a real
// header only a few blocks past the node's head; the node then catches up
// to exactly that header. An honest witness, answering a second later, has
// a far newer one: it is the floor, and the read fails with ErrStale. (In
// 111127f the first header to qualify was taken.)
func TestTheNewestWitnessHeaderIsTheFloor(t *testing.T) {
	w, ctx := runningWorld(t, 150*time.Second)
	honest := w.mustClient(t, w.node.RPC)
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
	honestWitness := clienttest.NewProxy(t, strings.Replace(w.node.RPC, "127.0.0.1", "localhost", 1))
	honestWitness.SetRoute(func(call clienttest.Call) string {
		if call.Method == "commit" {
			time.Sleep(time.Second) // ordinary network latency, well within the timeout
		}
		return ""
	})
	c, err := client.New(ctx, client.Config{Node: node.URL, Witnesses: []string{honestWitness.URL, colluder.URL}, Verify: true, Trust: w.trust, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	events, info, err := c.AllAccessEvents(ctx, w.patientID)
	held := slices.ContainsFunc(events, func(ev *emrv1.AccessEvent) bool { return bytes.Equal(ev.TxHash, res.Hash) })
	if !errors.Is(err, client.ErrStale) {
		t.Fatalf("node withholding after %d with a colluding witness at %d, honest witness far ahead: read served at %+v, %d events, newest read among them: %v, err %v; want ErrStale",
			hA, hA, info, len(events), held, err)
	}
	t.Logf("refused: %v", err)
}
