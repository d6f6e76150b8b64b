package abci_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	abcicli "github.com/cometbft/cometbft/abci/client"
	"github.com/cometbft/cometbft/abci/types"
	"github.com/cometbft/cometbft/proxy"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// TestReadsBesideBlocksStress drives blocks with transactions through the
// consensus and mempool connections of a node's per-connection local
// clients (NewConnSyncLocalClientCreator, as start.go builds them), on a
// store that prunes every few versions and has a tiny latest-value cache,
// while other goroutines run Info and Query (proven and not, at the latest
// and at old heights) through the query connection and straight on the
// adapter. Every answer is checked against a model of the chain: a value
// read at height h is the value at h, every proof verifies against the
// app hash of h, a failure is only ever a height pruned meanwhile. At the
// end the adapter is closed while the readers are still running. Run it
// with -race.
func TestReadsBesideBlocksStress(t *testing.T) {
	for _, p := range []struct{ keep, interval uint64 }{{2, 3}, {6, 2}} {
		t.Run(fmt.Sprintf("keep%d-every%d", p.keep, p.interval), func(t *testing.T) {
			readsBesideBlocks(t, p.keep, p.interval)
		})
	}
}

func readsBesideBlocks(t *testing.T, keepRecent, pruneInterval uint64) {
	const (
		blocks  = 40
		readers = 4 // two through the query connection, two on the adapter
	)
	opts := store.DefaultOptions()
	opts.Backend = store.BackendGoLevelDB
	opts.KeepRecent, opts.PruneInterval = keepRecent, pruneInterval
	opts.ValueCacheSize = 8
	st, err := store.Open(filepath.Join(t.TempDir(), "app.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := app.New(st, app.Options{SigCacheSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	adapter := abci.New(a, abci.Options{Version: "test"})
	defer adapter.Close()

	creator := proxy.NewConnSyncLocalClientCreator(adapter)
	consensus, _ := creator.NewABCIConsensusClient()
	mempool, _ := creator.NewABCIMempoolClient()
	query, _ := creator.NewABCIQueryClient()
	ctx := context.Background()

	registrar := apptest.Registrar(apptest.HospitalA)
	patient := apptest.NewActor("stress-patient")
	pid := apptest.PatientID(patient.Name)
	member := func(h int64) *apptest.Actor { return apptest.NewActor(fmt.Sprintf("stress-member-%d", h)) }

	// The model: block h >= 2 registers member(h) (the registrar's
	// sequence h-2), block 2 enrolls the patient and every block h >= 3
	// adds its record number h-2. So at height h >= 2 the registrar's
	// next sequence is h-1, the patient has h-2 records, and member(k)
	// exists iff 2 <= k <= h.
	var hashes sync.Map // height -> app hash, stored before the Commit
	txsOf := func(h int64) [][]byte {
		reg := registrar.Tx(testChainID, uint64(h-2), apptest.RegisterMember(member(h), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
		if h == 2 {
			return [][]byte{reg, patient.Tx(testChainID, 0, apptest.Enroll(patient))}
		}
		return [][]byte{reg, patient.Tx(testChainID, uint64(h-2), apptest.AddRecord(pid, "imaging", fmt.Sprintf("r-%d", h)))}
	}
	runBlock := func(h int64) error {
		bt := genesisTime.Add(time.Duration(h) * time.Second)
		var txs [][]byte
		if h >= 2 {
			txs = txsOf(h)
		}
		for i, tx := range txs {
			res, err := mempool.CheckTx(ctx, &types.CheckTxRequest{Tx: tx, Type: types.CHECK_TX_TYPE_CHECK})
			if err != nil || res.Code != 0 {
				return fmt.Errorf("CheckTx %d of block %d = %v, %v", i, h, res, err)
			}
		}
		prep, err := consensus.PrepareProposal(ctx, &types.PrepareProposalRequest{Height: h, Time: bt, Txs: txs, MaxTxBytes: 1 << 20})
		if err != nil || len(prep.Txs) != len(txs) {
			return fmt.Errorf("PrepareProposal %d = %v, %v", h, prep, err)
		}
		proc, err := consensus.ProcessProposal(ctx, &types.ProcessProposalRequest{Height: h, Time: bt, Txs: prep.Txs})
		if err != nil || proc.Status != types.PROCESS_PROPOSAL_STATUS_ACCEPT {
			return fmt.Errorf("ProcessProposal %d = %v, %v", h, proc, err)
		}
		fin, err := consensus.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: h, Time: bt, Txs: prep.Txs})
		if err != nil {
			return fmt.Errorf("FinalizeBlock %d: %v", h, err)
		}
		for i, r := range fin.TxResults {
			if r.Code != 0 {
				return fmt.Errorf("block %d tx %d: code %d %s", h, i, r.Code, r.Log)
			}
		}
		hashes.Store(h, fin.AppHash)
		if _, err := consensus.Commit(ctx, &types.CommitRequest{}); err != nil {
			return fmt.Errorf("Commit %d: %v", h, err)
		}
		return nil
	}

	if _, err := consensus.InitChain(ctx, &types.InitChainRequest{
		Time: genesisTime, ChainId: testChainID, InitialHeight: 1, AppStateBytes: appStateOf(t, apptest.Consortium()),
		Validators: genesisValidators(),
	}); err != nil {
		t.Fatal(err)
	}
	for h := int64(1); h <= 2; h++ {
		if err := runBlock(h); err != nil {
			t.Fatal(err)
		}
	}
	// The raw key of the registrar's account, from a proven Account query.
	accountReq, _ := proto.Marshal(&emrv1.QueryAccountRequest{Address: hex.EncodeToString(registrar.Address)})
	var accountKey []byte
	{
		q, err := adapter.Query(ctx, &types.QueryRequest{Path: abci.QueryServicePrefix + "Account", Data: accountReq, Prove: true})
		if err != nil || q.Code != 0 {
			t.Fatalf("Account = %v, %v", q, err)
		}
		var resp emrv1.QueryAccountResponse
		if err := proto.Unmarshal(q.Value, &resp); err != nil || len(resp.Proofs) != 1 {
			t.Fatalf("Account proofs: %v (%v)", resp.Proofs, err)
		}
		accountKey = resp.Proofs[0].Key
	}

	var (
		done, closing atomic.Bool
		stats         struct{ ok, pruned, latestPruned, closed atomic.Int64 }
		errMu         sync.Mutex
		errs          []string
	)
	fail := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	hashAt := func(h int64) []byte {
		v, ok := hashes.Load(h)
		if !ok {
			return nil
		}
		return v.([]byte)
	}
	verify := func(what string, h int64, proofs []*emrv1.StoreProof) bool {
		root := hashAt(h)
		if len(proofs) == 0 || root == nil {
			fail("%s at %d: %d proofs, root %X", what, h, len(proofs), root)
			return false
		}
		for _, p := range proofs {
			ops := app.FromProofOps(p.Ops)
			var err error
			if len(p.Value) == 0 {
				err = store.VerifyAbsence(root, p.Key, ops)
			} else {
				err = store.VerifyMembership(root, p.Key, p.Value, ops)
			}
			if err != nil {
				fail("%s at %d: proof of %x: %v", what, h, p.Key, err)
				return false
			}
		}
		return true
	}

	type querier func(context.Context, *types.QueryRequest) (*types.QueryResponse, error)
	type informer func(context.Context, *types.InfoRequest) (*types.InfoResponse, error)
	read := func(id int, q querier, info informer) {
		rng := rand.New(rand.NewPCG(uint64(id), 42))
		var lastInfo int64
		for i := 0; i < 100_000 && !done.Load(); i++ {
			if rng.IntN(5) == 0 {
				res, err := info(ctx, &types.InfoRequest{})
				if err != nil {
					if closing.Load() {
						stats.closed.Add(1)
						return
					}
					fail("Info: %v", err)
					return
				}
				if res.LastBlockHeight < lastInfo {
					fail("Info went back from %d to %d", lastInfo, res.LastBlockHeight)
				}
				lastInfo = res.LastBlockHeight
				if want := hashAt(res.LastBlockHeight); string(want) != string(res.LastBlockAppHash) {
					fail("Info at %d: hash %X, want %X", res.LastBlockHeight, res.LastBlockAppHash, want)
				}
				continue
			}
			last, _ := a.LastCommit()
			height := int64(0)
			if rng.IntN(3) != 0 {
				height = max(2, last-int64(rng.IntN(6)))
			}
			prove := rng.IntN(2) == 0
			kind := rng.IntN(4)
			var k int64 // the member looked up
			req := &types.QueryRequest{Height: height, Prove: prove}
			switch kind {
			case 0:
				req.Path, req.Data = abci.QueryServicePrefix+"Account", accountReq
			case 1:
				req.Path = abci.QueryServicePrefix + "Records"
				req.Data, _ = proto.Marshal(&emrv1.QueryRecordsRequest{PatientId: hex.EncodeToString(pid), Page: &emrv1.PageRequest{Limit: 100}})
			case 2:
				k = 2 + int64(rng.IntN(blocks-1))
				req.Path = abci.QueryServicePrefix + "Member"
				req.Data, _ = proto.Marshal(&emrv1.QueryMemberRequest{Address: hex.EncodeToString(member(k).Address)})
			case 3:
				req.Path, req.Data = abci.QueryStoreKeyPath, accountKey
			}
			res, err := q(ctx, req)
			if err != nil {
				fail("Query %s: %v", req.Path, err)
				return
			}
			if res.Code != 0 {
				switch {
				case res.Code == abci.CodeClosed && res.Codespace == abci.Codespace && closing.Load():
					stats.closed.Add(1)
					return
				case kind == 2 && res.Codespace == app.Codespace && res.Code == app.CodeOf(app.ErrNotFound):
					// member(k) absent: checked against the height below
					// when the height is known.
					if height != 0 && k <= height {
						fail("Member %d at %d: not found: %s", k, height, res.Log)
					}
					stats.ok.Add(1)
				case res.Codespace != app.Codespace || res.Code != app.CodeOf(app.ErrHeightNotKept):
					fail("Query %s at %d (prove %v): code %d/%s: %s", req.Path, height, prove, res.Code, res.Codespace, res.Log)
				case height != 0 && height < st.FirstVersion():
					stats.pruned.Add(1) // pruned since it was chosen
				case height == 0:
					// The latest version when the read began, pruned
					// before it ended: KeepRecent blocks committed
					// meanwhile (a consequence of reading beside blocks).
					stats.latestPruned.Add(1)
				default:
					fail("Query %s at %d (prove %v): code %d/%s: %s", req.Path, height, prove, res.Code, res.Codespace, res.Log)
				}
				continue
			}
			h := res.Height
			if h < 2 || (height != 0 && h != height) {
				fail("Query %s at %d answered at %d", req.Path, height, h)
				continue
			}
			switch kind {
			case 0, 3:
				var resp emrv1.QueryAccountResponse
				var acct emrv1.Account
				if kind == 0 {
					if err := proto.Unmarshal(res.Value, &resp); err != nil || resp.Account == nil {
						fail("Account at %d: %v", h, err)
						continue
					}
					acct.NextSequence = resp.Account.NextSequence
					if prove && !verify("Account", h, resp.Proofs) {
						continue
					}
				} else {
					if err := proto.Unmarshal(res.Value, &acct); err != nil {
						fail("raw account at %d: %v", h, err)
						continue
					}
					if prove {
						if err := store.VerifyMembership(hashAt(h), accountKey, res.Value, res.ProofOps); err != nil {
							fail("raw account at %d: %v", h, err)
							continue
						}
					} else if res.ProofOps != nil {
						fail("raw account at %d: a proof without prove", h)
					}
				}
				if acct.NextSequence != uint64(h-1) {
					fail("%s: registrar's next sequence at %d is %d, want %d", req.Path, h, acct.NextSequence, h-1)
					continue
				}
			case 1:
				var resp emrv1.QueryRecordsResponse
				if err := proto.Unmarshal(res.Value, &resp); err != nil {
					fail("Records at %d: %v", h, err)
					continue
				}
				if len(resp.Records) != int(h-2) || resp.Page.GetTotal() != uint64(h-2) {
					fail("Records at %d: %d of %d, want %d", h, len(resp.Records), resp.Page.GetTotal(), h-2)
					continue
				}
				if prove && !verify("Records", h, resp.Proofs) {
					continue
				}
			case 2:
				var resp emrv1.QueryMemberResponse
				if err := proto.Unmarshal(res.Value, &resp); err != nil {
					fail("Member at %d: %v", h, err)
					continue
				}
				if k > h || resp.Member == nil {
					fail("Member %d at %d: found %v, registered at %d", k, h, resp.Member, k)
					continue
				}
				if prove && !verify("Member", h, resp.Proofs) {
					continue
				}
			}
			stats.ok.Add(1)
		}
	}

	var wg sync.WaitGroup
	for id := range readers {
		q, info := querier(query.Query), informer(query.Info)
		if id%2 == 1 {
			q, info = adapter.Query, adapter.Info
		}
		wg.Add(1)
		go func() { defer wg.Done(); read(id, q, info) }()
	}
	// A client flooding the mempool connection with txs the check state
	// refuses, beside the blocks.
	wg.Add(1)
	go func() {
		defer wg.Done()
		stranger := apptest.NewActor("stress-stranger")
		for i := 0; i < 100_000 && !done.Load(); i++ {
			tx := badTx
			if i%2 == 1 {
				tx = stranger.Tx(testChainID, uint64(i), apptest.RegisterMember(member(1000+int64(i)), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
			}
			res, err := mempool.CheckTx(ctx, &types.CheckTxRequest{Tx: tx, Type: types.CHECK_TX_TYPE_CHECK})
			if err != nil {
				if !closing.Load() {
					fail("CheckTx: %v", err)
				}
				return
			}
			if res.Code == 0 {
				fail("CheckTx accepted a refused tx %d", i)
			}
		}
	}()

	for h := int64(3); h <= blocks; h++ {
		if err := runBlock(h); err != nil {
			fail("%v", err)
			break
		}
	}
	// Close the adapter while the readers still run: Close waits for the
	// calls in flight; every later one is refused.
	closing.Store(true)
	adapter.Close()
	done.Store(true)
	wg.Wait()

	t.Logf("answers checked: %d; old height pruned meanwhile: %d; latest height pruned during the read: %d; refused after Close: %d; first version %d",
		stats.ok.Load(), stats.pruned.Load(), stats.latestPruned.Load(), stats.closed.Load(), st.FirstVersion())
	for _, e := range errs {
		t.Error(e)
	}
	if stats.ok.Load() == 0 {
		t.Error("no answer was checked")
	}
	var _ abcicli.Client = query
}
