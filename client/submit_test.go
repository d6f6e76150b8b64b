package client_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
)

// broadcastTx returns the transaction of a broadcast_tx_sync call.
func broadcastTx(call clienttest.Call) []byte {
	if call.Method != "broadcast_tx_sync" {
		return nil
	}
	var p struct {
		Tx string `json:"tx"`
	}
	_ = json.Unmarshal(call.Params, &p)
	raw, _ := base64.StdEncoding.DecodeString(p.Tx)
	return raw
}

// A "wrong sequence" refusal is only the node's word: Submit signs the
// message again only when the first transaction provably did not execute
// and cannot.
func TestSubmitBadSequence(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)
	honest := w.mustClient(t, w.node.RPC)
	events := func() int {
		t.Helper()
		evs, _, err := honest.AllAccessEvents(ctx, w.patientID)
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}

	t.Run("FalseRefusal", func(t *testing.T) {
		// The node passes the transaction on, lets it commit, and reports
		// a wrong sequence (the reviewer's finding: it executed twice).
		before := events()
		proxy := clienttest.NewProxy(t, w.node.RPC)
		var mu sync.Mutex
		var sent [][]byte
		proxy.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
			tx := broadcastTx(call)
			if tx == nil {
				return result
			}
			mu.Lock()
			sent = append(sent, tx)
			first := len(sent) == 1
			mu.Unlock()
			if !first {
				return result
			}
			time.Sleep(3 * time.Second) // it commits meanwhile
			var r map[string]any
			_ = json.Unmarshal(result, &r)
			r["code"], r["codespace"], r["log"] = app.ErrBadSequence.Code(), app.Codespace, "wrong account sequence"
			out, _ := json.Marshal(r)
			return out
		})
		c := w.mustClient(t, proxy.URL)
		res, err := c.Submit(ctx, w.clinician, readRecord(w, 1))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if n := events() - before; n != 1 || len(sent) != 1 {
			t.Fatalf("one Submit: executed %d times, %d transactions sent", n, len(sent))
		}
		if !res.Verified || !bytes.Equal(res.Hash, app.TxHash(sent[0])) {
			t.Fatalf("Submit = %+v, want the verified result of the first transaction %X", res, app.TxHash(sent[0]))
		}
	})

	t.Run("SequenceTaken", func(t *testing.T) {
		// Another transaction of the signer took the sequence: Submit proves
		// the first one is not in that block and signs again, once.
		before := events()
		seq, err := honest.Sequence(ctx, w.clinician.Address())
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := honest.VerifyLatest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old := hdr.Height - 1 // the clinician's next sequence is seq in state old
		other, err := honest.SignTxWithSequence(w.clinician, seq, readRecord(w, 2))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := honest.Broadcast(ctx, other, true); err != nil {
			t.Fatal(err)
		}
		// The node's unproven Account answer (Sequence) is of state old.
		proxy := clienttest.NewProxy(t, w.node.RPC)
		var broadcasts atomic.Int32
		proxy.SetRoute(func(call clienttest.Call) string {
			// (A CheckTx refusal is a JSON-RPC error, which SetRewrite does not see.)
			if broadcastTx(call) != nil {
				broadcasts.Add(1)
			}
			return ""
		})
		proxy.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
			var params map[string]any
			if call.Method != "abci_query" || json.Unmarshal(call.Params, &params) != nil || params["prove"] == true {
				return result
			}
			return staleNode{upstream: w.node.RPC, height: func() int64 { return old }, paths: map[string]bool{app.QueryPathPrefix + "Account": true}}.rewrite(call, result)
		})
		c := w.mustClient(t, proxy.URL)
		res, err := c.Submit(ctx, w.clinician, readRecord(w, 1))
		if err != nil {
			t.Fatalf("Submit after the sequence was taken: %v", err)
		}
		if n := events() - before; n != 2 || !res.Verified {
			t.Fatalf("Submit = %+v; %d access events, want 2 (the other transaction's and this one's)", res, n)
		}
		if n := broadcasts.Load(); n != 2 {
			t.Fatalf("%d broadcasts, want 2 (refused for its sequence, then signed again)", n)
		}
	})

	t.Run("SequenceFree", func(t *testing.T) {
		// The node refuses without passing the transaction on: its sequence
		// is still free, so it could yet be committed. No second signing.
		before := events()
		var broadcasts atomic.Int32
		refuser := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			var req struct {
				ID json.RawMessage `json:"id"`
			}
			_ = json.NewDecoder(r.Body).Decode(&req)
			broadcasts.Add(1)
			rw.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(rw).Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": map[string]any{
				"code": app.ErrBadSequence.Code(), "codespace": app.Codespace, "log": "wrong account sequence", "data": "", "hash": "",
			}})
		}))
		t.Cleanup(refuser.Close)
		proxy := clienttest.NewProxy(t, w.node.RPC)
		proxy.SetRoute(func(call clienttest.Call) string {
			if call.Method == "broadcast_tx_sync" {
				return refuser.URL
			}
			return ""
		})
		c := w.mustClient(t, proxy.URL)
		_, err := c.Submit(ctx, w.clinician, readRecord(w, 1))
		if !errors.Is(err, app.ErrBadSequence) || !errors.Is(err, client.ErrTxRejected) {
			t.Fatalf("Submit refused for a free sequence: %v, want the refusal", err)
		}
		t.Logf("refused: %v", err)
		if n := broadcasts.Load(); n != 1 {
			t.Fatalf("%d broadcasts, want 1", n)
		}
		if n := events() - before; n != 0 {
			t.Fatalf("%d access events added", n)
		}
	})
}
