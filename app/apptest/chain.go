package apptest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// Organizations of the test consortium.
const (
	HospitalA = "hospital-a"
	HospitalB = "hospital-b"
	Research  = "research-institute"
)

// GenesisTime is the time of the test chain's genesis.
var GenesisTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// ChainID of the test chain.
const ChainID = "emrchain-test"

// Consortium is the test genesis: two hospitals and a research institute,
// one registrar each (actors "registrar-<org>").
func Consortium() *emrv1.GenesisState {
	g := app.DefaultGenesis()
	g.Organizations = []*emrv1.Organization{
		{Id: HospitalA, Name: "Hospital A", Kind: emrv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL},
		{Id: HospitalB, Name: "Hospital B", Kind: emrv1.OrganizationKind_ORGANIZATION_KIND_HOSPITAL},
		{Id: Research, Name: "Research Institute", Kind: emrv1.OrganizationKind_ORGANIZATION_KIND_RESEARCH},
	}
	for _, org := range []string{HospitalA, HospitalB, Research} {
		g.Members = append(g.Members, Registrar(org).GenesisMember(emrv1.Role_ROLE_REGISTRAR, org))
	}
	return g
}

// Registrar is the genesis registrar actor of org.
func Registrar(org string) *Actor { return NewActor("registrar-" + org) }

// GenesisValidators are the test chain's validators: four of power 10,
// whose consensus keys are those of actors "validator-0" to "validator-3".
func GenesisValidators() []*emrv1.Validator {
	var out []*emrv1.Validator
	for i := range 4 {
		out = append(out, &emrv1.Validator{PubKey: Validator(i).SignPub(), Power: 10})
	}
	return out
}

// Validator is the actor whose signing key is genesis validator i's
// consensus key (GenesisValidators).
func Validator(i int) *Actor { return NewActor(fmt.Sprintf("validator-%d", i)) }

// Options configure a Chain.
type Options struct {
	// Dir holds the store; empty means an in-memory store.
	Dir string
	// Store options; zero means store.DefaultOptions() (memdb without Dir).
	Store *store.Options
	// Genesis; nil means Consortium().
	Genesis *emrv1.GenesisState
	// Validators; nil means GenesisValidators().
	Validators []*emrv1.Validator
	// Consensus are the genesis consensus_params' block and evidence
	// limits; nil means CometBFT's defaults.
	Consensus *emrv1.ConsensusLimits
}

// Chain is an emrchain state machine driven block by block.
type Chain struct {
	TB    testing.TB
	App   *app.App
	Store *store.Store
	opts  Options
	// Now is the time the next block carries; each block advances it by
	// BlockInterval.
	Now           time.Time
	BlockInterval time.Duration
	// ValidatorUpdates are the last block's changes to the validator set,
	// as FinalizeBlock hands them to CometBFT.
	ValidatorUpdates []*emrv1.Validator
	// ConsensusUpdate is the last block's change of CometBFT's block and
	// evidence limits, as FinalizeBlock hands it to CometBFT (nil: none).
	ConsensusUpdate *emrv1.ConsensusLimits
	// Signers are the validator addresses whose signatures the next
	// block's last commit holds (BlockInfo.Signers); nil: none.
	Signers [][]byte
}

// New starts a chain from genesis and commits an empty block 1.
func New(tb testing.TB, opts Options) *Chain {
	tb.Helper()
	c := open(tb, opts)
	g := opts.Genesis
	if g == nil {
		g = Consortium()
	}
	appState, err := app.MarshalGenesis(g)
	if err != nil {
		tb.Fatalf("genesis: %v", err)
	}
	validators := opts.Validators
	if validators == nil {
		validators = GenesisValidators()
	}
	if _, err := c.App.InitChain(ChainID, appState, GenesisTime, validators, opts.Consensus); err != nil {
		tb.Fatalf("InitChain: %v", err)
	}
	c.Now = GenesisTime.Add(c.BlockInterval)
	c.Block() // block 1 commits the genesis state
	return c
}

// Reopen closes the chain's store and opens it again from disk, as a node
// restarting would (the chain must have a Dir).
func (c *Chain) Reopen() *Chain {
	c.TB.Helper()
	if c.opts.Dir == "" {
		c.TB.Fatal("Reopen needs a chain on disk (Options.Dir)")
	}
	now := c.Now
	if err := c.Store.Close(); err != nil {
		c.TB.Fatalf("close store: %v", err)
	}
	n := open(c.TB, c.opts)
	n.Now = now
	return n
}

// MemApp is an app with no genesis over an in-memory store, closed with
// the test: for a test that calls InitChain itself.
func MemApp(tb testing.TB) *app.App {
	tb.Helper()
	return open(tb, Options{}).App
}

func open(tb testing.TB, opts Options) *Chain {
	tb.Helper()
	so := store.DefaultOptions()
	if opts.Store != nil {
		so = *opts.Store
	} else if opts.Dir == "" {
		so.Backend = "memdb"
	}
	st, err := store.Open(opts.Dir, so)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	a, err := app.New(st, app.DefaultOptions())
	if err != nil {
		tb.Fatalf("app.New: %v", err)
	}
	c := &Chain{TB: tb, App: a, Store: st, opts: opts, BlockInterval: time.Second}
	tb.Cleanup(func() { _ = st.Close() })
	return c
}

