package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/crypto/tmhash"
	"github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/light"
	"github.com/cometbft/cometbft/light/provider"
	lighthttp "github.com/cometbft/cometbft/light/provider/http"
	lightstore "github.com/cometbft/cometbft/light/store"
	lightdb "github.com/cometbft/cometbft/light/store/db"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	coretypes "github.com/cometbft/cometbft/rpc/core/types"
	rpctypes "github.com/cometbft/cometbft/rpc/jsonrpc/types"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/internal/ctxtime"
	"github.com/emrchain/emrchain/internal/durable"
	"github.com/emrchain/emrchain/internal/filelock"
)

// Files under Config.Home.
const (
	trustFileName = "trust.json"
	lightDBName   = "light" // goleveldb directory light.db
	lightPrefix   = "emrchain-light"
)

// TrustRoot is what the trusted store was initialized from, as kept in
// HOME/trust.json.
type TrustRoot struct {
	ChainID string        `json:"chain_id"`
	Height  int64         `json:"height"`
	Hash    string        `json:"hash"` // hex, written in uppercase; either case is read
	Period  time.Duration `json:"period_ns"`
	Created time.Time     `json:"created"`
}

// ReadTrustRoot returns the trust root kept under home, or nil when there
// is none.
func ReadTrustRoot(home string) (*TrustRoot, error) {
	if home == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(filepath.Join(home, trustFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var tr TrustRoot
	if err := json.Unmarshal(raw, &tr); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(home, trustFileName), err)
	}
	if tr.ChainID == "" || tr.Height <= 0 || tr.Period <= 0 {
		return nil, fmt.Errorf("%s: incomplete trust root", filepath.Join(home, trustFileName))
	}
	// openLight writes the hash of a header it verified; with a light store
	// it never decodes it again, so a bad one would only be shown.
	if hash, err := hex.DecodeString(tr.Hash); err != nil || len(hash) != tmhash.Size {
		return nil, fmt.Errorf("%s: the trust root hash is not the hex of a %d-byte header hash", filepath.Join(home, trustFileName), tmhash.Size)
	}
	return &tr, nil
}

func writeTrustRoot(home string, tr *TrustRoot) error {
	raw, err := json.MarshalIndent(tr, "", "  ")
	if err != nil {
		return err
	}
	return durable.ReplaceFile(filepath.Join(home, trustFileName), append(raw, '\n'), 0o600)
}

// TrustRoot returns the root of trust the client verifies from (nil when
// not in verified mode): the Home's trust.json as New found or wrote it,
// or Config.Trust without a Home.
func (c *Client) TrustRoot() *TrustRoot {
	if c.root == nil { // set by openLight, in verified mode only
		return nil
	}
	tr := *c.root
	return &tr
}

// LatestTrusted returns the height and time of the newest header the
// light client has verified (with a Home, any run of it), waiting at most
// the client's timeout for the store.
func (c *Client) LatestTrusted() (int64, time.Time, error) {
	if !c.cfg.Verify {
		return 0, time.Time{}, errors.New("not in verified mode")
	}
	ctx, cancel := c.withTimeout(context.Background())
	defer cancel()
	var lb *cmttypes.LightBlock
	err := c.withLight(ctx, func(lc *light.Client) error {
		var err error
		lb, err = lc.TrustedLightBlock(0)
		return err
	})
	if err != nil {
		return 0, time.Time{}, err
	}
	return lb.Height, lb.Time, nil
}

// StoreLockPath is the lock file of the light store under home: beside
// the directory, not in it, so that it stays one file while emrcli light
// init --force swaps the directory.
func StoreLockPath(home string) string { return filepath.Clean(home) + ".lock" }

// LockStore takes the lock of the light store under home (the file
// HOME.lock beside it), waiting until ctx ends while another run holds it,
// and returns its release. A Client holds it for each light-client
// operation (see withLight); emrcli light init holds it to check that
// home has no root yet and to swap in a new store.
func LockStore(ctx context.Context, home string) (release func(), err error) {
	release, err = filelock.Lock(ctx, StoreLockPath(home))
	if err != nil {
		return nil, fmt.Errorf("the light store in %s stayed in use by another emrcli run of this home for the whole wait: %w", home, err)
	}
	return release, nil
}

