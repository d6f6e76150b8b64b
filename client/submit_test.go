package client_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

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
			tx := clienttest.BroadcastTx(call)
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
			// It commits meanwhile (waited for, not slept on: a loaded
			// machine may take more than a few blocks' time).
			for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				if st, err := honest.TxStatus(ctx, app.TxHash(tx)); err == nil && st.Height > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Error("the transaction passed on did not commit within 60 s")
					break
				}
			}
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
		// Another transaction of the signer takes the sequence between
		// Submit's read of it and its broadcast: Submit proves the first
		// one is not in that block and signs again, once.
		before := events()
		proxy := clienttest.NewProxy(t, w.node.RPC)
		var broadcasts atomic.Int32
		proxy.SetRoute(func(call clienttest.Call) string {
			if clienttest.BroadcastTx(call) == nil {
				return ""
			}
			if broadcasts.Add(1) == 1 {
				seq, err := honest.Sequence(ctx, w.clinician.Address())
				if err != nil {
					t.Error(err)
					return ""
				}
				other, err := honest.SignTxWithSequence(w.clinician, seq, readRecord(w, 2))
				if err == nil {
					_, err = honest.Broadcast(ctx, other, true)
				}
				if err != nil {
					t.Error(err)
				}
			}
			return ""
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

	t.Run("LaterSequenceInvented", func(t *testing.T) {
		// The node reports a next sequence one past the signer's (an
		// unproven answer would say so), keeps the transaction it is
		// handed and refuses it. Verified, Submit signs with the proven
		// sequence and a timeout height, so the kept transaction is dead
		// once the signer's next one takes the sequence (or the timeout
		// passes): it cannot take effect long after the signer saw it fail.
		keeper := clienttest.NewTxKeeper(app.ErrBadSequence.Code(), app.Codespace, "wrong account sequence")
		proxy := clienttest.NewProxy(t, w.node.RPC)
		proxy.SetAnswer(keeper.Answer)
		proxy.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
			var params map[string]any
			if call.Method != "abci_query" || json.Unmarshal(call.Params, &params) != nil || params["prove"] == true ||
				params["path"] != app.QueryPathPrefix+"Account" {
				return result
			}
			return laterSequence(t, result)
		})
		seq, err := honest.Sequence(ctx, w.clinician.Address())
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := honest.VerifyLatest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.mustClient(t, proxy.URL).Submit(ctx, w.clinician, readRecord(w, 1))
		if !errors.Is(err, app.ErrBadSequence) || !strings.Contains(err.Error(), "its timeout height") {
			t.Fatalf("Submit through the keeping node: %v, want the refusal, saying until when the transaction may yet be committed", err)
		}
		held := keeper.Kept()
		if len(held) != 1 {
			t.Fatalf("%d transactions kept, want 1", len(held))
		}
		dtx, err := app.DecodeTx(held[0])
		if err != nil {
			t.Fatal(err)
		}
		if dtx.Body.Sequence != seq {
			t.Fatalf("signed with sequence %d, the node's invention; the proven one is %d", dtx.Body.Sequence, seq)
		}
		if lo, hi := uint64(hdr.Height)-1+client.TxTimeoutBlocks, uint64(hdr.Height)+client.TxTimeoutBlocks+20; dtx.Body.TimeoutHeight < lo || dtx.Body.TimeoutHeight > hi {
			t.Fatalf("timeout height %d, want %d past the head (%d)", dtx.Body.TimeoutHeight, client.TxTimeoutBlocks, hdr.Height)
		}
		// The signer's next transaction takes the sequence; the kept one,
		// released, can no longer execute.
		if _, err := honest.Submit(ctx, w.clinician, readRecord(w, 2)); err != nil {
			t.Fatal(err)
		}
		if _, err := honest.Broadcast(ctx, held[0], true); !errors.Is(err, app.ErrBadSequence) {
			t.Fatalf("the kept transaction, released after the signer's next: %v, want a wrong-sequence refusal", err)
		}
	})

	t.Run("SequenceFree", func(t *testing.T) {
		// The node refuses without passing the transaction on: its sequence
		// is still free, so it could yet be committed. No second signing.
		before := events()
		keeper := clienttest.NewTxKeeper(app.ErrBadSequence.Code(), app.Codespace, "wrong account sequence")
		proxy := clienttest.NewProxy(t, w.node.RPC)
		proxy.SetAnswer(keeper.Answer)
		c := w.mustClient(t, proxy.URL)
		_, err := c.Submit(ctx, w.clinician, readRecord(w, 1))
		if !errors.Is(err, app.ErrBadSequence) || !errors.Is(err, client.ErrTxRejected) {
			t.Fatalf("Submit refused for a free sequence: %v, want the refusal", err)
		}
		t.Logf("refused: %v", err)
		if n := len(keeper.Kept()); n != 1 {
			t.Fatalf("%d broadcasts, want 1", n)
		}
		if n := events() - before; n != 0 {
			t.Fatalf("%d access events added", n)
		}
	})
}

