package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/light"
	lightstore "github.com/cometbft/cometbft/light/store"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
)

// Defaults of Config.
const (
	DefaultNode    = "http://127.0.0.1:26657"
	DefaultTimeout = 30 * time.Second
	// DefaultTrustPeriod is how long a trusted header stays usable to verify
	// the next one. A consortium's validator set changes rarely and only by
	// agreement, so two weeks is a conservative window; a client idle for
	// longer must be given a new trust root (emrcli light init).
	DefaultTrustPeriod = 14 * 24 * time.Hour
)

// Config configures a Client.
type Config struct {
	// Node is the CometBFT RPC endpoint of the full node queries and
	// transactions go to (the light client's primary). Default DefaultNode.
	Node string
	// ChainID of the chain. Verified mode takes it from the trust root (and
	// refuses a different one); otherwise empty means "ask the node".
	ChainID string
	// Witnesses are the RPC endpoints of other full nodes (the other
	// validators) the light client cross-checks every header with. Empty
	// means the primary is its own witness, which cross-checks nothing.
	Witnesses []string
	// Home is the directory of the light client's trusted store and trust
	// root (trust.json); "" keeps them in memory for this Client only.
	// Clients of one Home, in one process or many, work at once: each
	// holds the store only for the moment of a light-client operation,
	// under the lock file Home+".lock" (beside the directory).
	Home string
	// Verify turns on light-client verification of every query result and
	// every transaction result.
	Verify bool
	// Trust is the root of trust. Required in verified mode unless Home
	// already holds a trusted store.
	Trust *TrustOptions
	// Timeout bounds each RPC and each wait (for a block, for a commit).
	// Default DefaultTimeout.
	Timeout time.Duration
}

// TrustOptions is a header the operator trusts: its height and hash, and
// how long a trusted header may be used to verify the next one.
type TrustOptions struct {
	Height int64
	Hash   []byte
	// Period is the trusting period; 0 means DefaultTrustPeriod.
	Period time.Duration
}

// Client talks to one full node over CometBFT RPC and, in verified mode,
// checks everything it reads against headers verified by the CometBFT
// light client. It is safe for concurrent use.
type Client struct {
	cfg     Config
	rpc     *rpchttp.HTTP
	chainID string

	// Verified mode only.
	//
	// root is the root of trust the client verifies from, and trust the
	// options the light client is built with (its period may be
	// Config.Trust's): with a Home, each operation checks that the Home
	// still holds root (checkRoot). Set by New.
	root  *TrustRoot
	trust *TrustOptions
	// lightMu serialises the client's light-client operations (withLight).
	// Without a Home, light, lightDB and lightStore are the light client
	// and its in-memory store, for the Client's life; with one they are
	// nil: each operation opens the store under its lock and closes it.
	lightMu    sync.Mutex
	light      *light.Client
	lightDB    dbm.DB
	lightStore lightstore.Store
	closed     bool
	// witnesses are the light client's witnesses (but the node itself),
	// asked for their height before a header is verified (see
	// verifiedBlock); witnessNames are their addresses, for errors.
	witnesses    []*rpchttp.HTTP
	witnessNames []string
	// minHeight is the lowest state height a verified read may be answered
	// at: the highest height of anything the client has verified (a read,
	// a committed transaction, the newest header in its light store, less
	// one; with a Home, the store's newest is also what other runs of it
	// verified, read again after each operation). It only goes up (raiseMinHeight), so a node cannot take the
	// client back in time: once a transaction is seen committed, every
	// later read sees it. See readHeight.
	minHeight atomic.Int64
	// now is the local clock the light client checks headers against
	// (time.Now; tests set another).
	now func() time.Time
}

// New connects to cfg.Node. In verified mode it opens (or creates, from
// cfg.Trust) the light client's trusted store under cfg.Home, and keeps
// it open only while it does; a trust root the store does not match is
// refused.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Node == "" {
		cfg.Node = DefaultNode
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Trust != nil && cfg.Trust.Period == 0 {
		t := *cfg.Trust
		t.Period = DefaultTrustPeriod
		cfg.Trust = &t
	}
	rpc, err := newRPC(cfg.Node, cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", cfg.Node, err)
	}
	c := &Client{cfg: cfg, rpc: rpc, chainID: cfg.ChainID, now: time.Now}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.Verify {
		if err := c.openLight(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	if c.chainID == "" {
		st, err := c.rpc.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("node %s: status: %w", cfg.Node, err)
		}
		c.chainID = st.NodeInfo.Network
	}
	return c, nil
}

// Close ends the client's verified operations (a later one fails), and
// releases the in-memory light store of a client without a Home; a
// Home's store is held only during each operation, so there is nothing of
// it to release.
func (c *Client) Close() error {
	c.lightMu.Lock()
	defer c.lightMu.Unlock()
	c.closed = true
	var err error
	if c.lightDB != nil {
		err = c.lightDB.Close()
		c.lightDB = nil
	}
	c.light, c.lightStore = nil, nil
	return err
}

// MinHeight is the lowest state height the client's verified reads may now
// be answered at (see the package documentation, "Freshness").
func (c *Client) MinHeight() int64 { return c.minHeight.Load() }

// raiseMinHeight raises the client's minimum read height to h; a lower h
// changes nothing.
func (c *Client) raiseMinHeight(h int64) {
	for {
		cur := c.minHeight.Load()
		if h <= cur || c.minHeight.CompareAndSwap(cur, h) {
			return
		}
	}
}

// ChainID is the chain the client signs for and verifies.
func (c *Client) ChainID() string { return c.chainID }

// Verified reports whether results are verified by the light client.
func (c *Client) Verified() bool { return c.cfg.Verify }

// Node is the RPC endpoint the client talks to.
func (c *Client) Node() string { return c.cfg.Node }

// withTimeout bounds ctx by the configured timeout unless it has a
// sooner deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < c.cfg.Timeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// LatestHeight is the node's latest block height (unverified: use it only
// to decide what to wait for).
func (c *Client) LatestHeight(ctx context.Context) (int64, error) {
	st, err := c.rpc.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("node %s: status: %w", c.cfg.Node, err)
	}
	return st.SyncInfo.LatestBlockHeight, nil
}

// waitHeight polls the node until it has a block at height, within the
// timeout.
func (c *Client) waitHeight(ctx context.Context, height int64) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	latest := int64(-1)
	for {
		h, err := c.LatestHeight(ctx)
		if err == nil {
			if h >= height {
				return nil
			}
			latest = h
		}
		select {
		case <-ctx.Done():
			if latest >= 0 {
				err = fmt.Errorf("the node is at height %d", latest)
			}
			return fmt.Errorf("waiting for block %d: %w (%v)", height, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// isNotFoundRPC recognises CometBFT RPC's "not found" answers.
func isNotFoundRPC(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not found")
}

var errClosed = errors.New("client closed")