// openStoreDB opens (or creates) the goleveldb store under home; the
// caller holds the store's lock (LockStore). goleveldb takes a lock of its
// own while open, which every run of this emrcli releases with the lock
// it holds: if goleveldb's is held all the same, a program that does not
// take HOME.lock keeps the store open, an emrcli older than this one (it
// kept the store open for its whole run). That is waited for until ctx
// ends, then said.
func openStoreDB(ctx context.Context, home string) (dbm.DB, error) {
	var db dbm.DB
	var err error
	if serr := ctxtime.Retry(ctx, func() bool {
		db, err = dbm.NewGoLevelDB(lightDBName, home)
		return !errors.Is(err, syscall.EWOULDBLOCK)
	}); serr != nil {
		return nil, fmt.Errorf("open the light store in %s: another program keeps it open (an emrcli older than this one does for its whole run: let it finish, or update it): %w (%w)",
			home, err, serr)
	}
	if err != nil {
		return nil, fmt.Errorf("open the light store in %s: %w", home, err)
	}
	return db, nil
}

// sameRoot reports whether a and b are one root of trust (chain, height,
// header hash; the trusting period is the running client's own).
func sameRoot(a, b *TrustRoot) bool {
	return a.ChainID == b.ChainID && a.Height == b.Height && strings.EqualFold(a.Hash, b.Hash)
}

// checkRoot refuses, with ErrTrustRootReplaced, a Home whose trust.json is
// no longer the root this client started from: emrcli light init --force
// replaced (or someone removed) it while this client ran. Its store holds
// headers verified from another root; verifying on from this client's
// root would mix the two. The caller holds the store's lock, under which
// init swaps trust.json and store together.
func (c *Client) checkRoot() error {
	home := c.cfg.Home
	tr, err := ReadTrustRoot(home)
	if err != nil {
		return fmt.Errorf("the root of trust in %s: %w", home, err)
	}
	if tr == nil {
		return fmt.Errorf("%w: %s holds no root of trust any more, this command started from height %d hash %s of %s: run emrcli light init, then the command again",
			ErrTrustRootReplaced, home, c.root.Height, c.root.Hash, c.root.ChainID)
	}
	if !sameRoot(tr, c.root) {
		return fmt.Errorf("%w: %s now trusts height %d hash %s of %s, this command started from height %d hash %s of %s (emrcli light init --force): run the command again",
			ErrTrustRootReplaced, home, tr.Height, tr.Hash, tr.ChainID, c.root.Height, c.root.Hash, c.root.ChainID)
	}
	return nil
}

// withLight runs fn with the client's light client, and then raises the
// client's minimum read height to the newest header in the light store
// (less one: see Client.MinHeight), which with a Home may be one another
// run verified.
//
// Without a Home the light client and its in-memory store are the
// Client's, for its life. With a Home, the store is held only for fn:
// under lightMu (this process) and the store's lock (other runs), it
// checks that the Home still holds this client's root of trust, opens
// the store, builds a light client over it (from the headers it holds; an
// empty store, one deleted while trust.json stayed, is made again from the
// root), runs fn, and closes it. So runs of one Home work at once, and
// one waits at most for another's operation; and each sees the headers
// the others verified.
func (c *Client) withLight(ctx context.Context, fn func(*light.Client) error) error {
	c.lightMu.Lock()
	defer c.lightMu.Unlock()
	if c.closed {
		return errClosed
	}
	if c.cfg.Home == "" {
		err := fn(c.light)
		c.raiseToStore(c.lightStore)
		return err
	}
	release, err := LockStore(ctx, c.cfg.Home)
	if err != nil {
		return err
	}
	defer release()
	if err := c.checkRoot(); err != nil {
		return err
	}
	db, err := openStoreDB(ctx, c.cfg.Home)
	if err != nil {
		return err
	}
	// Every header the light client saves is written with WriteSync: a
	// failed close loses nothing this operation verified.
	defer db.Close()
	lstore := lightdb.New(db, lightPrefix)
	lc, err := c.newLightClient(ctx, lstore)
	if err != nil {
		return err
	}
	err = fn(lc)
	c.raiseToStore(lstore)
	return err
}

// raiseToStore raises the minimum read height to the newest header in s,
// less one.
func (c *Client) raiseToStore(s lightstore.Store) {
	if last, err := s.LastLightBlockHeight(); err == nil && last > 0 {
		c.raiseMinHeight(last - 1)
	}
}

