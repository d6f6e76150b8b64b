package abci

import (
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/cometbft/cometbft/abci/types"
	"github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/p2p"

	"github.com/emrchain/emrchain/app"
)

// AppVersion is the application protocol version reported in Info. It goes
// into every block header (version.app); bump it only with a coordinated
// upgrade of every validator.
const AppVersion uint64 = 1

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("abci: application closed")

var _ types.Application = (*Application)(nil)

// Options configure an Application.
type Options struct {
	// Logger receives the adapter's log lines; nil means no logging.
	Logger log.Logger
	// Version is the software version reported in Info (e.g. "v0.1.0").
	Version string
	// AllowedPeers are the node ids (hex, any case) of the nodes this node
	// accepts over P2P: with CometBFT's filter_peers on, only they may
	// connect (the peer filter queries, PeerFilterIDPath). Empty: none,
	// the permissioned default; a single validator needs no peers.
	AllowedPeers []string
	// Snapshots makes and serves state-sync snapshots; nil: none (a node
	// can still restore one).
	Snapshots *SnapshotOptions
	// OnHalt, if set, is called once, with the error, when FinalizeBlock
	// or Commit fails (see the package documentation, "Errors and
	// halting"). CometBFT stops consensus on such an error but keeps the
	// process, and its RPC, serving a state that no longer moves; the
	// caller stops the process, so that a supervisor sees the failure and
	// a restart replays the block.
	OnHalt func(error)
}

// Application is the CometBFT ABCI application of emrchain: a thin adapter
// over *app.App. Build one with New.
type Application struct {
	// mu serializes the calls that change or check state (InitChain,
	// CheckTx, the block calls, Commit). Info and Query read committed
	// versions only, which the store serves beside a block in progress, so
	// they hold readMu for reading instead: a proven read never waits for a
	// block, and a flood of them never holds one up. Close takes both.
	mu      sync.Mutex
	readMu  sync.RWMutex
	app     *app.App
	logger  log.Logger
	version string
	closed  bool            // written under mu and readMu; read under either
	allowed map[string]bool // Options.AllowedPeers, lowercase; empty: none
	snaps   *snapshotter
	onHalt  func(error)
	halted  sync.Once
	// refused holds the node ids whose refusal was logged at Info
	// (logRefusedPeer), under refusedMu.
	refusedMu sync.Mutex
	refused   map[string]bool
}

// New returns the ABCI adapter over a.
func New(a *app.App, opts Options) *Application {
	logger := opts.Logger
	if logger == nil {
		logger = log.NewNopLogger()
	}
	allowed := make(map[string]bool, len(opts.AllowedPeers))
	for _, id := range opts.AllowedPeers {
		allowed[strings.ToLower(id)] = true
	}
	return &Application{app: a, logger: logger, version: opts.Version, allowed: allowed, snaps: newSnapshotter(opts.Snapshots), onHalt: opts.OnHalt,
		refused: map[string]bool{}}
}

// halt reports err, a failure of a block call, to Options.OnHalt (once)
// and returns it.
func (a *Application) halt(err error) error {
	a.halted.Do(func() {
		a.logger.Error("the state machine failed a block: consensus halts on this node", "err", err)
		if a.onHalt != nil {
			a.onHalt(err)
		}
	})
	return err
}

// Close waits for any ABCI call in flight to return, stops a snapshot being
// written (it is left unlisted), and makes every later call fail with
// ErrClosed. Call it after stopping the node and before closing the store.
// It does not close the app or the store, which the caller owns.
func (a *Application) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.readMu.Lock()
	defer a.readMu.Unlock()
	a.closed = true
	a.snaps.stop() // no Commit can start another now
}

// lock takes the adapter mutex; it fails, without holding the mutex, once the
// adapter is closed.
func (a *Application) lock() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// rlock takes readMu for reading (Info, Query); it fails, without holding
// it, once the adapter is closed. Release with a.readMu.RUnlock.
func (a *Application) rlock() error {
	a.readMu.RLock()
	if a.closed {
		a.readMu.RUnlock()
		return ErrClosed
	}
	return nil
}

// blockInfo converts the height and time CometBFT decided for a block. The
// time is BFT time from the header, the only clock the state machine sees;
// UTC keeps its representation identical on every node.
func blockInfo(height int64, t time.Time) app.BlockInfo {
	return app.BlockInfo{Height: height, Time: t.UTC()}
}

// events converts app events to ABCI events.
func events(evs []app.Event) []types.Event {
	if len(evs) == 0 {
		return nil
	}
	out := make([]types.Event, len(evs))
	for i, ev := range evs {
		attrs := make([]types.EventAttribute, len(ev.Attributes))
		for j, at := range ev.Attributes {
			attrs[j] = types.EventAttribute{Key: at.Key, Value: at.Value, Index: at.Index}
		}
		out[i] = types.Event{Type: ev.Type, Attributes: attrs}
	}
	return out
}

// IsNodeID reports whether s is a CometBFT node id: 40 hex characters (in
// any case), the hex of a 20-byte address.
func IsNodeID(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && len(s) == 2*p2p.IDByteLength
}
