package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/light"
	"github.com/cometbft/cometbft/light/provider"
	"github.com/cometbft/cometbft/node"
	sm "github.com/cometbft/cometbft/state"
	"github.com/cometbft/cometbft/statesync"
)

// recordRestoredState mends the one state a crash can leave at the end of
// a state-sync join: the app has restored a snapshot of height h (and
// may have gone on), but CometBFT, which records the restored state after
// the app says the last chunk is in, holds no state at all. Left as it is,
// CometBFT would state-sync again and every snapshot would be refused (the
// app is not empty), forever; with state sync off, its handshake would
// panic. With [statesync] configured, the state of height h is recorded
// from the light client (CometBFT's offline bootstrap, which checks that
// its app hash is the app's); without, start refuses and says what to do.
// Nothing happens when CometBFT holds a state or the app holds none.
func recordRestoredState(ctx context.Context, logger log.Logger, conf *cmtcfg.Config, dbProvider cmtcfg.DBProvider,
	genProvider node.GenesisDocProvider, appDB string, h int64, appHash []byte) error {
	if h == 0 {
		return nil
	}
	empty, err := cometStateEmpty(conf, dbProvider)
	if err != nil || !empty {
		return err
	}
	if !conf.StateSync.Enable {
		return fmt.Errorf("the app store (%s) holds the state of height %d, but CometBFT holds none (%s): "+
			"a state-sync join that ended in a crash, or data restored in part. Either set [statesync] enable, "+
			"rpc_servers, trust_height and trust_hash in config.toml and start again (the state is then recorded "+
			"from the light client), or remove %s to join from the start", appDB, h, conf.DBDir(), appDB)
	}
	logger.Info("the app holds a state CometBFT did not record (a state-sync join ended in a crash): recording it through the light client",
		"height", h, "rpc_servers", conf.StateSync.RPCServers)
	if err := checkRestoredAppHash(ctx, logger, conf, genProvider, appDB, h, appHash); err != nil {
		return err
	}
	if err := node.BootstrapState(ctx, conf, dbProvider, genProvider, uint64(h), appHash); err != nil {
		return fmt.Errorf("record the app's state of height %d in CometBFT: %w", h, err)
	}
	return nil
}

// checkRestoredAppHash asks the light client (the [statesync] servers and
// trust settings) for the app hash of height h and compares it with the
// app's: CometBFT's bootstrap would find a mismatch too, but then closes
// its databases twice, which panics on pebble. The light client proves
// the state of h with headers h+1 and h+2, which the chain may not have
// made yet: those it waits for, as long as it takes (a signal stops it).
func checkRestoredAppHash(ctx context.Context, logger log.Logger, conf *cmtcfg.Config, genProvider node.GenesisDocProvider,
	appDB string, h int64, appHash []byte) error {
	gen, err := genProvider()
	if err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	genState, err := sm.MakeGenesisState(gen.GenesisDoc)
	if err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	sp, err := statesync.NewLightClientStateProviderWithDBKeyVersion(ctx, genState.ChainID, genState.Version, genState.InitialHeight,
		conf.StateSync.RPCServers, light.TrustOptions{
			Period: conf.StateSync.TrustPeriod, Height: conf.StateSync.TrustHeight, Hash: conf.StateSync.TrustHashBytes(),
		}, logger.With("module", "light"), conf.Storage.ExperimentalKeyLayout)
	if err != nil {
		return fmt.Errorf("light client for the app's state of height %d ([statesync] rpc_servers, trust_height, trust_hash): %w", h, err)
	}
	start := time.Now()
	for wait := retryMin; ; wait = nextRetry(wait) {
		trusted, err := sp.AppHash(ctx, uint64(h))
		switch {
		case err == nil && !bytes.Equal(trusted, appHash):
			return fmt.Errorf("the app store holds state %d with app hash %X, but the chain's is %X: it is not this chain's state; remove %s and start again",
				h, appHash, trusted, appDB)
		case err == nil:
			return nil
		case !headersNotYetMade(err):
			return fmt.Errorf("verify the app's state of height %d: %w", h, err)
		}
		logger.Info("waiting for the headers that prove the app's state", "height", h, "waited", time.Since(start).Round(time.Second), "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("verify the app's state of height %d: %w", h, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// headersNotYetMade reports the light client's failures that a chain
// still making its next blocks explains: a height above the servers'
// newest, a block they do not have yet, no answer. (The light client
// returns its last witness's error, which may be any of these.)
func headersNotYetMade(err error) bool {
	for _, e := range []error{provider.ErrHeightTooHigh, provider.ErrLightBlockNotFound, provider.ErrNoResponse} {
		if errors.Is(err, e) || strings.Contains(err.Error(), e.Error()) {
			return true
		}
	}
	return false
}

// cometStateEmpty reports whether CometBFT's state store holds no state:
// never started, or started to state-sync and never recorded one.
func cometStateEmpty(conf *cmtcfg.Config, dbProvider cmtcfg.DBProvider) (bool, error) {
	db, err := dbProvider(&cmtcfg.DBContext{ID: "state", Config: conf})
	if err != nil {
		return false, fmt.Errorf("open %s: %w", filepath.Join(conf.DBDir(), "state.db"), err)
	}
	st := sm.NewStore(db, sm.StoreOptions{DBKeyLayout: conf.Storage.ExperimentalKeyLayout})
	state, err := st.Load()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("read CometBFT's state: %w", err)
	}
	return state.IsEmpty(), nil
}

// stateSyncHintEvery is how long a state-sync join may restore nothing
// before start says what it needs, and how often it says so again.
const stateSyncHintEvery = 2 * time.Minute

// hintStateSync logs, every `every` while height (the app's last commit)
// is 0, what a state-sync join needs: CometBFT looks for snapshots again
// and again, logging only that it does, and a consortium where no node
// makes snapshots (snapshot_interval is 0 by default) leaves the joining
// node waiting for ever without a reason. Once the app has aborted state
// sync (aborted is not nil: a failure of this node's own, which CometBFT
// does not retry), it says that instead, once: the peers are not the
// cause. It returns then, once a state is restored, or when ctx ends.
func hintStateSync(ctx context.Context, logger log.Logger, height func() int64, aborted func() error, every time.Duration) {
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if height() > 0 {
			return
		}
		if err := aborted(); err != nil {
			logger.Error("state sync stopped: this node could not restore a snapshot (a failure of its own, not of its peers), and CometBFT does not try again; mend the cause and restart the node (its partial restore is wiped at start)",
				"err", err, "waited", time.Since(start).Round(time.Second))
			return
		}
		logger.Error("state sync has restored no snapshot yet: a peer this node reaches must make snapshots "+
			"(app.toml [store] snapshot_interval > 0), allow this node's id ([app] allowed_peers) and be among "+
			"[p2p] persistent_peers; [statesync] rpc_servers only verify what the peers offer",
			"waited", time.Since(start).Round(time.Second))
	}
}