// dialWitnesses makes the RPC clients of the witnesses (but the node
// itself, its own witness).
func (c *Client) dialWitnesses() error {
	for _, w := range c.cfg.Witnesses {
		if w == c.cfg.Node {
			continue
		}
		rc, err := newRPC(w, c.cfg.Timeout)
		if err != nil {
			return fmt.Errorf("witness %q: %w", w, err)
		}
		c.witnesses = append(c.witnesses, rc)
		c.witnessNames = append(c.witnessNames, w)
	}
	return nil
}

// newLightClient builds a light client over lstore, with the node as
// primary and the witnesses: from the newest header lstore holds, or,
// when it holds none, from the client's root of trust (asking the node
// for the root's header and comparing it with the witnesses'). Its
// providers are new each time: the light client drops, from its own list,
// a witness that fails to answer, and a later operation asks it again.
func (c *Client) newLightClient(ctx context.Context, lstore lightstore.Store) (*light.Client, error) {
	primary := lighthttp.NewWithClient(c.chainID, c.rpc)
	var witnesses []provider.Provider
	next := 0
	for _, w := range c.cfg.Witnesses {
		if w == c.cfg.Node {
			witnesses = append(witnesses, primary)
			continue
		}
		witnesses = append(witnesses, lighthttp.NewWithClient(c.chainID, c.witnesses[next]))
		next++
	}
	if len(witnesses) == 0 {
		witnesses = []provider.Provider{primary}
	}
	opts := []light.Option{
		light.Logger(log.NewNopLogger()),
		// See lightMaxClockDrift and lightMaxBlockLag.
		light.MaxClockDrift(lightMaxClockDrift),
		light.MaxBlockLag(lightMaxBlockLag),
	}
	last, err := lstore.LastLightBlockHeight()
	if err != nil {
		return nil, fmt.Errorf("light store: %w", err)
	}
	trust := c.trust
	var lc *light.Client
	if last > 0 {
		lc, err = light.NewClientFromTrustedStore(c.chainID, trust.Period, primary, witnesses, lstore, opts...)
	} else {
		lc, err = light.NewClient(ctx, c.chainID, light.TrustOptions{Period: trust.Period, Height: trust.Height, Hash: trust.Hash},
			primary, witnesses, lstore, opts...)
	}
	if err != nil {
		return nil, verificationError("light client: %v", err)
	}
	return lc, nil
}

// openLight sets up verified mode (New): it settles the root of trust
// (the Home's trust.json, or Config.Trust, which must then match it),
// and verifies that root into the light store. With a Home, it does so
// under the store's lock, writes trust.json for a new root, and keeps
// nothing open: each later operation opens the store (withLight).
// Without one, the light client and its in-memory store stay for the
// Client's life.
func (c *Client) openLight(ctx context.Context) error {
	if err := c.dialWitnesses(); err != nil {
		return err
	}
	home := c.cfg.Home
	if home != "" {
		if c.cfg.Trust == nil {
			// Nothing to create: a Home without a root is refused before
			// anything is made in it (its lock file, beside it).
			if tr, err := ReadTrustRoot(home); err != nil {
				return err
			} else if tr == nil {
				return errNoTrustRoot
			}
		}
		if err := os.MkdirAll(home, 0o700); err != nil {
			return err
		}
		// Under the lock, two Clients given two new roots for one new
		// Home at once cannot both write theirs: the second reads the
		// first's trust.json, and is refused as any later one is.
		release, err := LockStore(ctx, home)
		if err != nil {
			return err
		}
		defer release()
	}
	stored, err := ReadTrustRoot(home)
	if err != nil {
		return err
	}
	switch {
	case stored != nil && c.chainID != "" && c.chainID != stored.ChainID:
		return fmt.Errorf("chain id %q differs from the trust root's %q (in %s)", c.chainID, stored.ChainID, home)
	case stored != nil:
		c.chainID = stored.ChainID
	case c.cfg.Trust == nil:
		return errNoTrustRoot
	case c.chainID == "":
		// The trusted hash pins the chain: a header of another chain id
		// cannot have it, so asking the node is safe here.
		st, err := c.rpc.Status(ctx)
		if err != nil {
			return fmt.Errorf("node %s: status: %w", c.cfg.Node, err)
		}
		c.chainID = st.NodeInfo.Network
	}
	trust := c.cfg.Trust
	if trust != nil && stored != nil {
		if trust.Height != stored.Height || !strings.EqualFold(hex.EncodeToString(trust.Hash), stored.Hash) {
			return fmt.Errorf("the light store in %s trusts height %d hash %s, not height %d hash %X: remove it (emrcli light init --force) to change the trust root",
				home, stored.Height, stored.Hash, trust.Height, trust.Hash)
		}
	}
	if trust == nil {
		hash, _ := hex.DecodeString(stored.Hash) // ReadTrustRoot checked it
		trust = &TrustOptions{Height: stored.Height, Hash: hash, Period: stored.Period}
	}
	c.trust = trust
	root := stored
	if root == nil {
		root = &TrustRoot{ChainID: c.chainID, Height: trust.Height, Hash: fmt.Sprintf("%X", trust.Hash), Period: trust.Period, Created: time.Now().UTC()}
	}

	var lstore lightstore.Store
	if home == "" {
		c.lightDB = newLightMemDB() // see copyIterDB
		lstore = lightdb.New(c.lightDB, lightPrefix)
		c.lightStore = lstore
	} else {
		db, err := openStoreDB(ctx, home)
		if err != nil {
			return err
		}
		defer db.Close()
		lstore = lightdb.New(db, lightPrefix)
	}
	last, err := lstore.LastLightBlockHeight()
	if err != nil {
		return fmt.Errorf("light store: %w", err)
	}
	if last > 0 && stored == nil {
		// Headers without the trust root file (deleted, or a crash between
		// the two writes): the store must hold the root it is now told to
		// trust, or trust.json would claim a root the store was never
		// verified from.
		lb, err := lstore.LightBlock(trust.Height)
		if err != nil || !bytes.Equal(lb.Hash(), trust.Hash) {
			return fmt.Errorf("the light store in %s holds headers but no trust root file, and not the trusted header %d %X: remove it (emrcli light init --force)",
				home, trust.Height, trust.Hash)
		}
	}
	lc, err := c.newLightClient(ctx, lstore)
	if err != nil {
		return err
	}
	if home == "" {
		c.light = lc
	}
	// The newest header this store ever verified (an earlier run's, with a
	// Home) is as far back as reads may go: see Client.MinHeight.
	c.raiseToStore(lstore)
	c.root = root
	if home != "" && stored == nil {
		return writeTrustRoot(home, root)
	}
	return nil
}