// laterSequence rewrites an Account query's answer to a next sequence one
// past the real one.
func laterSequence(t *testing.T, result json.RawMessage) json.RawMessage {
	var res struct {
		Response struct {
			Value []byte `json:"value"`
		} `json:"response"`
	}
	var raw map[string]any
	if json.Unmarshal(result, &res) != nil || json.Unmarshal(result, &raw) != nil {
		return result
	}
	var acct emrv1.QueryAccountResponse
	if err := proto.Unmarshal(res.Response.Value, &acct); err != nil || acct.Account == nil {
		return result
	}
	acct.Account.NextSequence++
	bz, err := proto.Marshal(&acct)
	if err != nil {
		t.Error(err)
		return result
	}
	raw["response"].(map[string]any)["value"] = bz
	out, err := json.Marshal(raw)
	if err != nil {
		t.Error(err)
		return result
	}
	return out
}

// TestSubmitRightAfterOwnTx: the signer's previous transaction, sent by
// another of its processes, is in the node's newest block, which no
// header proves yet: Submit waits for that proof instead of signing with
// the sequence the previous transaction used (and then refusing to sign
// again, "still unused").
func TestSubmitRightAfterOwnTx(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)
	other := w.mustClient(t, w.node.RPC) // the signer's other process
	first, err := other.Submit(ctx, w.clinician, readRecord(w, 1))
	if err != nil {
		t.Fatal(err)
	}
	// The node's status stays at the previous transaction's block until
	// the client has made its verified read (of the state before that
	// block), as a node's does for a moment after each block.
	h := first.Height
	proxy := clienttest.NewProxy(t, w.node.RPC)
	proxy.SetRewrite(statusPinnedUntil(h, func(params map[string]any) bool {
		return params["prove"] != true && params["path"] == app.QueryPathPrefix+"Account" // the unproven read that follows the proven one
	}))
	if _, err := w.mustClient(t, proxy.URL).Submit(ctx, w.clinician, readRecord(w, 2)); err != nil {
		t.Fatalf("Submit right after the signer's previous transaction committed (block %d the newest): %v", h, err)
	}
}

// TestSubmitRightAfterOwnTxNoExtraBlock: when the proof of the block with
// the signer's previous transaction is already there (the usual case, but
// Submit's first look at the node came just before it), Submit proves the
// sequence with it, and waits for no later header (on an idle chain the
// next one is an empty block, seconds away).
func TestSubmitRightAfterOwnTxNoExtraBlock(t *testing.T) {
	w, ctx := runningWorld(t, 120*time.Second)
	other := w.mustClient(t, w.node.RPC)
	first, err := other.Submit(ctx, w.clinician, readRecord(w, 1)) // its result is proven by header first.Height+1
	if err != nil {
		t.Fatal(err)
	}
	h := first.Height
	var broadcast atomic.Bool
	var mu sync.Mutex
	var headersAsked []int64
	proxy := clienttest.NewProxy(t, w.node.RPC)
	proxy.SetRoute(func(call clienttest.Call) string {
		if call.Method == "broadcast_tx_sync" {
			broadcast.Store(true)
		}
		var p struct {
			Height string `json:"height"`
		}
		if (call.Method == "commit" || call.Method == "validators") && !broadcast.Load() && json.Unmarshal(call.Params, &p) == nil {
			if n, err := strconv.ParseInt(p.Height, 10, 64); err == nil {
				mu.Lock()
				headersAsked = append(headersAsked, n)
				mu.Unlock()
			}
		}
		return ""
	})
	proxy.SetRewrite(statusPinnedUntil(h, func(params map[string]any) bool {
		return params["prove"] == true // the first proven read (of the first look: just before header h+1)
	}))
	if _, err := w.mustClient(t, proxy.URL).Submit(ctx, w.clinician, readRecord(w, 2)); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range headersAsked {
		if n > h+1 {
			t.Fatalf("before broadcasting, Submit asked for header %d (heights asked: %v): it waited for a block past %d, whose header proves the previous transaction", n, headersAsked, h+1)
		}
	}
}

// statusPinnedUntil is a proxy rewrite under which the node's status says
// its newest block is h until the first abci_query whose params satisfy
// release, as a node's does for a moment after each block.
func statusPinnedUntil(h int64, release func(params map[string]any) bool) func(clienttest.Call, json.RawMessage) json.RawMessage {
	var released atomic.Bool
	return func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		var params map[string]any
		if call.Method == "abci_query" && json.Unmarshal(call.Params, &params) == nil && release(params) {
			released.Store(true)
		}
		if call.Method != "status" || released.Load() {
			return result
		}
		return statusWithHead(result, h)
	}
}

// statusWithHead is a status answer that reports head h instead.
func statusWithHead(result json.RawMessage, h int64) json.RawMessage {
	var st map[string]any
	if json.Unmarshal(result, &st) != nil {
		return result
	}
	st["sync_info"].(map[string]any)["latest_block_height"] = strconv.FormatInt(h, 10)
	out, _ := json.Marshal(st)
	return out
}
