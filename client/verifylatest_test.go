package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestVerifyLatestIsFreshAndWithinTrust: VerifyLatest (what "emrcli
// light status" shows as the latest verified header) holds the node's
// head to what a verified read holds it to. A node that reports an old
// head, below a header the client has verified, is ErrStale, not a
// "latest" header; and once the trusting period has passed, a header the
// light store already holds is ErrTrustExpired, as every verified read
// then is. (The review of session 53 found both reported as verified and
// current: VerifyLatest took the node's head and returned its header
// unchecked.)
func TestVerifyLatestIsFreshAndWithinTrust(t *testing.T) {
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	chainID, trust := node.Trust(t, ctx)
	proxy := clienttest.NewProxy(t, node.RPC)
	var lieHead atomic.Int64 // 0: honest status
	proxy.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		h := lieHead.Load()
		if h == 0 || call.Method != "status" {
			return result
		}
		return statusWithHead(result, h)
	})
	c, err := client.New(ctx, client.Config{Node: proxy.URL, ChainID: chainID, Verify: true, Trust: trust, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	node.WaitHeight(t, ctx, trust.Height+6)
	info, err := c.QueryInfo(ctx, "Params", &emrv1.QueryParamsRequest{}, &emrv1.QueryParamsResponse{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a verified read at height %d; MinHeight %d; root of trust %d", info.Height, c.MinHeight(), trust.Height)

	t.Run("StaleHead", func(t *testing.T) {
		// The node claims the root's height is its head.
		lieHead.Store(trust.Height)
		defer lieHead.Store(0)
		hdr, err := c.VerifyLatest(ctx)
		if !errors.Is(err, client.ErrStale) {
			t.Fatalf("VerifyLatest from a node that reports head %d: header %d, err %v, while the client's MinHeight is %d (it has verified header %d already): want ErrStale, as a verified read gives",
				trust.Height, headerHeight(hdr), err, c.MinHeight(), info.Height+1)
		}
	})

	t.Run("ExpiredTrust", func(t *testing.T) {
		client.SetClock(c, func() time.Time { return time.Now().Add(trust.Period + time.Hour) })
		defer client.SetClock(c, time.Now)
		// A verified read now fails: the newest trusted header expired.
		if _, err := c.QueryInfo(ctx, "Params", &emrv1.QueryParamsRequest{}, &emrv1.QueryParamsResponse{}); !errors.Is(err, client.ErrTrustExpired) {
			t.Fatalf("a verified read after the trusting period: %v; want ErrTrustExpired", err)
		}
		// The node reports a head the store holds: light status says all is well.
		lieHead.Store(info.Height + 1)
		defer lieHead.Store(0)
		hdr, err := c.VerifyLatest(ctx)
		if !errors.Is(err, client.ErrTrustExpired) {
			t.Fatalf("VerifyLatest after the trusting period expired: header %v, err %v; want ErrTrustExpired (every verified read fails with it)",
				headerHeight(hdr), err)
		}
	})
}

func headerHeight(h *cmttypes.Header) int64 {
	if h == nil {
		return 0
	}
	return h.Height
}