var errNoTrustRoot = errors.New("no trust root: verified mode needs a trusted header (emrcli light init) or --no-verify")

// verifiedBlock returns the light block at height, verified by the light
// client from the trust root (waiting for the node to produce it). A
// verified header at height proves that state height-1 is committed: the
// client's minimum read height is raised to it, so a transaction verified
// at height h (whose results header h+1 is verified) is in every later
// read.
func (c *Client) verifiedBlock(ctx context.Context, height int64) (*cmttypes.LightBlock, error) {
	lb, _, err := c.verifiedBlockAndWitnesses(ctx, height)
	return lb, err
}

// verifiedBlockAndWitnesses is verifiedBlock, which also returns the
// newest head each witness reported while it was waited for
// (waitWitnesses).
func (c *Client) verifiedBlockAndWitnesses(ctx context.Context, height int64) (*cmttypes.LightBlock, []witnessHead, error) {
	if err := c.waitHeight(ctx, height); err != nil {
		return nil, nil, err
	}
	heads := c.waitWitnesses(ctx, height)
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	now := c.now()
	var lb *cmttypes.LightBlock
	var err error // the light client's, said below, once the store is released
	if lerr := c.withLight(ctx, func(lc *light.Client) error {
		lb, err = lc.VerifyLightBlockAtHeight(ctx, height, now)
		return nil
	}); lerr != nil {
		return nil, nil, lerr
	}
	if err != nil {
		var expired light.ErrOldHeaderExpired
		if errors.As(err, &expired) {
			return nil, nil, trustExpired(height, expired.At)
		}
		if strings.Contains(err.Error(), "time from the future") {
			// CometBFT's verifier says only this (an ErrInvalidHeader
			// whose reason is text): the header is more than
			// lightMaxClockDrift ahead of this machine's clock, which is
			// far likelier a slow local clock than a lying chain.
			return nil, nil, verificationError("header %d: %v: is this computer's clock behind (it reads %s)? set it right, e.g. with NTP",
				height, err, now.UTC().Format(time.RFC3339))
		}
		if errors.Is(err, light.ErrNoWitnesses) {
			// CometBFT dropped every witness that failed to answer, and
			// says "please reset light client": say which and why.
			why := "each answers now: ask again"
			if problems := c.witnessProblems(ctx); len(problems) > 0 {
				why = strings.Join(problems, "; ")
			}
			return nil, nil, verificationError("header %d: no witness is left to cross-check it (%s): check them, or change them with emrcli light init --force --witness ...",
				height, why)
		}
		return nil, nil, verificationError("header %d: %v", height, err)
	}
	if lb.Height != height || lb.ChainID != c.chainID {
		return nil, nil, verificationError("light client returned header %d of %q for height %d", lb.Height, lb.ChainID, height)
	}
	c.raiseMinHeight(height - 1)
	return lb, heads, nil
}

