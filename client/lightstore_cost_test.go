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

// TestStoreOpenCostFlat: a Home's light store is opened and closed for
// every light-client operation (withLight), each saving a header and
// pruning to the light client's 1,000. What that costs must not grow with
// the number of operations (goleveldb writes a journal and a manifest at
// each open: they must not pile up). Session 36's review asked the same of
// the withdrawn write-back (TestReviewWriteBackCost). The times are
// logged: docs/decisions.md quotes them.
func TestStoreOpenCostFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	var vs []*cmttypes.Validator
	for range 4 {
		vs = append(vs, cmttypes.NewValidator(ed25519.GenPrivKey().PubKey(), 10))
	}
	vals := cmttypes.NewValidatorSet(vs)
	home := t.TempDir()
	ctx := context.Background()
	op := func(h int64) {
		t.Helper()
		db, err := openStoreDB(ctx, home)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s := lightdb.New(db, lightPrefix)
		if _, err := s.LastLightBlockHeight(); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveLightBlock(testLightBlock(vals, h)); err != nil {
			t.Fatal(err)
		}
		if err := s.Prune(lightPruningSize); err != nil {
			t.Fatal(err)
		}
	}
	db, err := openStoreDB(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	s := lightdb.New(db, lightPrefix)
	for h := int64(1); h <= lightPruningSize; h++ {
		if err := s.SaveLightBlock(testLightBlock(vals, h)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	const n = 600
	durs := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		op(int64(lightPruningSize + 1 + i))
		durs[i] = time.Since(start)
	}
	avg := func(ds []time.Duration) time.Duration {
		var s time.Duration
		for _, d := range ds {
			s += d
		}
		return s / time.Duration(len(ds))
	}
	files, _ := os.ReadDir(filepath.Join(home, lightDBName+".db"))
	var size int64
	for _, f := range files {
		if fi, err := f.Info(); err == nil {
			size += fi.Size()
		}
	}
	first, last := avg(durs[:100]), avg(durs[n-100:])
	t.Logf("open, save a header, prune, close: first 100 avg %s, last 100 avg %s; store: %d files, %d bytes", first, last, len(files), size)
	if last > 4*first {
		t.Errorf("an operation costs %s after %d of them, %s at first", last, n, first)
	}
	if len(files) > 50 {
		t.Errorf("the store holds %d files after %d operations", len(files), n)
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
