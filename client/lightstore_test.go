package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
)

// TestSharedHome: Clients of one Home, in one process or in several
// (emrcli commands in two terminals, a script's parallel uploads), work at
// once. Each holds the light store only for the moment of a light-client
// operation, under HOME.lock; each sees, after its next operation, the
// headers the others verified; a store emrcli light init --force replaced
// stops a Client of the old root (ErrTrustRootReplaced); a store deleted
// while trust.json stayed is made again. (Before session 37, a Client held
// goleveldb's lock from New to Close: a second New of the Home failed at
// once, "is another emrcli using it?".)
func TestSharedHome(t *testing.T) {
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	node := clienttest.StartNode(t, clienttest.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	_, trust := node.Trust(t, ctx)
	open := func(t *testing.T, home string, trust *client.TrustOptions) *client.Client {
		t.Helper()
		c, err := client.New(ctx, client.Config{Node: node.RPC, Verify: true, Trust: trust, Home: home, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("client.New: %v", err)
		}
		t.Cleanup(func() { c.Close() })
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
	// newRoot is a root of trust at the node's current height, and a
	// store of it built aside (as emrcli light init builds one).
	newRoot := func(t *testing.T) (*client.TrustOptions, string) {
		t.Helper()
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
		fresh := filepath.Join(t.TempDir(), "fresh")
		open(t, fresh, root).Close()
		return root, fresh
	}
	// install puts the store built in fresh in home's place, under its
	// lock, as emrcli light init does.
	install := func(t *testing.T, home, fresh string) {
		t.Helper()
		release, err := client.LockStore(ctx, home)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if err := os.Rename(home, home+".old"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(fresh, home); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(home + ".old"); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("TwoClientsAtOnce", func(t *testing.T) {
		home := filepath.Join(t.TempDir(), "light")
		a := open(t, home, trust) // a new store
		b := open(t, home, nil)   // the same store, while a is open
		for round := range 5 {
			var wg sync.WaitGroup
			var errs [2]error
			for i, c := range []*client.Client{a, b} {
				wg.Go(func() { _, errs[i] = c.VerifyLatest(ctx) })
			}
			wg.Wait()
			if err := errors.Join(errs[:]...); err != nil {
				t.Fatalf("round %d: two clients of one home verifying at once: %v", round, err)
			}
		}
		// What one verifies, the other sees after its next operation
		// (one that verifies nothing itself).
		ha := latest(t, a, b.MinHeight()+1)
		if b.MinHeight() >= ha-1 {
			t.Fatalf("b is at %d before it did anything after a verified %d", b.MinHeight(), ha)
		}
		h, _, err := b.LatestTrusted()
		if err != nil {
			t.Fatal(err)
		}
		if h < ha || b.MinHeight() < ha-1 {
			t.Fatalf("after a verified header %d, b's next operation sees newest %d and MinHeight %d, want at least %d and %d", ha, h, b.MinHeight(), ha, ha-1)
		}
		// And a Client opened later starts there.
		if c := open(t, home, nil); c.MinHeight() < ha-1 {
			t.Fatalf("a third client starts at %d, below %d, which the first verified", c.MinHeight(), ha-1)
		}
	})

	t.Run("ManyClientsAtOnce", func(t *testing.T) {
		home := filepath.Join(t.TempDir(), "light")
		open(t, home, trust).Close()
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				c, err := client.New(ctx, client.Config{Node: node.RPC, Verify: true, Home: home, Timeout: 10 * time.Second})
				if err != nil {
					errs[i] = fmt.Errorf("client %d: New: %w", i, err)
					return
				}
				defer c.Close()
				for j := range 3 {
					if _, err := c.Params(ctx); err != nil {
						errs[i] = fmt.Errorf("client %d, read %d: %w", i, j, err)
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ReplacedWhileRunning", func(t *testing.T) {
		home := filepath.Join(t.TempDir(), "light")
		a := open(t, home, trust)
		ha := latest(t, a, 3)

		// A new store of the same root (light init --force given the
		// root a has): a just goes on, no lower than it was.
		_, same := func() (*client.TrustOptions, string) {
			fresh := filepath.Join(t.TempDir(), "fresh")
			open(t, fresh, trust).Close()
			return trust, fresh
		}()
		install(t, home, same)
		if h := latest(t, a, ha); a.MinHeight() < h-1 {
			t.Fatalf("after a store of its own root went in: header %d, MinHeight %d", h, a.MinHeight())
		}

		// A store of another root: a's next operation refuses.
		root, fresh := newRoot(t)
		install(t, home, fresh)
		node.WaitHeight(t, ctx, root.Height+1)
		_, err := a.VerifyLatest(ctx)
		if !errors.Is(err, client.ErrTrustRootReplaced) {
			t.Fatalf("a verified read after light init --force replaced the root: %v, want ErrTrustRootReplaced", err)
		}
		t.Logf("the error: %v", err)
		if _, _, err := a.LatestTrusted(); !errors.Is(err, client.ErrTrustRootReplaced) {
			t.Fatalf("LatestTrusted after the root was replaced: %v", err)
		}
		// A Client of the new root works.
		c := open(t, home, nil)
		if tr := c.TrustRoot(); tr == nil || tr.Height != root.Height {
			t.Fatalf("the trust root after the replacement: %+v", tr)
		}
		latest(t, c, root.Height)

		// trust.json removed: refused the same way.
		if err := os.Remove(filepath.Join(home, "trust.json")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyLatest(ctx); !errors.Is(err, client.ErrTrustRootReplaced) {
			t.Fatalf("a verified read after trust.json was removed: %v, want ErrTrustRootReplaced", err)
		}
	})

	t.Run("StoreDeleted", func(t *testing.T) {
		// trust.json without light.db (the store deleted, or a home handed
		// over with its trust.json only): the next run makes the store
		// again, and keeps what it verifies for the run after.
		home := filepath.Join(t.TempDir(), "light")
		open(t, home, trust).Close()
		if err := os.RemoveAll(filepath.Join(home, "light.db")); err != nil {
			t.Fatal(err)
		}
		a := open(t, home, nil)
		h := latest(t, a, 3)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(home, "light.db")); err != nil {
			t.Fatalf("no light store after a run verified header %d: %v", h, err)
		}
		b := open(t, home, nil)
		if b.MinHeight() < h-1 {
			t.Fatalf("a run started after another verified header %d starts at MinHeight %d", h, b.MinHeight())
		}
		// Deleted while a Client runs: its next operation makes it again.
		if err := os.RemoveAll(filepath.Join(home, "light.db")); err != nil {
			t.Fatal(err)
		}
		h2 := latest(t, b, h)
		if c := open(t, home, nil); c.MinHeight() < h2-1 {
			t.Fatalf("after the store was deleted under a running client that then verified %d, a new one starts at %d", h2, c.MinHeight())
		}
	})

	t.Run("NewRootsAtOnce", func(t *testing.T) {
		// Two Clients given two different roots for one new Home at once:
		// one sets its root, the other is refused, as it would be after.
		r2, _ := newRoot(t)
		for attempt := range 3 {
			home := filepath.Join(t.TempDir(), "light")
			var wg sync.WaitGroup
			var cs [2]*client.Client
			var errs [2]error
			start := make(chan struct{})
			for i, tr := range []*client.TrustOptions{trust, r2} {
				wg.Go(func() {
					<-start
					cs[i], errs[i] = client.New(ctx, client.Config{Node: node.RPC, Verify: true, Trust: tr, Home: home, Timeout: 10 * time.Second})
				})
			}
			close(start)
			wg.Wait()
			var won []int
			for i, c := range cs {
				if c != nil {
					won = append(won, i)
					defer c.Close()
				}
			}
			if len(won) != 1 {
				t.Fatalf("attempt %d: two roots for one new home at once: errors %v / %v, want exactly one refused", attempt, errs[0], errs[1])
			}
			stored, err := client.ReadTrustRoot(home)
			if err != nil || stored == nil || stored.Height != cs[won[0]].TrustRoot().Height {
				t.Fatalf("attempt %d: client %d won with root %d; the home's trust.json: %+v %v", attempt, won[0], cs[won[0]].TrustRoot().Height, stored, err)
			}
		}
	})
}
