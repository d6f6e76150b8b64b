package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// A lying node answers from an old state: a complete, correctly proven
// answer, only for a height before what the client has seen. Reviewer's
// finding: AccessEvents could hide the newest reads and RevokeAndRotate
// could seal the new KEK to the grantee it had just revoked.

// staleNode rewrites, while armed (height() != 0), the answers of abci_query
// to the given paths with the node's honest answer at height(); with
// lieStatus it also reports height()+1 as the node's latest block.
type staleNode struct {
	upstream  string
	height    func() int64
	paths     map[string]bool
	lieStatus bool
}

func (s staleNode) rewrite(call clienttest.Call, result json.RawMessage) json.RawMessage {
	h := s.height()
	if h == 0 {
		return result
	}
	switch call.Method {
	case "status":
		if !s.lieStatus {
			return result
		}
		return statusWithHead(result, h+1)
	case "abci_query":
		var params map[string]any
		if json.Unmarshal(call.Params, &params) != nil {
			return result
		}
		if path, _ := params["path"].(string); !s.paths[path] {
			return result
		}
		params["height"] = strconv.FormatInt(h, 10)
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "abci_query", "params": params})
		resp, err := http.Post(s.upstream, "application/json", bytes.NewReader(body))
		if err != nil {
			return result
		}
		defer resp.Body.Close()
		var env struct {
			Result json.RawMessage `json:"result"`
		}
		if json.NewDecoder(resp.Body).Decode(&env) != nil || env.Result == nil {
			return result
		}
		return env.Result
	}
	return result
}

func readRecord(w *world, seq uint64) *emrv1.Msg {
	return &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: &emrv1.MsgRecordAccess{
		PatientId: w.patientID, RecordSequences: []uint64{seq}, Purpose: emrv1.Purpose_PURPOSE_TREATMENT}}}
}

func TestStaleReads(t *testing.T) {
	w, ctx := runningWorld(t, 150*time.Second)
	honest := w.mustClient(t, w.node.RPC)
	hdr, err := honest.VerifyLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h0 := hdr.Height - 1 // a state a client can verify (header h0+1 exists)
	if _, err := honest.Submit(ctx, w.clinician, readRecord(w, 1)); err != nil {
		t.Fatal(err)
	}
	all, _, err := honest.AllAccessEvents(ctx, w.patientID)
	if err != nil {
		t.Fatal(err)
	}
	accessEvents := map[string]bool{app.QueryPathPrefix + "AccessEvents": true}

	t.Run("OlderThanAsked", func(t *testing.T) {
		// A fresh client asks at the node's head; an answer for h0 is refused.
		proxy := clienttest.NewProxy(t, w.node.RPC)
		proxy.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return h0 }, paths: accessEvents}.rewrite)
		c := w.mustClient(t, proxy.URL)
		events, _, err := c.AllAccessEvents(ctx, w.patientID)
		if !errors.Is(err, client.ErrStale) || !errors.Is(err, client.ErrVerification) {
			t.Fatalf("AccessEvents of height %d: %d events (of %d), err %v; want ErrStale and ErrVerification", h0, len(events), len(all), err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("OlderThanSeen", func(t *testing.T) {
		// The node claims the old state is its head: a client that has seen
		// a read committed (its own) waits for a state that includes it,
		// and refuses the node when it does not get one.
		proxy := clienttest.NewProxy(t, w.node.RPC)
		c := w.mustClient(t, proxy.URL)
		res, err := c.Submit(ctx, w.clinician, readRecord(w, 2))
		if err != nil {
			t.Fatal(err)
		}
		if c.MinHeight() < res.Height {
			t.Fatalf("MinHeight %d after a transaction verified at %d", c.MinHeight(), res.Height)
		}
		before := c.MinHeight()
		proxy.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return h0 }, paths: accessEvents, lieStatus: true}.rewrite)
		events, _, err := c.AllAccessEvents(ctx, w.patientID)
		if !errors.Is(err, client.ErrStale) {
			t.Fatalf("AccessEvents from a node claiming height %d: %d events, err %v; want ErrStale", h0+1, len(events), err)
		}
		if c.MinHeight() != before {
			t.Fatalf("MinHeight went from %d to %d", before, c.MinHeight())
		}
		t.Logf("refused: %v", err)
		proxy.Honest()
		events, _, err = c.AllAccessEvents(ctx, w.patientID)
		if err != nil || len(events) != len(all)+1 || !bytes.Equal(events[0].TxHash, res.Hash) {
			t.Fatalf("honest AccessEvents: %d events (want %d, the newest the client's own), %v", len(events), len(all)+1, err)
		}
		if info, err := c.QueryInfo(ctx, "Patient", &emrv1.QueryPatientRequest{PatientId: hexs(w.patientID)}, &emrv1.QueryPatientResponse{}); err != nil || info.Height < res.Height {
			t.Fatalf("a read after the transaction at %d: %+v, %v", res.Height, info, err)
		}
	})

	// After the revocation the node serves the permissions of
	// a height when the clinician's grant stood; with lieStatus it also
	// claims that height is its head. The client must not build a rotation
	// from them: no RotateKey it sends may seal the new KEK to the revoked
	// clinician.
	t.Run("RevokeAndRotate", func(t *testing.T) { revokeThroughStaleNode(t, w, false, 3) })
	t.Run("RevokeAndRotateStaleHead", func(t *testing.T) {
		// Grant again, with the current KEK, and revoke again.
		c := w.mustClient(t, w.node.RPC)
		grant, err := c.GrantMsg(ctx, w.patientID, client.GrantSpec{
			Grantee: w.clinician.Address(), Rights: []emrv1.Right{emrv1.Right_RIGHT_READ},
			Categories: []string{"lab-results"}, NotAfter: time.Now().Add(24 * time.Hour),
		}, w.kek)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Submit(ctx, w.patient, grant); err != nil {
			t.Fatal(err)
		}
		revokeThroughStaleNode(t, w, true, 5)
	})
}

