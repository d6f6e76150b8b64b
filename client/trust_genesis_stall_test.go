package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/client"
)

// TestTrustFromGenesisGivesUpOnAStallingNode: TrustFromGenesis (emrcli
// light init --genesis) runs under a context that may have no deadline
// (emrcli's ends only on a signal). A node that takes the request and
// never answers must not hold it for ever: each request is bounded, and
// one that timed out is not asked again. (The review of session 53 found
// it waiting for good: its RPC client had no timeout.)
func TestTrustFromGenesisGivesUpOnAStallingNode(t *testing.T) {
	const timeout = 2 * time.Second
	client.SetTrustRequestTimeout(t, timeout)
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // answer nothing, for as long as the client waits
		case <-r.Context().Done():
		case <-stall:
		}
	}))
	defer srv.Close()
	defer close(stall)

	gen := &cmttypes.GenesisDoc{ChainID: "emr-stall", GenesisTime: time.Now().Add(-time.Hour), InitialHeight: 1,
		Validators: []cmttypes.GenesisValidator{{PubKey: ed25519.GenPrivKey().PubKey(), Power: 10, Name: "v"}}}
	raw, err := cmtjson.Marshal(gen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := client.TrustFromGenesis(context.Background(), srv.URL, raw, 0)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "did not answer within "+timeout.String()) {
			t.Fatalf("TrustFromGenesis from a node that never answers: %v; want it to say the node did not answer", err)
		}
	case <-time.After(3 * timeout):
		t.Fatalf("TrustFromGenesis is still waiting, %s after it asked a node that never answers (each request is bounded by %s)", 3*timeout, timeout)
	}
}
