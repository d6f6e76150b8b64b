package sidecar

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/offchain/blobstore"
)

func strconvMs(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func newKey(name string) ed25519.PrivKey {
	return ed25519.GenPrivKeyFromSecret([]byte("sidecar-test/" + name))
}

// lock locks key, waiting as long as it takes.
func (l *keyLocks) lock(key blobstore.Key) (unlock func()) {
	unlock, _ = l.lockCtx(context.Background(), key)
	return unlock
}

// TestCategoryRule: the sidecar refuses an upload's category exactly when
// the chain would refuse it in a record.
func TestCategoryRule(t *testing.T) {
	pid := apptest.PatientID("category-rule")
	for _, c := range []string{"lab-results", "imaging", "a", "0.x_y-z", strings.Repeat("a", 64),
		"", "Lab", "-lab", ".lab", "lab results", "lab/x", "läb", strings.Repeat("a", 65)} {
		chain := app.ValidateMsg(apptest.AddRecord(pid, c, "x")) == nil
		if sidecar := checkCategory(c) == nil; sidecar != chain {
			t.Errorf("category %q: the chain accepts it: %v, the sidecar: %v", c, chain, sidecar)
		}
	}
}

// TestKeySignerAddress: the signer's address is the chain's address of its key.
func TestKeySignerAddress(t *testing.T) {
	k := KeySigner{Key: newKey("x")}
	if string(app.AddressOf(k.PubKey())) != string(k.Address()) {
		t.Fatal("KeySigner.Address differs from app.AddressOf")
	}
}

// forward sends r on to the server at url as it came (method, request URI,
// headers), as a relay or a proxy would, and returns the answer with its
// body read whole.
func forward(url string, r *http.Request) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, url+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header = r.Header.Clone()
	return send(req)
}

// send sends req and returns the answer with its body read whole.
func send(req *http.Request) (*http.Response, []byte, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// answerWith writes resp's headers and status on w.
func answerWith(w http.ResponseWriter, resp *http.Response) {
	maps.Copy(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
}

// paced is a peer in front of the sidecar at url that sends each answer
// on at 200 KiB/s (1 KiB every 5 ms): a healthy peer, faster than the
// member.
func paced(t *testing.T, url string) string {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, body, err := forward(url, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		answerWith(w, resp)
		for len(body) > 0 {
			k := min(len(body), 1024)
			if _, err := w.Write(body[:k]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			body = body[k:]
			time.Sleep(5 * time.Millisecond)
		}
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}
