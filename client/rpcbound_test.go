package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// oversizedNode is a JSON-RPC "node" that answers every call with one
// JSON string of size bytes, and records the most bytes it wrote into one
// answer (with length, it says so in Content-Length first).
func oversizedNode(t *testing.T, size int, withLength bool) (url string, written *atomic.Int64) {
	t.Helper()
	written = &atomic.Int64{}
	chunk := []byte(strings.Repeat("A", 1<<20))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		head := answerHead(r)
		w.Header().Set("Content-Type", "application/json")
		if withLength {
			w.Header().Set("Content-Length", strconv.Itoa(len(head)+size+2))
		}
		var n int64
		defer func() {
			for cur := written.Load(); n > cur && !written.CompareAndSwap(cur, n); cur = written.Load() {
			}
		}()
		k, err := w.Write(head)
		n += int64(k)
		for sent := 0; err == nil && sent < size; sent += len(chunk) {
			k, err = w.Write(chunk[:min(len(chunk), size-sent)])
			n += int64(k)
		}
		if err == nil {
			w.Write([]byte(`"}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, written
}

// answerHead is the start of a JSON-RPC answer to r whose result is one
// JSON string: the string's bytes and `"}` are the rest.
func answerHead(r *http.Request) []byte {
	var req struct {
		ID json.RawMessage `json:"id"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = json.Unmarshal(body, &req)
	return []byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":"`)
}

// TestNodeAnswerIsBounded: an answer of a node's RPC longer than its bound
// is cut off, with a verification error that says so, before the client
// holds it whole (CometBFT's JSON-RPC client reads an answer whole before
// decoding it); one within the bound is read. The bound is maxAnswerBytes,
// or the larger one a request for a whole block gives its context.
func TestNodeAnswerIsBounded(t *testing.T) {
	const bound = 1 << 20
	for _, c := range []struct {
		name       string
		size       int
		withLength bool
		bounded    bool
	}{
		{"streamed past the bound", 64 << 20, false, true},
		{"announced past the bound", 64 << 20, true, true},
		{"just within the bound", bound - 100, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			url, written := oversizedNode(t, c.size, c.withLength)
			rpc, err := newRPC(url, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, err = rpc.Status(withAnswerBound(context.Background(), bound))
			if !c.bounded {
				// Read whole, and refused only for not being a status.
				if err == nil || errors.Is(err, ErrVerification) {
					t.Fatalf("an answer within the bound: %v; want it read (and refused as no status)", err)
				}
				return
			}
			if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "more than 1 MiB") {
				t.Fatalf("an answer of %d MiB against a bound of 1 MiB: %v; want a verification error naming the bound", c.size>>20, err)
			}
			// What the node wrote past the bound is what the connection's
			// buffers took before the client stopped reading (loopback's
			// socket buffers take up to about 10 MiB).
			if got := written.Load(); got > 32<<20 {
				t.Fatalf("the node wrote %d MiB into the answer before the client stopped reading it, against a bound of 1 MiB", got>>20)
			}
		})
	}
}

// TestClientRefusesAnOversizedAnswer: a verifying client whose node
// answers its first request (the root of trust's header) with 256 MiB
// stops reading at maxAnswerBytes, and fails.
func TestClientRefusesAnOversizedAnswer(t *testing.T) {
	url, written := oversizedNode(t, 256<<20, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := New(ctx, Config{
		Node: url, ChainID: "emr-oversized", Verify: true, Timeout: 30 * time.Second,
		Trust: &TrustOptions{Height: 1, Hash: make([]byte, 32), Period: time.Hour},
	})
	if err == nil {
		c.Close()
		t.Fatal("a client whose node answers 256 MiB of nothing was made")
	}
	if !strings.Contains(err.Error(), "more than 64 MiB") {
		t.Fatalf("New: %v; want the answer refused for its size", err)
	}
	if got := written.Load(); got > maxAnswerBytes+(32<<20) {
		t.Fatalf("the node wrote %d MiB into one answer; the client should stop reading at %d MiB", got>>20, maxAnswerBytes>>20)
	}
}