// trustExpired is the error of a verification at height that needs a
// trusted header which expired at (the trusting period after its time).
func trustExpired(height int64, at time.Time) error {
	return fmt.Errorf("%w: header %d: %w at %s (trusting period): set a new trust root with emrcli light init --force",
		ErrVerification, height, ErrTrustExpired, at.Format(time.RFC3339))
}

// Light client timing (see openLight).
const (
	// lightMaxClockDrift is how far a header's time may be ahead of this
	// machine's clock. emrcli runs on patients' and clinicians' machines,
	// not on the validators' synchronised LAN, and verifies the newest
	// header, so it is CometBFT's default. Its cost, 2×drift+lag of sleep
	// in the detector when a witness lacks the header, is mostly avoided
	// by waitWitnesses.
	lightMaxClockDrift = 10 * time.Second
	// lightMaxBlockLag is how far a witness may lag the primary: the
	// validators make a block every second or so (CometBFT's default, 10
	// s, is for the open internet).
	lightMaxBlockLag = 2 * time.Second
	// witnessWait bounds how long verifiedBlock waits for witnesses to
	// reach a height before the light client cross-checks it.
	witnessWait = 3 * time.Second
)

// waitWitnesses gives the witnesses a moment to reach height: the light
// client's detector compares the primary's header with each witness's, and
// a witness that does not have it yet makes it sleep before asking again.
// Best effort: a witness that is down or slow is the light client's to
// judge. It returns the newest head each witness reported (height 0: no
// answer), in the order of c.witnesses.
//
// The witnesses are asked at once, each polled on its own within the one
// witnessWait: asked one after another, a witness that lags (or says it
// does) or stalls its status spent the wait, the witnesses after it were
// never asked, and witnessAhead had no head to check the node against
// (the session-46 review, TestWithheldHead/LaggingOrStallingFirstWitness).
// A failed request is tried again, twice at most: one lost request must
// not leave a witness out of the check. A refusal (a JSON-RPC error) is
// not asked again.
func (c *Client) waitWitnesses(ctx context.Context, height int64) []witnessHead {
	heads := make([]witnessHead, len(c.witnesses))
	if len(c.witnesses) == 0 {
		return heads
	}
	ctx, cancel := context.WithTimeout(ctx, witnessWait)
	defer cancel()
	failures := make([]int, len(c.witnesses))
	pollWitnesses(ctx, c.witnesses, 50*time.Millisecond, func(i int, st *coretypes.ResultStatus, err error) bool {
		if err != nil {
			failures[i]++
			return failures[i] <= 2
		}
		heads[i] = witnessHead{st.SyncInfo.LatestBlockHeight, st.SyncInfo.LatestBlockTime}
		return heads[i].height < height
	})
	return heads
}

// pollWitnesses asks every witness for its status at once, each again
// after every while answer (told the witness's index and the status, or
// the error) says so and ctx lasts. A refusal (a JSON-RPC error) is final:
// answer sees it, and the witness is not asked again. Each witness's
// answers come in order, from its own goroutine.
func pollWitnesses(ctx context.Context, witnesses []*rpchttp.HTTP, every time.Duration, answer func(i int, st *coretypes.ResultStatus, err error) (again bool)) {
	var wg sync.WaitGroup
	for i, w := range witnesses {
		wg.Go(func() {
			for {
				st, err := w.Status(ctx)
				var refused *rpctypes.RPCError
				if !answer(i, st, err) || errors.As(err, &refused) || ctxtime.Sleep(ctx, every) != nil {
					return
				}
			}
		})
	}
	wg.Wait()
}

// witnessLead is how many blocks a witness may report beyond the node's
// head before its header is fetched to see whether the node is behind
// (witnessAhead), unless the witness's head is also more than
// lightMaxBlockLag newer: a witness often is a block or two ahead of a
// node that is not, but on an idle chain two blocks can be seconds apart.
const witnessLead = 2

