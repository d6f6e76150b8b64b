package client_test

import (
	"context"
	"testing"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	lighthttp "github.com/cometbft/cometbft/light/provider/http"
	lightstore "github.com/cometbft/cometbft/light/store"
	lightdb "github.com/cometbft/cometbft/light/store/db"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
)

// TestFullLightStore: a light store holding the light client's 1,000
// headers (any home used for a few hundred commands; a long-running
// program without a Home) verifies the next header, which makes the
// light client prune. Without a Home the store is a MemDB, on which
// lightdb's Prune deadlocked (session 36's review: the read never
// returned, whatever its context said). A Home's goleveldb store, opened
// for each operation, must work as well; its per-operation cost is logged.
func TestFullLightStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{TimeoutCommit: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	chainID, trust := node.Trust(t, ctx)
	const full = 1000
	start := time.Now()
	node.WaitHeight(t, ctx, trust.Height+full+5)
	prov, err := lighthttp.New(chainID, node.RPC)
	if err != nil {
		t.Fatal(err)
	}
	// The chain's real headers above the root, as the light client saves
	// them: with the root, full of them.
	var blocks []*cmttypes.LightBlock
	for h := trust.Height + 1; h < trust.Height+full; h++ {
		lb, err := prov.LightBlock(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, lb)
	}
	t.Logf("%d blocks made and fetched in %s", len(blocks), time.Since(start).Round(time.Millisecond))
	fill := func(t *testing.T, s lightstore.Store) {
		t.Helper()
		for _, lb := range blocks {
			if err := s.SaveLightBlock(lb); err != nil {
				t.Fatal(err)
			}
		}
		if s.Size() != full {
			t.Fatalf("the store holds %d headers, want %d", s.Size(), full)
		}
	}
	// verify verifies the newest header with c, and fails if that does
	// not return within a bound well past its context's.
	verify := func(t *testing.T, c *client.Client) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			_, err := c.VerifyLatest(rctx)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("VerifyLatest on a full store: %v", err)
			}
		case <-time.After(45 * time.Second):
			t.Fatalf("VerifyLatest on a store of %d headers: no answer after 45 s, though its context ended after 15 s (deadlocked)", full)
		}
	}

	// verifyNew is the mean time c takes to verify a new header (one the
	// store has not seen), over m of them.
	verifyNew := func(t *testing.T, c *client.Client, m int) time.Duration {
		t.Helper()
		var read time.Duration
		for range m {
			node.WaitHeight(t, ctx, node.Height(ctx)+1)
			start := time.Now()
			verify(t, c)
			read += time.Since(start)
		}
		return read / time.Duration(m)
	}

	t.Run("Home", func(t *testing.T) {
		home := t.TempDir()
		c, err := client.New(ctx, client.Config{Node: node.RPC, Verify: true, Trust: trust, Home: home, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		db, err := dbm.NewGoLevelDB("light", home)
		if err != nil {
			t.Fatal(err)
		}
		fill(t, lightdb.New(db, "emrchain-light"))
		db.Close()

		c, err = client.New(ctx, client.Config{Node: node.RPC, Verify: true, Home: home, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		verify(t, c)

		// What holding the store per operation costs: the lock, the
		// trust.json check, goleveldb's open and close, a light client
		// from the store's newest header; and a verified read of a
		// header the store has not seen yet, whole.
		const n = 200
		start := time.Now()
		for range n {
			if err := client.NoopLightOp(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		op := time.Since(start) / n
		const m = 20
		t.Logf("a full store (%d headers): open, check and close per operation %s (mean of %d); a verified new header, whole, %s (mean of %d)",
			full, op.Round(10*time.Microsecond), n, verifyNew(t, c, m).Round(10*time.Microsecond), m)
	})

	t.Run("NoHome", func(t *testing.T) {
		c, err := client.New(ctx, client.Config{Node: node.RPC, Verify: true, Trust: trust, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fill(t, client.MemLightStore(c))
		verify(t, c)
		if n := client.MemLightStore(c).Size(); n != full {
			t.Fatalf("after a header verified on a full store, it holds %d headers, want %d (pruned)", n, full)
		}
		const m = 20
		t.Logf("in memory: a verified new header, whole, %s (mean of %d)", verifyNew(t, c, m).Round(10*time.Microsecond), m)
	})
}
