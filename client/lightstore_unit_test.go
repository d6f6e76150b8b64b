package client

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStoreLockWait: a store another run holds is waited for, as long as
// it is held, and no longer than the caller's context, after which the
// error names the store's directory; a store that is not there is not
// waited for, nor created.
func TestStoreLockWait(t *testing.T) {
	home := t.TempDir()
	ctx := context.Background()
	if _, err := openStore(ctx, home, true, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("opening a missing store: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(home, lightDBName+".db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("opening a missing store left %v", err)
	}
	held, err := openStore(ctx, home, false, true)
	if err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = openStore(short, home, true, false)
	if err == nil || !strings.Contains(err.Error(), "the light store in "+home+" stayed locked") {
		t.Fatalf("a store held past the wait: %v, want it said", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("gave up after %s, want the context's 200ms", d)
	}

	go func() {
		time.Sleep(300 * time.Millisecond)
		held.Close()
	}()
	long, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := openStore(long, home, false, false)
	if err != nil {
		t.Fatalf("a store released during the wait: %v", err)
	}
	db.Close()

	// Readers share it.
	r1, err := openStore(ctx, home, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	quick, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	r2, err := openStore(quick, home, true, false)
	if err != nil {
		t.Fatalf("a second reader at once: %v", err)
	}
	r2.Close()
}
