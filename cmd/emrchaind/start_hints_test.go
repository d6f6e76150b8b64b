package main

import (
	"bytes"
	"context"
	"errors"
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
		hintStateSync(context.Background(), log.NewTMLogger(&out), height.Load, notAborted, 10*time.Millisecond)
		close(done)
	}()
	waitLogged(t, &out, "state sync has restored no snapshot yet", 2)
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
		hintStateSync(ctx, log.NewNopLogger(), func() int64 { return 0 }, notAborted, time.Hour)
		close(ended)
	}()
	cancel()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the hint goes on after its context ended")
	}
}

func notAborted() error { return nil }

// TestHintStateSyncAfterAnAbort: once the app has aborted state sync (a
// failure of the node's own, which CometBFT does not retry), the hint no
// longer sends the operator to the peers: it says once that the node
// stopped, why, and that it needs a restart, and ends.
func TestHintStateSyncAfterAnAbort(t *testing.T) {
	var out lockedBuffer
	var aborted atomic.Pointer[error]
	done := make(chan struct{})
	go func() {
		hintStateSync(context.Background(), log.NewTMLogger(&out), func() int64 { return 0 }, func() error {
			if p := aborted.Load(); p != nil {
				return *p
			}
			return nil
		}, 10*time.Millisecond)
		close(done)
	}()
	waitLogged(t, &out, "state sync has restored no snapshot yet", 1)
	disk := errors.New("store: restore: writing the import: no space left on device")
	aborted.Store(&disk)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the hint goes on after state sync was aborted")
	}
	logged := out.String()
	after := logged[strings.LastIndex(logged, "state sync has restored no snapshot yet"):]
	if !strings.Contains(after, "state sync stopped") || !strings.Contains(after, "no space left on device") || !strings.Contains(after, "restart the node") {
		t.Fatalf("after the abort the hint does not say the node stopped, why, and to restart it:\n%s", logged)
	}
	if strings.Count(after, "state sync stopped") != 1 {
		t.Fatalf("the abort is said more than once:\n%s", logged)
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

// waitLogged waits until out holds text n times, and fails the test if it
// does not within 10 s.
func waitLogged(t *testing.T, out *lockedBuffer, text string, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for strings.Count(out.String(), text) < n {
		select {
		case <-deadline:
			t.Fatalf("%q logged fewer than %d times:\n%s", text, n, out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
