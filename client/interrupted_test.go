package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// swallowingNode accepts every transaction and never commits it.
func swallowingNode(t *testing.T) *httptest.Server {
	n := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		switch req.Method {
		case "broadcast_tx_sync":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"code":0,"data":"","log":"","codespace":"","hash":""}}`, req.ID)
		default: // tx
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32603,"message":"Internal error","data":"tx (AB) not found"}}`, req.ID)
		}
	}))
	t.Cleanup(n.Close)
	return n
}

// TestWaitStoppedByCallerKeepsHash: a transaction the node accepted,
// whose wait the caller ends (Ctrl-C in emrcli) before the client's
// timeout, may still be committed: the error names it, and unwraps to the
// caller's reason.
func TestWaitStoppedByCallerKeepsHash(t *testing.T) {
	node := swallowingNode(t)
	c, err := New(context.Background(), Config{Node: node.URL, ChainID: "test", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tx := []byte("any bytes: the node swallows them")
	hash := fmt.Sprintf("%X", app.TxHash(tx))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel) // the user presses Ctrl-C
	_, err = c.Broadcast(ctx, tx, true)
	var nc *NotCommittedError
	if !errors.As(err, &nc) || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped waiting for transaction "+hash) {
		t.Fatalf("wait ended by the caller after the broadcast: %v; want a NotCommittedError naming %s, unwrapping to context.Canceled", err, hash)
	}
}

// TestBroadcastAfterTheDeadline: a broadcast whose context has already
// ended sends nothing, and says so with the context's error, not as a
// transaction that may still be committed.
func TestBroadcastAfterTheDeadline(t *testing.T) {
	node := swallowingNode(t)
	c, err := New(context.Background(), Config{Node: node.URL, ChainID: "test", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err = c.Broadcast(ctx, []byte("never sent"), true)
	var nc *NotCommittedError
	if errors.As(err, &nc) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a broadcast past its deadline: %v; want context.DeadlineExceeded, not a NotCommittedError", err)
	}
}

// TestReuseAccessRetriesCutShort: without retry rounds (--reuse-access), a
// transfer a sidecar cut short (a damaged copy it drops, and reads from a
// peer for the next GET) is still asked once more.
func TestReuseAccessRetriesCutShort(t *testing.T) {
	body := bytes.Repeat([]byte("ciphertext"), 1000)
	sum := sha256.Sum256(body)
	var gets atomic.Int32
	s := newTestRecipient("cut short")
	sc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sealed := sealAnswer(w.Header(), r, s, body)
		if gets.Add(1) == 1 {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(sealed[:len(sealed)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = w.Write(sealed)
	}))
	defer sc.Close()
	blob := chainBlob{ref: sidecar.RecordRef(bytes.Repeat([]byte{1}, 32), 1), sum: sum[:], size: uint64(len(body))}
	f, _, err := fetchBlob(context.Background(), s, blob, t.TempDir(), TransferOptions{Sidecars: []string{sc.URL}, RetryDelay: time.Millisecond}, false)
	if err != nil {
		t.Fatalf("a reuse-access download of a copy the sidecar serves on the next GET: %v (GETs: %d)", err, gets.Load())
	}
	f.Discard()
	if gets.Load() != 2 {
		t.Fatalf("%d GETs, want 2", gets.Load())
	}
}
