package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestWithheldHeadDefences (the session-45 review of TestWithheldHead's
// check): two ways a withholding node served the withheld state although
// an honest witness had the newer header.
func TestWithheldHeadDefences(t *testing.T) {
	w, ctx := runningWorld(t, 150*time.Second)
	honest := w.mustClient(t, w.node.RPC)
	hdr, err := honest.VerifyLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h0 := hdr.Height - 1
	witness := strings.Replace(w.node.RPC, "127.0.0.1", "localhost", 1) // honest witness

	// A colluding (or merely slow) witness that claims a high head and
	// stalls its /commit must not keep the honest witness's header from
	// being fetched (each witness is asked at once, within its own timeout).
	t.Run("SlowWitnessBesideAnHonestOne", func(t *testing.T) {
		res, err := honest.Submit(ctx, w.clinician, readRecord(w, 1))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // past lightMaxBlockLag
		withholding := clienttest.NewProxy(t, w.node.RPC)
		withholding.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return h0 }, lieStatus: true}.rewrite)
		claim := hdr.Height + 1000
		slow := clienttest.NewProxy(t, w.node.RPC)
		slow.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return claim - 1 }, lieStatus: true}.rewrite)
		slow.SetRoute(func(call clienttest.Call) string {
			if call.Method == "commit" && bytes.Contains(call.Params, fmt.Appendf(nil, `"%d"`, claim)) {
				time.Sleep(6 * time.Second) // longer than the client's timeout
			}
			return ""
		})
		c, err := client.New(ctx, client.Config{Node: withholding.URL, Witnesses: []string{slow.URL, witness}, Verify: true, Trust: w.trust, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		events, _, err := c.AllAccessEvents(ctx, w.patientID)
		held := slices.ContainsFunc(events, func(ev *emrv1.AccessEvent) bool { return bytes.Equal(ev.TxHash, res.Hash) })
		if !errors.Is(err, client.ErrStale) {
			t.Fatalf("node withholding blocks (head %d) that witness %s has, beside a slow witness: %d events, newest read among them: %v, err %v; want ErrStale",
				h0+1, witness, len(events), held, err)
		}
	})

	// Once the trusted head is older than the trusting period, a node that
	// keeps reporting it (a header already in the light store verifies
	// without a look at its age) is refused as an honest node's newer head
	// would be: trust expired, set a new root. The witness's header cannot
	// be verified from an expired one, and used to be passed over.
	t.Run("ExpiredHead", func(t *testing.T) {
		withholding := clienttest.NewProxy(t, w.node.RPC)
		c, err := client.New(ctx, client.Config{Node: withholding.URL, Witnesses: []string{witness}, Verify: true, Trust: w.trust, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
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
		held := slices.ContainsFunc(events, func(ev *emrv1.AccessEvent) bool { return bytes.Equal(ev.TxHash, res.Hash) })
		if !errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), "trusting period") {
			t.Fatalf("trusted head expired, node withholding everything after it (head %d), witness %s ahead: %+v, %d events, newest read among them: %v, err %v; want the trust expired",
				seen+1, witness, info, len(events), held, err)
		}
		t.Logf("refused: %v", err)
	})
}