// witnessHead is the head a witness's status reported.
type witnessHead struct {
	height int64
	time   time.Time
}

// witnessHeader is a witness's header, verified from the node's head,
// that is newer than that head by more than lightMaxBlockLag.
type witnessHeader struct {
	witness string
	height  int64
	ahead   time.Duration // its time less that of the node's head
}

// witnessAhead checks the node's verified head lb against what the
// witnesses reported (heads, from waitWitnesses): it returns the newest
// witness header that the light client's rules verify from lb (the
// skipping verification, CometBFT's light.Verify with the default trust
// level) and whose time is more than lightMaxBlockLag after lb's; nil
// when there is none. Such a header shows the chain has blocks the node
// did not report: it lags, or it withholds them (to serve an audit trail
// without the newest reads, or consents from before a revocation).
//
// A witness is ahead when its status reported a head more than
// witnessLead blocks past lb, or past lb at all with a time more than
// lightMaxBlockLag after lb's: on an idle chain a transaction's block is
// followed at once by the next, then by nothing for the empty-block
// interval, so a node one block behind can be seconds behind (the
// session-46 re-review, TestWithheldHeadOnAnIdleChain). A witness that
// lies in its status gains one header fetch, whose header is verified.
//
// The witnesses ahead are asked at once, each within its own timeout, and
// all are waited for: a witness that stalls, or claims a head it has no
// header for, neither hides another's header nor stops the read (a claim
// that does not verify proves nothing), and one that answers first with
// an older header does not set a floor below another's. A header from the
// future by this machine's clock is judged at its own time: its
// signatures, not the clock, say the chain has it. The error is ctx's,
// when it ends first.
func (c *Client) witnessAhead(ctx context.Context, lb *cmttypes.LightBlock, heads []witnessHead) (*witnessHeader, error) {
	found := make(chan *witnessHeader, len(heads))
	asked := 0
	for i, h := range heads {
		if h.height <= lb.Height || h.height <= lb.Height+witnessLead && h.time.Sub(lb.Time) <= lightMaxBlockLag {
			continue
		}
		asked++
		go func() { found <- c.witnessHeaderAhead(ctx, i, h.height, lb) }()
	}
	var newest *witnessHeader
	for range asked {
		if w := <-found; w != nil && (newest == nil || w.height > newest.height) {
			newest = w
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checking the node's head against the witnesses': %w", err)
	}
	return newest, nil
}

// witnessHeaderAhead fetches witness i's header at height and returns it
// when it verifies from lb and is more than lightMaxBlockLag newer (nil
// otherwise), within the client's timeout.
func (c *Client) witnessHeaderAhead(ctx context.Context, i int, height int64, lb *cmttypes.LightBlock) *witnessHeader {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	wlb, err := lighthttp.NewWithClient(c.chainID, c.witnesses[i]).LightBlock(ctx, height)
	if err != nil || wlb.Time.Sub(lb.Time) <= lightMaxBlockLag {
		return nil
	}
	now := c.now()
	if wlb.Time.After(now) {
		now = wlb.Time
	}
	if err := light.Verify(lb.SignedHeader, lb.ValidatorSet, wlb.SignedHeader, wlb.ValidatorSet,
		c.trust.Period, now, lightMaxClockDrift, light.DefaultTrustLevel); err != nil {
		return nil
	}
	return &witnessHeader{witness: c.witnessNames[i], height: wlb.Height, ahead: wlb.Time.Sub(lb.Time)}
}

// witnessProblems asks each witness (but the node itself) for its status,
// with a wait of its own (the verification's may be spent), and says which
// did not answer, and why.
func (c *Client) witnessProblems(ctx context.Context) []string {
	if len(c.witnesses) == 0 {
		return []string{"the node, its own witness, did not answer"}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), witnessProblemWait)
	defer cancel()
	return witnessErrors(ctx, c.witnesses, c.witnessNames, false)
}

// rpcInvalidRequest is JSON-RPC's code for a request the server refuses
// as such (-32600), as emrchaind's Host check answers.
const rpcInvalidRequest = -32600

const (
	// witnessCheckWait bounds how long CheckWitnesses waits for a witness
	// that cannot be reached yet (a node still starting).
	witnessCheckWait = 10 * time.Second
	// witnessProblemWait bounds witnessProblems' status requests.
	witnessProblemWait = 5 * time.Second
)

