package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/libs/log"
)

// lockedBuffer is a log destination safe for concurrent writes and reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHintStateSync: while a state-sync join has restored nothing, start
// says, again and again, what the join needs; once a state is restored it
// stops saying it.
func TestHintStateSync(t *testing.T) {
	var out lockedBuffer
	var height atomic.Int64
	done := make(chan struct{})
	go func() {
		hintStateSync(context.Background(), log.NewTMLogger(&out), height.Load, 10*time.Millisecond)
		close(done)
	}()
	deadline := time.After(10 * time.Second)
	for strings.Count(out.String(), "state sync has restored no snapshot yet") < 2 {
		select {
		case <-deadline:
			t.Fatalf("no hint while nothing is restored:\n%s", out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !strings.Contains(out.String(), "snapshot_interval") {
		t.Fatalf("the hint does not name snapshot_interval:\n%s", out.String())
	}
	height.Store(40)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the hint goes on after a state was restored")
	}

	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() {
		hintStateSync(ctx, log.NewNopLogger(), func() int64 { return 0 }, time.Hour)
		close(ended)
	}()
	cancel()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the hint goes on after its context ended")
	}
}

// TestWarnIfNoAppConfig: a home without app.toml is logged as an error
// (start and the standalone sidecar run on the defaults), one with it is
// not.
func TestWarnIfNoAppConfig(t *testing.T) {
	home := t.TempDir()
	var out lockedBuffer
	warnIfNoAppConfig(log.NewTMLogger(&out), home)
	if !strings.Contains(out.String(), "app.toml not found") {
		t.Fatalf("no app.toml, no error logged:\n%s", out.String())
	}
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeAppConfig(home, defaultAppConfig()); err != nil {
		t.Fatal(err)
	}
	var again lockedBuffer
	warnIfNoAppConfig(log.NewTMLogger(&again), home)
	if again.String() != "" {
		t.Fatalf("logged with an app.toml: %s", again.String())
	}
}

// TestWarnIfDiscardingResults: a node that discards ABCI responses is told
// what of emrchain stops working; CometBFT's default is not warned about.
func TestWarnIfDiscardingResults(t *testing.T) {
	var out lockedBuffer
	storage := cmtcfg.DefaultStorageConfig()
	warnIfDiscardingResults(log.NewTMLogger(&out), storage)
	if out.String() != "" {
		t.Fatalf("logged with CometBFT's default storage settings: %s", out.String())
	}
	storage.DiscardABCIResponses = true
	warnIfDiscardingResults(log.NewTMLogger(&out), storage)
	for _, want := range []string{"discard_abci_responses", "sweep deletes nothing", "cannot verify"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the warning does not say %q:\n%s", want, out.String())
		}
	}
}
