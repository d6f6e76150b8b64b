package load

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/testnet"
)

// TestWaitAppliedWaitsForTheApp: against a real node, waitApplied returns
// only once the node's app has committed the height asked (what a setup
// step waits for before the next step's transactions go out), and a
// height the node does not reach within the bound is an error naming the
// node.
func TestWaitAppliedWaitsForTheApp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := testnet.Start(t, testnet.Options{Validators: 1, TimeoutCommit: 200 * time.Millisecond})
	target, err := ReadTestnet(n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	node := newRPC(target.RPC[0], 1)
	defer node.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now, err := node.appHeight(ctx)
	if err != nil || now < 1 {
		t.Fatalf("the app's height: %d, %v", now, err)
	}

	want := now + 3
	if err := waitApplied(ctx, []*rpc{node, node}, want); err != nil {
		t.Fatalf("waiting for height %d: %v", want, err)
	}
	if h, err := node.appHeight(ctx); err != nil || h < want {
		t.Fatalf("waitApplied returned with the app at height %d (%v), before %d", h, err, want)
	}

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	err = waitApplied(short, []*rpc{node}, want+1000)
	if err == nil || !strings.Contains(err.Error(), node.url) || !strings.Contains(err.Error(), "did not commit height") {
		t.Fatalf("a height never reached: %v; want an error naming the node", err)
	}
}