// CheckWitnesses reports each of witnesses (RPC addresses, as Config
// takes them; node's own is skipped, as the light client skips it) that
// does not answer. The light client compares a new root of trust only
// with the witnesses that answer it, drops the others without a word, and
// fails with "no witnesses connected" once none is left: emrcli light init
// calls this before it builds the light client, so that the root is
// compared with every witness, and a mistyped one, or one whose node
// refuses this client (its Host check, for one), is said at once. A witness
// that cannot be reached yet is asked again for up to witnessCheckWait; a
// refusal is final. Each is named with its own last error.
func CheckWitnesses(ctx context.Context, node string, witnesses []string, timeout time.Duration) error {
	var clients []*rpchttp.HTTP
	var names []string
	for _, w := range witnesses {
		if w == node {
			continue
		}
		rc, err := newRPC(w, timeout)
		if err != nil {
			return fmt.Errorf("witness %q: %w", w, err)
		}
		clients, names = append(clients, rc), append(names, w)
	}
	ctx, cancel := context.WithTimeout(ctx, witnessCheckWait)
	defer cancel()
	if problems := witnessErrors(ctx, clients, names, true); len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// witnessErrors asks every witness for its status at once and returns, in
// order, what each that did not answer said ("witness NAME: error"). With
// retry, one that cannot be reached is asked again until ctx ends, and is
// named with the last error it gave before that; a refusal (a JSON-RPC
// error) is final.
func witnessErrors(ctx context.Context, witnesses []*rpchttp.HTTP, names []string, retry bool) []string {
	errs := make([]error, len(witnesses))
	pollWitnesses(ctx, witnesses, 200*time.Millisecond, func(i int, _ *coretypes.ResultStatus, err error) bool {
		if err == nil || errs[i] == nil || ctx.Err() == nil {
			errs[i] = err // nil once it answers; else the last error before the wait ran out
		}
		return err != nil && retry && ctx.Err() == nil
	})
	var out []string
	for i, err := range errs {
		if err != nil {
			out = append(out, fmt.Sprintf("witness %s: %v", names[i], err))
		}
	}
	return out
}

// TrustFromGenesis derives a trust root from a genesis document the
// operator handed over: a header of node's chain whose chain id is the
// genesis', whose validator sets (this block's and the next's) are the
// genesis validator set, and that +2/3 of that set signed. It returns the
// chain id and the header to trust.
//
// The header is the genesis' first block (or the node's earliest, on a
// node restored from a snapshot) while that is younger than half the
// trusting period; on an older chain, the oldest block younger than that
// (a search over header times). That header must still be signed by the
// genesis validators: the genesis vouches for nothing else. Once the
// consortium has changed its validators (executed proposals), a chain
// older than half the trusting period needs a root from a trusted source
// (TrustOptions from a height and hash), as the error then says. A root
// too old would be expired before the first read; one too new would leave
// everything below it to the light client's backwards verification, one
// header per request.
func TrustFromGenesis(ctx context.Context, node string, genesisJSON []byte, period time.Duration) (string, *TrustOptions, error) {
	gen, err := cmttypes.GenesisDocFromJSON(genesisJSON)
	if err != nil {
		return "", nil, fmt.Errorf("genesis: %w", err)
	}
	if len(gen.Validators) == 0 {
		return "", nil, errors.New("genesis: no validators (a chain whose validators come from the app cannot be trusted from genesis; use --height/--hash)")
	}
	vals := make([]*cmttypes.Validator, len(gen.Validators))
	for i, v := range gen.Validators {
		vals[i] = cmttypes.NewValidator(v.PubKey, v.Power)
	}
	valSet := cmttypes.NewValidatorSet(vals)
	if node == "" {
		node = DefaultNode
	}
	if period == 0 {
		period = DefaultTrustPeriod
	}
	// Each request is bounded (trustRequestTimeout): the caller's context
	// may have no deadline (emrcli's ends only on a signal), and a node
	// that never answers must not hold the caller for ever.
	rpc, err := newRPC(node, trustRequestTimeout)
	if err != nil {
		return "", nil, fmt.Errorf("node %q: %w", node, err)
	}
	commitAt := func(height *int64) (*cmttypes.SignedHeader, error) {
		res, err := rpc.Commit(ctx, height)
		if err != nil {
			return nil, err
		}
		if res.SignedHeader.IsEmpty() {
			return nil, errors.New("empty signed header")
		}
		return &res.SignedHeader, nil
	}
	var latest *cmttypes.SignedHeader
	for attempt := 0; ; attempt++ {
		// nil: the newest block the node has a commit for. A new chain
		// may not have made its first block yet.
		latest, err = commitAt(nil)
		if err == nil && latest.Height >= gen.InitialHeight {
			break
		}
		if refused := (*rpctypes.RPCError)(nil); errors.As(err, &refused) && refused.Code == rpcInvalidRequest {
			// The node refuses the request itself (its Host check, for
			// one): asking again changes nothing.
			return "", nil, fmt.Errorf("node %s: %w", node, err)
		}
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			// It took the request and did not answer it: asking again
			// would wait as long again.
			return "", nil, fmt.Errorf("node %s did not answer within %s: %w", node, trustRequestTimeout, err)
		}
		if attempt >= 50 {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return "", nil, fmt.Errorf("node %s: %w", node, err)
			}
			return "", nil, fmt.Errorf("node %s: no commit for a block at or above the genesis' initial height %d: %v", node, gen.InitialHeight, err)
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	now := time.Now()
	if !now.Before(latest.Time.Add(period)) {
		return "", nil, fmt.Errorf("the node's newest header, %d, is from %s, older than the trusting period (%s): the node is behind or the chain has stopped; ask another node (--node), or give a longer --trust-period",
			latest.Height, latest.Time.UTC().Format(time.RFC3339), period)
	}
	// The oldest height whose header is at or after since (BFT time only
	// grows with height), or the newest: the first block, on a chain
	// younger than since. A node restored from a snapshot has no blocks
	// below its earliest.
	first := gen.InitialHeight
	if st, err := rpc.Status(ctx); err == nil && st.SyncInfo.EarliestBlockHeight > first && st.SyncInfo.EarliestBlockHeight <= latest.Height {
		first = st.SyncInfo.EarliestBlockHeight
	}
	since := now.Add(-period / 2)
	lo, hi := first, latest.Height
	root := latest
	for lo < hi {
		mid := lo
		if lo > first {
			mid = lo + (hi-lo)/2
		}
		sh, err := commitAt(&mid)
		if err != nil {
			return "", nil, fmt.Errorf("node %s: header %d: %w", node, mid, err)
		}
		if sh.Height != mid {
			return "", nil, verificationError("the node answered header %d for height %d", sh.Height, mid)
		}
		if sh.Time.Before(since) {
			lo = mid + 1
		} else {
			hi, root = mid, sh
		}
	}
	height := root.Height
	if root.ChainID != gen.ChainID {
		return "", nil, verificationError("the node's header %d is of chain %q, the genesis is of %q", height, root.ChainID, gen.ChainID)
	}
	if err := root.ValidateBasic(gen.ChainID); err != nil {
		return "", nil, verificationError("header %d: %v", height, err)
	}
	if !bytes.Equal(root.ValidatorsHash, valSet.Hash()) || !bytes.Equal(root.NextValidatorsHash, valSet.Hash()) {
		return "", nil, verificationError("header %d (the oldest this node has within half the trusting period) is not signed by the genesis validators (validators hash %X, next %X; the genesis set hashes to %X): either the consortium has changed its validators since, and the genesis cannot vouch for this chain any more, or the node lies. Ask your consortium for a trusted height and header hash and use those instead (emrcli light init --height H --hash HASH)",
			height, root.ValidatorsHash, root.NextValidatorsHash, valSet.Hash())
	}
	if err := valSet.VerifyCommitLight(gen.ChainID, root.Commit.BlockID, height, root.Commit); err != nil {
		return "", nil, verificationError("header %d is not signed by +2/3 of the genesis validators: %v", height, err)
	}
	// root is latest (checked above to be within the period) or a header
	// from since on: within the period either way.
	return gen.ChainID, &TrustOptions{Height: height, Hash: root.Hash(), Period: period}, nil
}

// VerifyLatest verifies the node's latest header with the light client
// and returns its height, time and app hash. It holds the header to what
// a verified read holds it to (readHeight): a node behind a header this
// client has seen is ErrStale, a header past the trusting period
// ErrTrustExpired, and one a witness shows withheld is waited for.
func (c *Client) VerifyLatest(ctx context.Context) (*cmttypes.Header, error) {
	if !c.cfg.Verify {
		return nil, errors.New("not in verified mode")
	}
	_, lb, err := c.readHeight(ctx)
	if err != nil {
		return nil, err
	}
	return lb.Header, nil
}
