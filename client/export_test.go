package client

import (
	"context"
	"testing"
	"time"

	"github.com/cometbft/cometbft/light"
	lightstore "github.com/cometbft/cometbft/light/store"
)

// SetClock makes c check headers against now instead of time.Now.
func SetClock(c *Client, now func() time.Time) { c.now = now }

// NoopLightOp is one light-client operation of c that verifies nothing:
// with a Home, what withLight adds to each verification (the lock, the
// trust.json check, the store's open and close, a light client over it).
func NoopLightOp(ctx context.Context, c *Client) error {
	return c.withLight(ctx, func(*light.Client) error { return nil })
}

// MemLightStore is the in-memory light store of c, a Client without a
// Home.
func MemLightStore(c *Client) lightstore.Store { return c.lightStore }

// SetTrustRequestTimeout bounds each request of TrustFromGenesis by d
// until the test ends.
func SetTrustRequestTimeout(t testing.TB, d time.Duration) {
	old := trustRequestTimeout
	trustRequestTimeout = d
	t.Cleanup(func() { trustRequestTimeout = old })
}
