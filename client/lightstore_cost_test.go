package client

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/ed25519"
	lightdb "github.com/cometbft/cometbft/light/store/db"
	cmttypes "github.com/cometbft/cometbft/types"
)

// fullStore is a Home (in a temporary directory) whose light store holds
// the light client's 1,000 headers of a set of four validators, and op,
// which does what withLight does to the store in each light-client
// operation: open it, read its newest height, save header h, prune it to
// 1,000 and close it.
func fullStore(tb testing.TB) (home string, op func(h int64)) {
	var vs []*cmttypes.Validator
	for range 4 {
		vs = append(vs, cmttypes.NewValidator(ed25519.GenPrivKey().PubKey(), 10))
	}
	vals := cmttypes.NewValidatorSet(vs)
	home = tb.TempDir()
	ctx := context.Background()
	op = func(h int64) {
		db, err := openStoreDB(ctx, home)
		if err != nil {
			tb.Fatal(err)
		}
		defer db.Close()
		s := lightdb.New(db, lightPrefix)
		if _, err := s.LastLightBlockHeight(); err != nil {
			tb.Fatal(err)
		}
		if err := s.SaveLightBlock(testLightBlock(vals, h)); err != nil {
			tb.Fatal(err)
		}
		if err := s.Prune(lightPruningSize); err != nil {
			tb.Fatal(err)
		}
	}
	db, err := openStoreDB(ctx, home)
	if err != nil {
		tb.Fatal(err)
	}
	s := lightdb.New(db, lightPrefix)
	for h := int64(1); h <= lightPruningSize; h++ {
		if err := s.SaveLightBlock(testLightBlock(vals, h)); err != nil {
			tb.Fatal(err)
		}
	}
	db.Close()
	return home, op
}

// TestStoreStaysSmall: a Home's light store is opened and closed for
// every light-client operation (withLight), each saving a header and
// pruning to the light client's 1,000. goleveldb writes a journal and a
// manifest at each open: over 600 operations they must not pile up (what
// an operation costs, BenchmarkLightStoreOperation measures).
func TestStoreStaysSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	home, op := fullStore(t)
	const n = 600
	for i := range n {
		op(int64(lightPruningSize + 1 + i))
	}
	files, _ := os.ReadDir(filepath.Join(home, lightDBName+".db"))
	var size int64
	for _, f := range files {
		if fi, err := f.Info(); err == nil {
			size += fi.Size()
		}
	}
	t.Logf("after %d operations the store holds %d files, %d bytes", n, len(files), size)
	if len(files) > 50 || size > 16<<20 {
		t.Errorf("the store holds %d files, %d bytes, after %d operations: it grows with them", len(files), size, n)
	}
}

// BenchmarkLightStoreOperation: what one light-client operation costs a
// Home's full store (open, save a header, prune, close), the price of
// letting runs of one Home share it (docs/decisions.md).
func BenchmarkLightStoreOperation(b *testing.B) {
	_, op := fullStore(b)
	h := int64(lightPruningSize)
	for b.Loop() {
		h++
		op(h)
	}
}

// TestStoreHeldOpenElsewhere: a store goleveldb finds locked though
// HOME.lock is this run's is held open by a program that does not take
// HOME.lock (an emrcli older than session 37, which kept it open for its
// whole run): openStoreDB waits for it while its context lets, says so
// when that ends, and opens it once released.
func TestStoreHeldOpenElsewhere(t *testing.T) {
	home := t.TempDir()
	held, err := openStoreDB(context.Background(), home)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = openStoreDB(ctx, home)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another program keeps it open (an emrcli older than this one") {
		t.Fatalf("a store held open elsewhere past the wait: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		db, err := openStoreDB(context.Background(), home)
		if err == nil {
			db.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("opened (%v) while held elsewhere", err)
	default:
	}
	held.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a store released elsewhere: not opened after 10 s")
	}
}