// Height is the last committed height.
func (c *Chain) Height() int64 {
	h, _ := c.App.LastCommit()
	return h
}

// AppHash is the last committed app hash.
func (c *Chain) AppHash() []byte {
	_, hash := c.App.LastCommit()
	return hash
}

// Block finalizes and commits a block of txs at c.Now, as a decided block
// (invalid txs get their codes), and returns the results.
func (c *Chain) Block(txs ...[]byte) []app.Result {
	c.TB.Helper()
	b := app.BlockInfo{Height: c.Height() + 1, Time: c.Now, Signers: c.Signers}
	results, hash, err := c.App.FinalizeBlock(b, txs)
	if err != nil {
		c.TB.Fatalf("FinalizeBlock %d: %v", b.Height, err)
	}
	c.ValidatorUpdates, c.ConsensusUpdate = c.App.ValidatorUpdates(), c.App.ConsensusUpdate()
	if _, err := c.App.Commit(); err != nil {
		c.TB.Fatalf("Commit %d: %v", b.Height, err)
	}
	if !bytes.Equal(hash, c.AppHash()) {
		c.TB.Fatalf("block %d: FinalizeBlock hash %X, committed %X", b.Height, hash, c.AppHash())
	}
	c.Now = c.Now.Add(c.BlockInterval)
	return results
}

// Propose runs txs through the proposer's path: PrepareProposal selects,
// ProcessProposal accepts, FinalizeBlock and Commit. It returns the txs
// that made it into the block and their results.
func (c *Chain) Propose(txs ...[]byte) ([][]byte, []app.Result) {
	c.TB.Helper()
	b := app.BlockInfo{Height: c.Height() + 1, Time: c.Now}
	selected := c.App.PrepareProposal(b, txs, 1<<30)
	if err := c.App.ProcessProposal(b, selected); err != nil {
		c.TB.Fatalf("ProcessProposal refused our own proposal: %v", err)
	}
	return selected, c.Block(selected...)
}

// Seq is the next sequence of addr in the committed state.
func (c *Chain) Seq(addr []byte) uint64 {
	c.TB.Helper()
	var resp emrv1.QueryAccountResponse
	c.Query("Account", &emrv1.QueryAccountRequest{Address: hexOf(addr)}, &resp)
	return resp.Account.NextSequence
}

// Tx signs msg by a with its next committed sequence.
func (c *Chain) Tx(a *Actor, msg *emrv1.Msg) []byte {
	return a.Tx(ChainID, c.Seq(a.Address), msg)
}

// Exec runs msg signed by a in a block of its own.
func (c *Chain) Exec(a *Actor, msg *emrv1.Msg) app.Result {
	c.TB.Helper()
	return c.Block(c.Tx(a, msg))[0]
}

// Must runs msg signed by a in a block of its own and fails the test
// unless it succeeds.
func (c *Chain) Must(a *Actor, msg *emrv1.Msg) app.Result {
	c.TB.Helper()
	res := c.Exec(a, msg)
	if !res.OK() {
		c.TB.Fatalf("%s by %s: code %d: %s", app.MsgName(msg), a.Name, res.Code, res.Log)
	}
	return res
}

// Simulate runs msg signed by a at time t without committing anything.
func (c *Chain) Simulate(a *Actor, t time.Time, msg *emrv1.Msg) app.Result {
	c.TB.Helper()
	res, err := c.App.Simulate(t, c.Tx(a, msg))
	if err != nil {
		c.TB.Fatalf("Simulate: %v", err)
	}
	return res
}

// Query calls a Query service method at the last height.
func (c *Chain) Query(method string, req, resp proto.Message) {
	c.TB.Helper()
	if err := c.TryQuery(method, req, resp); err != nil {
		c.TB.Fatalf("query %s: %v", method, err)
	}
}

// QueryProven is Query with the proofs of the keys the answer was built
// from (in resp's proofs).
func (c *Chain) QueryProven(method string, req, resp proto.Message) {
	c.TB.Helper()
	if err := c.query(method, req, resp, true); err != nil {
		c.TB.Fatalf("query %s: %v", method, err)
	}
}

// TryQuery is Query returning the error.
func (c *Chain) TryQuery(method string, req, resp proto.Message) error {
	return c.query(method, req, resp, false)
}

func (c *Chain) query(method string, req, resp proto.Message, prove bool) error {
	data, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	out, _, err := c.App.Query(app.QueryPathPrefix+method, data, 0, prove)
	if err != nil {
		return err
	}
	return proto.Unmarshal(out, resp)
}

// ValidatorChanges is consensus key pubKey's change count, which its
// proof of possession must be for: the executed proposals that changed
// its power, counted from the Proposals query, apart from the count the
// chain keeps (the ValidatorKey query), which tests check against it.
func (c *Chain) ValidatorChanges(pubKey []byte) uint64 {
	c.TB.Helper()
	var n uint64
	for after := uint64(0); ; {
		var page emrv1.QueryProposalsResponse
		c.Query("Proposals", &emrv1.QueryProposalsRequest{After: after}, &page)
		for _, p := range page.Proposals {
			if set := p.Change.GetSetValidatorPower(); set != nil && p.Status == emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED && bytes.Equal(set.PubKey, pubKey) {
				n++
			}
		}
		if page.Next == 0 {
			return n
		}
		after = page.Next
	}
}
