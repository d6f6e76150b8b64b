package client_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestSharedHome: Clients of one Home, in one process or in several, work
// at once (emrcli commands in two terminals, a script's parallel uploads).
// The light store is locked only while a Client copies it (New) or writes
// its headers back; each keeps what every one verified, its count of
// headers right; a later Client starts no lower than any verified. A
// store emrcli light init --force replaced (ReplaceStore) takes nothing
// from a run of the old root.
func TestSharedHome(t *testing.T) {
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	gen, err := os.ReadFile(node.Genesis)
	if err != nil {
		t.Fatal(err)
	}
	_, trust, err := client.TrustFromGenesis(ctx, node.RPC, gen, 0)
	if err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T, home string, trust *client.TrustOptions) *client.Client {
		t.Helper()
		c, err := client.New(ctx, client.Config{Node: node.RPC, Verify: true, Trust: trust, Home: home, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("client.New: %v", err)
		}
		return c
	}
	// latest verifies a header newer than after.
	latest := func(t *testing.T, c *client.Client, after int64) int64 {
		t.Helper()
		node.WaitHeight(t, ctx, after+1)
		h, err := c.VerifyLatest(ctx)
		if err != nil {
			t.Fatalf("VerifyLatest: %v", err)
		}
		if h.Height <= after {
			t.Fatalf("VerifyLatest: header %d, want one above %d", h.Height, after)
		}
		return h.Height
	}
	stored := func(t *testing.T, home string) []int64 {
		t.Helper()
		hs, size, err := client.StoreHeights(ctx, home)
		if err != nil {
			t.Fatalf("the light store: %v", err)
		}
		if int(size) != len(hs) {
			t.Fatalf("the light store counts %d headers, holds %d: %v", size, len(hs), hs)
		}
		return hs
	}

	t.Run("TwoClientsAtOnce", func(t *testing.T) {
		home := t.TempDir()
		a := open(t, home, trust) // a new store
		defer a.Close()
		b := open(t, home, nil) // the same store, while a has it
		defer b.Close()
		ha := latest(t, a, 3)
		hb := latest(t, b, ha)
		ha2 := latest(t, a, hb)
		// A header below the newest (verified backwards) is written back
		// at Close.
		var params emrv1.QueryParamsResponse
		if _, err := a.QueryInfoAt(ctx, 2, "Params", &emrv1.QueryParamsRequest{}, &params); err != nil {
			t.Fatalf("a read at height 2: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("a.Close: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("b.Close: %v", err)
		}
		hs := stored(t, home)
		for _, h := range []int64{trust.Height, 3, ha, hb, ha2} {
			if !slices.Contains(hs, h) {
				t.Errorf("header %d is not in the light store after both closed: %v", h, hs)
			}
		}
		c := open(t, home, nil)
		defer c.Close()
		if c.MinHeight() < ha2-1 {
			t.Fatalf("a third client starts at height %d, below %d, which the first verified", c.MinHeight(), ha2-1)
		}
	})

	t.Run("NewestKeptBeforeReturned", func(t *testing.T) {
		// A header newer than the store's is written back before what it
		// proves is returned: a run started meanwhile (or after a crash)
		// never goes below it.
		home := t.TempDir()
		a := open(t, home, trust)
		defer a.Close()
		ha := latest(t, a, 3)
		b := open(t, home, nil)
		defer b.Close()
		if b.MinHeight() < ha-1 {
			t.Fatalf("a client opened after another verified header %d starts at %d", ha, b.MinHeight())
		}
	})

	t.Run("ManyRunsAtOnce", func(t *testing.T) {
		home := t.TempDir()
		open(t, home, trust).Close()
		var wg sync.WaitGroup
		errs := make(chan error, 12)
		for i := range 4 {
			wg.Go(func() {
				for j := range 3 {
					c, err := client.New(ctx, client.Config{Node: node.RPC, Verify: true, Home: home, Timeout: 10 * time.Second})
					if err != nil {
						errs <- fmt.Errorf("run %d.%d: New: %w", i, j, err)
						return
					}
					if _, err := c.Params(ctx); err != nil {
						errs <- fmt.Errorf("run %d.%d: Params: %w", i, j, err)
					}
					if err := c.Close(); err != nil {
						errs <- fmt.Errorf("run %d.%d: Close: %w", i, j, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		stored(t, home)
	})

	t.Run("ReplacedWhileRunning", func(t *testing.T) {
		home := t.TempDir()
		a := open(t, home, trust)
		defer a.Close()
		latest(t, a, 3)
		oldTrust, err := os.ReadFile(filepath.Join(home, "trust.json"))
		if err != nil {
			t.Fatal(err)
		}

		// emrcli light init --force: a new root, built aside, then put in
		// place while a runs.
		rpc, err := rpchttp.New(node.RPC)
		if err != nil {
			t.Fatal(err)
		}
		h := node.Height(ctx)
		commit, err := rpc.Commit(ctx, &h)
		if err != nil {
			t.Fatal(err)
		}
		root := &client.TrustOptions{Height: h, Hash: commit.SignedHeader.Hash()}
		fresh := t.TempDir()
		open(t, fresh, root).Close()
		if err := client.ReplaceStore(ctx, home, fresh); err != nil {
			t.Fatalf("ReplaceStore: %v", err)
		}

		// a goes on from its root, and writes none of it into the store.
		latest(t, a, h)
		var params emrv1.QueryParamsResponse
		if _, err := a.QueryInfoAt(ctx, 2, "Params", &emrv1.QueryParamsRequest{}, &params); err != nil {
			t.Fatalf("a read at height 2: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("a.Close: %v", err)
		}
		if hs := stored(t, home); !slices.Equal(hs, []int64{h}) {
			t.Fatalf("the replaced store holds %v, want only its root %d", hs, h)
		}
		if sr, err := client.StoreRoot(ctx, home); err != nil || sr == nil || sr.Height != h {
			t.Fatalf("the replaced store's root: %+v %v", sr, err)
		}
		c := open(t, home, nil)
		if tr := c.TrustRoot(); tr == nil || tr.Height != h {
			t.Fatalf("the trust root after the replacement: %+v", tr)
		}
		latest(t, c, h)
		c.Close()

		// A crash between the store and trust.json: refused.
		if err := os.WriteFile(filepath.Join(home, "trust.json"), oldTrust, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = client.New(ctx, client.Config{Node: node.RPC, Verify: true, Home: home, Timeout: 10 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "light init --force again") {
			t.Fatalf("a store and a trust.json of two roots: %v, want a refusal", err)
		}
	})

	t.Run("StoreFromBeforeItsRoot", func(t *testing.T) {
		// A store made before the store recorded its root is used as
		// trust.json says, and the first write-back records it.
		home := t.TempDir()
		open(t, home, trust).Close()
		if err := client.DropStoreRoot(ctx, home); err != nil {
			t.Fatal(err)
		}
		c := open(t, home, nil)
		latest(t, c, 3)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if sr, err := client.StoreRoot(ctx, home); err != nil || sr == nil || sr.Height != trust.Height {
			t.Fatalf("the store's root after a write-back: %+v %v", sr, err)
		}
	})
}
