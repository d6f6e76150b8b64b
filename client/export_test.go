package client

import (
	"context"
	"errors"
	"time"

	"github.com/cometbft/cometbft/light/store"
	lightdb "github.com/cometbft/cometbft/light/store/db"
)

// SetClock makes c check headers against now instead of time.Now.
func SetClock(c *Client, now func() time.Time) { c.now = now }

// StoreHeights is the heights of the headers in the light store under
// home, oldest first, and the count the store keeps of them.
func StoreHeights(ctx context.Context, home string) ([]int64, uint16, error) {
	db, err := openStore(ctx, home, false, false)
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	s := lightdb.New(db, lightPrefix)
	last, err := s.LastLightBlockHeight()
	if err != nil {
		return nil, 0, err
	}
	var hs []int64
	for h := last + 1; h > 1; {
		lb, err := s.LightBlockBefore(h)
		if errors.Is(err, store.ErrLightBlockNotFound) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		hs = append([]int64{lb.Height}, hs...)
		h = lb.Height
	}
	return hs, s.Size(), nil
}

// DropStoreRoot removes the trust root the light store under home records,
// as in a store made before it did.
func DropStoreRoot(ctx context.Context, home string) error {
	db, err := openStore(ctx, home, false, false)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.DeleteSync([]byte(lightRootKey))
}

// StoreRoot is the trust root the light store under home records.
func StoreRoot(ctx context.Context, home string) (*TrustRoot, error) {
	db, err := openStore(ctx, home, true, false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return storeRoot(db, home)
}