func revokeThroughStaleNode(t *testing.T, w *world, lieStatus bool, wantVersion uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hdr, err := w.mustClient(t, w.node.RPC).VerifyLatest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h0 := hdr.Height - 1 // the grant stands in state h0
	proxy := clienttest.NewProxy(t, w.node.RPC)
	var armed atomic.Int64
	var mu sync.Mutex
	var rotations [][]byte
	revokeSent := false
	proxy.SetRoute(func(call clienttest.Call) string {
		switch call.Method {
		case "broadcast_tx_sync":
			raw := clienttest.BroadcastTx(call)
			tx, err := app.DecodeTx(raw)
			if err != nil {
				return ""
			}
			mu.Lock()
			defer mu.Unlock()
			switch tx.Body.Msg.Sum.(type) {
			case *emrv1.Msg_Revoke:
				revokeSent = true
			case *emrv1.Msg_RotateKey:
				rotations = append(rotations, raw)
			}
		case "block_results":
			// The client has verified the revocation's result: lie from now on.
			mu.Lock()
			if revokeSent {
				armed.Store(h0)
				revokeSent = false
			}
			mu.Unlock()
		}
		return ""
	})
	proxy.SetRewrite(staleNode{upstream: w.node.RPC, height: armed.Load, lieStatus: lieStatus,
		paths: map[string]bool{app.QueryPathPrefix + "Permissions": true}}.rewrite)
	c := w.mustClient(t, proxy.URL)
	res, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
	if !errors.Is(err, client.ErrStale) {
		t.Fatalf("RevokeAndRotate through a node serving the state of height %d: %+v, %v; want ErrStale", h0, res, err)
	}
	if res == nil || res.Revoke == nil || res.RevokedHeight <= 0 {
		t.Fatalf("the revocation itself should have been committed: %+v", res)
	}
	t.Logf("refused: %v", err)

	// Run again, the node honest now: it completes the rotation.
	armed.Store(0)
	again, err := c.RevokeAndRotate(ctx, w.patient, w.patientID, w.clinician.Address(), w.kek, nil)
	if err != nil || again.Revoke != nil || again.LastRotation() == nil || again.LastRotation().NewVersion != wantVersion {
		t.Fatalf("RevokeAndRotate again: %+v, %v; want a rotation to version %d", again, err, wantVersion)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rotations) == 0 {
		t.Fatal("no RotateKey was broadcast")
	}
	for _, raw := range rotations {
		tx, err := app.DecodeTx(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, env := range tx.Body.Msg.GetRotateKey().Envelopes {
			if bytes.Equal(env.Grantee, w.clinician.Address()) {
				t.Errorf("a RotateKey sealed key version %d to the revoked clinician", tx.Body.Msg.GetRotateKey().NewKeyVersion)
			}
		}
	}
	if _, _, err := c.GranteeKEK(ctx, w.clinician.EncPrivKey(), w.patientID, w.clinician.Address()); !errors.Is(err, app.ErrPermissionRevoked) {
		t.Fatalf("GranteeKEK of the revoked clinician: %v", err)
	}
}
