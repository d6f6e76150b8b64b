package abci_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	abcicli "github.com/cometbft/cometbft/abci/client"
	abciserver "github.com/cometbft/cometbft/abci/server"
	"github.com/cometbft/cometbft/abci/types"
	cmtproto "github.com/cometbft/cometbft/api/cometbft/types/v1"
	"github.com/cometbft/cometbft/libs/log"
	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrchainv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

const testChainID = "emr-abci-test"

var genesisTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// badTx is not a Tx at all: the state machine must answer it with a code.
var badTx = []byte{0xff, 0x00, 0x13, 0x37}

// node is an adapter over a real store and app in a directory.
type node struct {
	dir string
	st  *store.Store
	app *abci.Application
}

// openNode opens (or reopens) the goleveldb store in dir.
func openNode(t *testing.T, dir string) *node {
	t.Helper()
	return openNodeWith(t, dir, abci.Options{Version: "test"})
}

// openNodeWith is openNode with the adapter's options.
func openNodeWith(t *testing.T, dir string, aopts abci.Options) *node {
	t.Helper()
	opts := store.DefaultOptions()
	opts.Backend = store.BackendGoLevelDB
	st, err := store.Open(filepath.Join(dir, "app.db"), opts)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	a, err := app.New(st, app.Options{SigCacheSize: 128})
	if err != nil {
		st.Close()
		t.Fatalf("app.New: %v", err)
	}
	n := &node{dir: dir, st: st, app: abci.New(a, aopts)}
	t.Cleanup(n.close)
	return n
}

// close closes the adapter, then the store; it is idempotent.
func (n *node) close() {
	if n.st == nil {
		return
	}
	n.app.Close()
	n.st.Close()
	n.st = nil
}

func genesisAppState(t *testing.T) []byte {
	t.Helper()
	return appStateOf(t, app.DefaultGenesis())
}

func appStateOf(t *testing.T, gs *emrchainv1.GenesisState) []byte {
	t.Helper()
	b, err := protojson.Marshal(gs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// initChain runs InitChain with the default genesis and returns the
// genesis app hash.
func initChain(t *testing.T, conn types.Application) []byte {
	t.Helper()
	return initChainWith(t, conn, app.DefaultGenesis())
}

func initChainWith(t *testing.T, conn types.Application, gs *emrchainv1.GenesisState) []byte {
	t.Helper()
	return initChainWithParams(t, conn, gs, cmttypes.DefaultConsensusParams())
}

// initChainWithParams is initChainWith under the genesis consensus params
// cp, which CometBFT hands InitChain.
func initChainWithParams(t *testing.T, conn types.Application, gs *emrchainv1.GenesisState, cp *cmttypes.ConsensusParams) []byte {
	t.Helper()
	params := cp.ToProto()
	ctx := context.Background()
	info, err := conn.Info(ctx, &types.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.LastBlockHeight != 0 || len(info.LastBlockAppHash) != 0 {
		t.Fatalf("fresh Info = height %d hash %X, want 0 and empty", info.LastBlockHeight, info.LastBlockAppHash)
	}
	if info.AppVersion != abci.AppVersion {
		t.Fatalf("AppVersion = %d, want %d", info.AppVersion, abci.AppVersion)
	}
	res, err := conn.InitChain(ctx, &types.InitChainRequest{
		Time: genesisTime, ChainId: testChainID, InitialHeight: 1, AppStateBytes: appStateOf(t, gs),
		Validators: genesisValidators(), ConsensusParams: &params,
	})
	if err != nil {
		t.Fatalf("InitChain: %v", err)
	}
	if len(res.AppHash) == 0 {
		t.Fatal("InitChain returned an empty app hash")
	}
	if len(res.Validators) != 0 {
		t.Fatalf("InitChain changed the validators: %v", res.Validators)
	}
	// CometBFT's state takes the app version from the answer (a genesis,
	// as DefaultConsensusParams, may leave it at 0), and nothing else.
	if u := res.ConsensusParams; u.GetVersion().GetApp() != abci.AppVersion || u.Block != nil || u.Evidence != nil || u.Validator != nil ||
		u.Feature != nil || u.Synchrony != nil || cp.Update(u).Version.App != abci.AppVersion {
		t.Fatalf("InitChain's consensus params %v; want the app version %d and no other section", u, abci.AppVersion)
	}
	return res.AppHash
}

// genesisValidators is apptest's validator set as CometBFT hands it to
// InitChain.
func genesisValidators() []types.ValidatorUpdate {
	var out []types.ValidatorUpdate
	for _, v := range apptest.GenesisValidators() {
		out = append(out, types.ValidatorUpdate{PubKeyType: "ed25519", PubKeyBytes: v.PubKey, Power: v.Power})
	}
	return out
}

// block runs one height through FinalizeBlock and Commit, as CometBFT does,
// and returns the results and the app hash.
func block(t *testing.T, conn types.Application, height int64, txs ...[]byte) ([]*types.ExecTxResult, []byte) {
	t.Helper()
	ctx := context.Background()
	fin, err := conn.FinalizeBlock(ctx, &types.FinalizeBlockRequest{
		Height: height, Time: genesisTime.Add(time.Duration(height) * time.Second), Txs: txs,
	})
	if err != nil {
		t.Fatalf("FinalizeBlock(%d): %v", height, err)
	}
	if len(fin.TxResults) != len(txs) {
		t.Fatalf("FinalizeBlock(%d): %d results for %d txs", height, len(fin.TxResults), len(txs))
	}
	if len(fin.AppHash) == 0 {
		t.Fatalf("FinalizeBlock(%d): empty app hash", height)
	}
	if _, err := conn.Commit(ctx, &types.CommitRequest{}); err != nil {
		t.Fatalf("Commit(%d): %v", height, err)
	}
	return fin.TxResults, fin.AppHash
}

// transports runs the same scenario against the adapter directly, through
// CometBFT's local client (what emrchaind uses) and over an ABCI socket (what
// an out-of-process deployment would use).
func transports(t *testing.T, scenario func(t *testing.T, conn types.Application)) {
	t.Run("direct", func(t *testing.T) {
		scenario(t, openNode(t, t.TempDir()).app)
	})
	t.Run("local-client", func(t *testing.T) {
		cli := abcicli.NewLocalClient(nil, openNode(t, t.TempDir()).app)
		scenario(t, cli)
	})
	t.Run("socket", func(t *testing.T) {
		n := openNode(t, t.TempDir())
		// Unix socket paths are short-limited; t.TempDir can be long.
		sockDir, err := os.MkdirTemp("", "abci")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(sockDir) })
		addr := "unix://" + filepath.Join(sockDir, "app.sock")
		srv := abciserver.NewSocketServer(addr, n.app)
		if err := srv.Start(); err != nil {
			t.Fatalf("socket server: %v", err)
		}
		t.Cleanup(func() { _ = srv.Stop() })
		cli := abcicli.NewSocketClient(addr, true)
		if err := cli.Start(); err != nil {
			t.Fatalf("socket client: %v", err)
		}
		t.Cleanup(func() { _ = cli.Stop() })
		scenario(t, cli)
	})
}

func TestChainLifecycle(t *testing.T) {
	transports(t, func(t *testing.T, conn types.Application) {
		ctx := context.Background()
		initChain(t, conn)
		var last []byte
		for h := int64(1); h <= 3; h++ {
			_, last = block(t, conn, h)
		}
		info, err := conn.Info(ctx, &types.InfoRequest{})
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		if info.LastBlockHeight != 3 || string(info.LastBlockAppHash) != string(last) {
			t.Fatalf("Info = height %d hash %X, want 3 and %X", info.LastBlockHeight, info.LastBlockAppHash, last)
		}

		// A bad tx: a code and a log, never an error, in every step.
		chk, err := conn.CheckTx(ctx, &types.CheckTxRequest{Tx: badTx, Type: types.CHECK_TX_TYPE_CHECK})
		if err != nil {
			t.Fatalf("CheckTx: %v", err)
		}
		if chk.Code == types.CodeTypeOK || chk.Log == "" {
			t.Fatalf("CheckTx(bad) = code %d log %q, want a code and a log", chk.Code, chk.Log)
		}
		re, err := conn.CheckTx(ctx, &types.CheckTxRequest{Tx: badTx, Type: types.CHECK_TX_TYPE_RECHECK})
		if err != nil || re.Code == types.CodeTypeOK {
			t.Fatalf("CheckTx(bad, recheck) = %v, %v; want a code", re, err)
		}
		prep, err := conn.PrepareProposal(ctx, &types.PrepareProposalRequest{
			Height: 4, Time: genesisTime.Add(4 * time.Second), Txs: [][]byte{badTx}, MaxTxBytes: 1 << 20,
		})
		if err != nil {
			t.Fatalf("PrepareProposal: %v", err)
		}
		if len(prep.Txs) != 0 {
			t.Fatalf("PrepareProposal kept a bad tx: %d txs", len(prep.Txs))
		}
		proc, err := conn.ProcessProposal(ctx, &types.ProcessProposalRequest{
			Height: 4, Time: genesisTime.Add(4 * time.Second), Txs: [][]byte{badTx},
		})
		if err != nil {
			t.Fatalf("ProcessProposal: %v", err)
		}
		if proc.Status != types.PROCESS_PROPOSAL_STATUS_REJECT {
			t.Fatalf("ProcessProposal(bad) = %v, want REJECT", proc.Status)
		}
		empty, err := conn.ProcessProposal(ctx, &types.ProcessProposalRequest{Height: 4, Time: genesisTime.Add(4 * time.Second)})
		if err != nil || empty.Status != types.PROCESS_PROPOSAL_STATUS_ACCEPT {
			t.Fatalf("ProcessProposal(empty) = %v, %v; want ACCEPT", empty, err)
		}
		// A block decided with a bad tx in it (a faulty proposer's, accepted
		// by +2/3 anyway) still executes: the tx fails, the block does not.
		results, _ := block(t, conn, 4, badTx)
		if results[0].Code == types.CodeTypeOK || results[0].Log == "" {
			t.Fatalf("FinalizeBlock(bad tx) result = code %d log %q, want a code and a log", results[0].Code, results[0].Log)
		}

		// Queries.
		params, err := conn.Query(ctx, &types.QueryRequest{Path: "/emrchain.v1.Query/Params"})
		if err != nil {
			t.Fatalf("Query(Params): %v", err)
		}
		if params.Code != 0 {
			t.Fatalf("Query(Params) = code %d log %q", params.Code, params.Log)
		}
		var pr emrchainv1.QueryParamsResponse
		if err := proto.Unmarshal(params.Value, &pr); err != nil || pr.Params == nil {
			t.Fatalf("Query(Params) value does not decode: %v (%v)", err, pr.Params)
		}
		if params.Height != 4 {
			t.Fatalf("Query(Params) height = %d, want 4", params.Height)
		}
	})
}

// TestValidTx follows a good transaction through every step: admitted,
// proposed, accepted, executed with its events, committed, and queried with
// proofs.
func TestValidTx(t *testing.T) {
	transports(t, func(t *testing.T, conn types.Application) {
		ctx := context.Background()
		initChainWith(t, conn, apptest.Consortium())
		block(t, conn, 1)

		registrar := apptest.Registrar(apptest.HospitalA)
		clinician := apptest.NewActor("clinician")
		tx := registrar.Tx(testChainID, 0, apptest.RegisterMember(clinician, emrchainv1.Role_ROLE_CLINICIAN, apptest.HospitalA))

		chk, err := conn.CheckTx(ctx, &types.CheckTxRequest{Tx: tx, Type: types.CHECK_TX_TYPE_CHECK})
		if err != nil || chk.Code != types.CodeTypeOK {
			t.Fatalf("CheckTx = %v, %v; want code 0", chk, err)
		}
		// The check state now holds the tx: the same tx again is a replay.
		again, err := conn.CheckTx(ctx, &types.CheckTxRequest{Tx: tx, Type: types.CHECK_TX_TYPE_CHECK})
		if err != nil || again.Code == types.CodeTypeOK || again.Codespace != app.Codespace {
			t.Fatalf("CheckTx(replay) = %v, %v; want an %s code", again, err, app.Codespace)
		}
		bt := genesisTime.Add(2 * time.Second)
		prep, err := conn.PrepareProposal(ctx, &types.PrepareProposalRequest{Height: 2, Time: bt, Txs: [][]byte{tx, badTx}, MaxTxBytes: 1 << 20})
		if err != nil || len(prep.Txs) != 1 || string(prep.Txs[0]) != string(tx) {
			t.Fatalf("PrepareProposal = %v, %v; want just the good tx", prep, err)
		}
		proc, err := conn.ProcessProposal(ctx, &types.ProcessProposalRequest{Height: 2, Time: bt, Txs: prep.Txs})
		if err != nil || proc.Status != types.PROCESS_PROPOSAL_STATUS_ACCEPT {
			t.Fatalf("ProcessProposal = %v, %v; want ACCEPT", proc, err)
		}
		fin, err := conn.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: 2, Time: bt, Txs: prep.Txs})
		if err != nil {
			t.Fatalf("FinalizeBlock: %v", err)
		}
		res := fin.TxResults[0]
		if res.Code != types.CodeTypeOK {
			t.Fatalf("FinalizeBlock: code %d log %q", res.Code, res.Log)
		}
		if len(res.Events) == 0 || res.Events[0].Type == "" || len(res.Events[0].Attributes) == 0 {
			t.Fatalf("FinalizeBlock: events not carried over: %v", res.Events)
		}
		if _, err := conn.Commit(ctx, &types.CommitRequest{}); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		info, err := conn.Info(ctx, &types.InfoRequest{})
		if err != nil || info.LastBlockHeight != 2 || string(info.LastBlockAppHash) != string(fin.AppHash) {
			t.Fatalf("Info = %v, %v; want height 2 and the FinalizeBlock hash %X", info, err, fin.AppHash)
		}

		data, _ := proto.Marshal(&emrchainv1.QueryMemberRequest{Address: hex.EncodeToString(clinician.Address)})
		q, err := conn.Query(ctx, &types.QueryRequest{Path: abci.QueryServicePrefix + "Member", Data: data, Prove: true})
		if err != nil || q.Code != 0 {
			t.Fatalf("Query(Member) = %v, %v", q, err)
		}
		var member emrchainv1.QueryMemberResponse
		if err := proto.Unmarshal(q.Value, &member); err != nil {
			t.Fatal(err)
		}
		if member.Member.GetRole() != emrchainv1.Role_ROLE_CLINICIAN || len(member.Proofs) == 0 || q.Height != 2 {
			t.Fatalf("Query(Member) = %v at %d; want the clinician with proofs at height 2", &member, q.Height)
		}
	})
}

func TestQueryErrors(t *testing.T) {
	transports(t, func(t *testing.T, conn types.Application) {
		ctx := context.Background()
		initChain(t, conn)
		block(t, conn, 1)
		for _, tc := range []struct {
			name      string
			req       *types.QueryRequest
			codespace string
			code      uint32
		}{
			{"unknown path", &types.QueryRequest{Path: "/no/such/path"}, abci.Codespace, abci.CodeUnknownPath},
			{"empty path", &types.QueryRequest{}, abci.Codespace, abci.CodeUnknownPath},
			{"service prefix without method", &types.QueryRequest{Path: abci.QueryServicePrefix}, abci.Codespace, abci.CodeUnknownPath},
			{"unknown method", &types.QueryRequest{Path: abci.QueryServicePrefix + "NoSuchMethod"}, app.Codespace, app.CodeOf(app.ErrInvalidQuery)},
			{"garbage request", &types.QueryRequest{Path: abci.QueryServicePrefix + "Member", Data: []byte{0xff, 0xff, 0xff}}, app.Codespace, app.CodeOf(app.ErrInvalidQuery)},
			{"negative height", &types.QueryRequest{Path: abci.QueryServicePrefix + "Params", Height: -1}, abci.Codespace, abci.CodeInvalidQuery},
			// A node behind the height asked: "not committed yet", which a
			// client reads as "ask again, or another node", not as a bad request.
			{"future height", &types.QueryRequest{Path: abci.QueryServicePrefix + "Params", Height: 1000}, app.Codespace, app.CodeOf(app.ErrHeightNotCommitted)},
			{"future height of a store key", &types.QueryRequest{Path: abci.QueryStoreKeyPath, Data: []byte("k"), Height: 1000}, app.Codespace, app.CodeOf(app.ErrHeightNotCommitted)},
			{"store key without key", &types.QueryRequest{Path: abci.QueryStoreKeyPath, Prove: true}, abci.Codespace, abci.CodeInvalidQuery},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res, err := conn.Query(ctx, tc.req)
				if err != nil {
					t.Fatalf("Query returned an error instead of a code: %v", err)
				}
				if res.Code != tc.code || res.Codespace != tc.codespace {
					t.Fatalf("Query(%q) = code %d in %q (%s), want %d in %q", tc.req.Path, res.Code, res.Codespace, res.Log, tc.code, tc.codespace)
				}
				if res.Log == "" {
					t.Fatalf("Query(%q): code %d without a log", tc.req.Path, res.Code)
				}
			})
		}
	})
}

// Any RPC caller chooses the query path: the answer's log (and the node's
// log line) quotes it cut short, never whole.
func TestQueryLogsDoNotEchoHugePath(t *testing.T) {
	ctx := context.Background()
	a := apptest.MemApp(t)
	huge := strings.Repeat("\x01", 10_000)
	var logged bytes.Buffer
	conn := abci.New(a, abci.Options{
		AllowedPeers: []string{"9a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"},
		Logger:       log.NewTMJSONLoggerNoTS(&logged),
	})
	for _, path := range []string{"/no/such/path/" + huge, abci.PeerFilterIDPath + huge} {
		logged.Reset()
		res, err := conn.Query(ctx, &types.QueryRequest{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		// Quoted whole, the path would be 40 KB (JSON-escaped twice as
		// much in the log line).
		if res.Code == types.CodeTypeOK || len(res.Log) > 512 || logged.Len() > 1024 {
			t.Errorf("Query(%.40q...): code %d, a log of %d bytes, %d bytes logged; want a refusal that quotes at most a short prefix",
				path, res.Code, len(res.Log), logged.Len())
		}
	}
}

func TestQueryStoreKeyProof(t *testing.T) {
	n := openNode(t, t.TempDir())
	initChain(t, n.app)
	block(t, n.app, 1)
	// Whether or not the key exists, a proved query carries a proof op at
	// the committed height.
	res, err := n.app.Query(context.Background(), &types.QueryRequest{
		Path: abci.QueryStoreKeyPath, Data: []byte("no-such-key"), Prove: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 0 {
		t.Fatalf("store query: code %d log %q", res.Code, res.Log)
	}
	if res.Height != 1 || string(res.Key) != "no-such-key" {
		t.Fatalf("store query: height %d key %q, want 1 and the key", res.Height, res.Key)
	}
	if res.ProofOps == nil || len(res.ProofOps.Ops) == 0 {
		t.Fatal("store query with prove=true returned no proof ops")
	}
	noProof, err := n.app.Query(context.Background(), &types.QueryRequest{Path: abci.QueryStoreKeyPath, Data: []byte("no-such-key")})
	if err != nil || noProof.Code != 0 || noProof.ProofOps != nil {
		t.Fatalf("store query without prove = %v, %v; want code 0 and no proof", noProof, err)
	}
}

// TestRestart is crash recovery at the adapter: after the store is closed
// and reopened, Info reports the last commit exactly, and the chain goes on.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, dir)
	initChain(t, n.app)
	var last []byte
	for h := int64(1); h <= 5; h++ {
		_, last = block(t, n.app, h)
	}
	// A block finalized but never committed (a crash between FinalizeBlock
	// and Commit) must leave no trace.
	if _, err := n.app.FinalizeBlock(context.Background(), &types.FinalizeBlockRequest{
		Height: 6, Time: genesisTime.Add(6 * time.Second), Txs: [][]byte{badTx},
	}); err != nil {
		t.Fatalf("FinalizeBlock(6): %v", err)
	}
	n.close()

	n = openNode(t, dir)
	info, err := n.app.Info(context.Background(), &types.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.LastBlockHeight != 5 || string(info.LastBlockAppHash) != string(last) {
		t.Fatalf("after restart Info = height %d hash %X, want 5 and %X", info.LastBlockHeight, info.LastBlockAppHash, last)
	}
	// CometBFT replays block 6 and goes on.
	block(t, n.app, 6, badTx)
	block(t, n.app, 7)
	info, _ = n.app.Info(context.Background(), &types.InfoRequest{})
	if info.LastBlockHeight != 7 {
		t.Fatalf("Info height = %d, want 7", info.LastBlockHeight)
	}
	// InitChain on a chain that has blocks is refused.
	if _, err := n.app.InitChain(context.Background(), &types.InitChainRequest{
		ChainId: testChainID, AppStateBytes: genesisAppState(t), Time: genesisTime, Validators: genesisValidators(),
	}); err == nil {
		t.Fatal("InitChain on a committed chain succeeded")
	}
}

func TestInitChainRejectsBadGenesis(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *types.InitChainRequest
	}{
		{"empty app_state", &types.InitChainRequest{ChainId: testChainID, Time: genesisTime}},
		{"not json", &types.InitChainRequest{ChainId: testChainID, Time: genesisTime, AppStateBytes: []byte("{not json")}},
		{"initial height", &types.InitChainRequest{ChainId: testChainID, Time: genesisTime, InitialHeight: 10, AppStateBytes: genesisAppState(t), Validators: genesisValidators()}},
		{"no validators", &types.InitChainRequest{ChainId: testChainID, Time: genesisTime, AppStateBytes: genesisAppState(t)}},
		{"secp256k1 validator", &types.InitChainRequest{ChainId: testChainID, Time: genesisTime, AppStateBytes: genesisAppState(t),
			Validators: []types.ValidatorUpdate{{PubKeyType: "secp256k1", PubKeyBytes: make([]byte, 33), Power: 10}}}},
		{"consensus params without ed25519", &types.InitChainRequest{ChainId: testChainID, Time: genesisTime, AppStateBytes: genesisAppState(t),
			Validators: genesisValidators(), ConsensusParams: &cmtproto.ConsensusParams{Validator: &cmtproto.ValidatorParams{PubKeyTypes: []string{"secp256k1"}}}}},
		{"another app version", &types.InitChainRequest{ChainId: testChainID, Time: genesisTime, AppStateBytes: genesisAppState(t),
			Validators: genesisValidators(), ConsensusParams: &cmtproto.ConsensusParams{Version: &cmtproto.VersionParams{App: abci.AppVersion + 1}}}},
		{"validator of power 0", &types.InitChainRequest{ChainId: testChainID, Time: genesisTime, AppStateBytes: genesisAppState(t),
			Validators: []types.ValidatorUpdate{{PubKeyType: "ed25519", PubKeyBytes: apptest.Validator(0).SignPub()}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := openNode(t, t.TempDir())
			if _, err := n.app.InitChain(context.Background(), tc.req); err == nil {
				t.Fatal("InitChain accepted a bad genesis")
			}
		})
	}
}

// TestSnapshotsUnconfigured: a node without snapshots lists none, serves
// no chunk, refuses an offer whose metadata does not decode, and aborts a
// chunk it was never offered.
func TestSnapshotsUnconfigured(t *testing.T) {
	n := openNode(t, t.TempDir())
	ctx := context.Background()
	list, err := n.app.ListSnapshots(ctx, &types.ListSnapshotsRequest{})
	if err != nil || len(list.Snapshots) != 0 {
		t.Fatalf("ListSnapshots = %v, %v; want none", list, err)
	}
	bad := &types.Snapshot{Height: 10, Format: 1, Chunks: 1, Hash: make([]byte, 32), Metadata: []byte{0xff}}
	offer, err := n.app.OfferSnapshot(ctx, &types.OfferSnapshotRequest{Snapshot: bad, AppHash: make([]byte, 32)})
	if err != nil || offer.Result != types.OFFER_SNAPSHOT_RESULT_REJECT {
		t.Fatalf("OfferSnapshot = %v, %v; want REJECT", offer, err)
	}
	chunk, err := n.app.LoadSnapshotChunk(ctx, &types.LoadSnapshotChunkRequest{Height: 10})
	if err != nil || len(chunk.Chunk) != 0 {
		t.Fatalf("LoadSnapshotChunk = %v, %v; want no chunk", chunk, err)
	}
	apply, err := n.app.ApplySnapshotChunk(ctx, &types.ApplySnapshotChunkRequest{Chunk: []byte{1}})
	if err != nil || apply.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_ABORT {
		t.Fatalf("ApplySnapshotChunk = %v, %v; want ABORT", apply, err)
	}
}

func TestClosed(t *testing.T) {
	n := openNode(t, t.TempDir())
	initChain(t, n.app)
	n.app.Close()
	ctx := context.Background()
	if _, err := n.app.CheckTx(ctx, &types.CheckTxRequest{Tx: badTx}); err != abci.ErrClosed {
		t.Fatalf("CheckTx after Close: %v, want ErrClosed", err)
	}
	if _, err := n.app.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: 1}); err != abci.ErrClosed {
		t.Fatalf("FinalizeBlock after Close: %v, want ErrClosed", err)
	}
	res, err := n.app.Query(ctx, &types.QueryRequest{Path: "/emrchain.v1.Query/Params"})
	if err != nil || res.Code != abci.CodeClosed {
		t.Fatalf("Query after Close = %v, %v; want CodeClosed", res, err)
	}
}

func ExampleApplication() {
	dir, _ := os.MkdirTemp("", "emrchain-example")
	defer os.RemoveAll(dir)
	opts := store.DefaultOptions()
	opts.Backend = store.BackendGoLevelDB
	st, _ := store.Open(filepath.Join(dir, "app.db"), opts)
	defer st.Close()
	a, _ := app.New(st, app.Options{})
	abciApp := abci.New(a, abci.Options{Version: "example"})
	defer abciApp.Close()

	info, _ := abciApp.Info(context.Background(), &types.InfoRequest{})
	fmt.Println("height", info.LastBlockHeight)
	// Output: height 0
}

// TestPeerFilter: with AllowedPeers set, CometBFT's peer filter query lets
// in only those node ids (any case); addresses are not filtered; without
// AllowedPeers (nil or empty) every node id is refused: the default is deny.
func TestPeerFilter(t *testing.T) {
	ctx := context.Background()
	const member, stranger = "9a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", "0000000000000000000000000000000000000001"
	a := apptest.MemApp(t)
	code := func(app *abci.Application, path string) uint32 {
		res, err := app.Query(ctx, &types.QueryRequest{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return res.Code
	}
	filtered := abci.New(a, abci.Options{AllowedPeers: []string{strings.ToUpper(member)}})
	for path, want := range map[string]uint32{
		abci.PeerFilterIDPath + member:                0,
		abci.PeerFilterIDPath + stranger:              abci.CodePeerRefused,
		abci.PeerFilterAddrPath + "203.0.113.9:26656": 0,
	} {
		if got := code(filtered, path); got != want {
			t.Errorf("%s: code %d, want %d", path, got, want)
		}
	}
	for _, opts := range []abci.Options{{}, {AllowedPeers: []string{}}} {
		none := abci.New(a, opts)
		for _, id := range []string{member, stranger, ""} {
			if got := code(none, abci.PeerFilterIDPath+id); got != abci.CodePeerRefused {
				t.Errorf("AllowedPeers %#v: node %q gets code %d, want %d (refused)", opts.AllowedPeers, id, got, abci.CodePeerRefused)
			}
		}
		if got := code(none, abci.PeerFilterAddrPath+"127.0.0.1:26656"); got != 0 {
			t.Errorf("AllowedPeers %#v: an address gets code %d, want 0", opts.AllowedPeers, got)
		}
	}
}

// TestHaltReported: a block call that fails (here FinalizeBlock at a height
// that skips one, then Commit with no block finalized) returns its error
// to CometBFT and reports it to Options.OnHalt, once; a bad transaction or
// a refused proposal does not.
func TestHaltReported(t *testing.T) {
	var halts []error
	n := openNodeWith(t, t.TempDir(), abci.Options{OnHalt: func(err error) { halts = append(halts, err) }})
	ctx := context.Background()
	initChain(t, n.app)
	if _, err := n.app.CheckTx(ctx, &types.CheckTxRequest{Tx: []byte{0xff, 0x00}, Type: types.CHECK_TX_TYPE_CHECK}); err != nil {
		t.Fatalf("CheckTx of a malformed tx: %v", err)
	}
	if res, err := n.app.ProcessProposal(ctx, &types.ProcessProposalRequest{Height: 1, Time: time.Now(), Txs: [][]byte{{0xff}}}); err != nil || res.Status != types.PROCESS_PROPOSAL_STATUS_REJECT {
		t.Fatalf("ProcessProposal of a malformed tx: %v %v", res, err)
	}
	if len(halts) != 0 {
		t.Fatalf("halts after a bad tx and a refused proposal: %v", halts)
	}
	_, err := n.app.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: 3, Time: time.Now()})
	if err == nil || len(halts) != 1 || halts[0] != err {
		t.Fatalf("FinalizeBlock skipping a height: %v; halts %v, want that error once", err, halts)
	}
	if _, err := n.app.Commit(ctx, &types.CommitRequest{}); err == nil || len(halts) != 1 {
		t.Fatalf("Commit with no block: %v; halts %v, want an error and no second report", err, halts)
	}
}

// levelCounter counts the log lines of each level.
type levelCounter struct {
	log.Logger
	info, debug int
}

func (l *levelCounter) Info(string, ...any)  { l.info++ }
func (l *levelCounter) Debug(string, ...any) { l.debug++ }
func (l *levelCounter) With(...any) log.Logger {
	return l
}

// TestPeerRefusalsLoggedOnce: a refused node id is logged at Info the
// first time only, and at most maxLoggedRefusals (256) ids are, and
// anything that is no node id never is, so RPC callers sending the peer
// filter's query cannot flood the log or fill memory.
func TestPeerRefusalsLoggedOnce(t *testing.T) {
	ctx := context.Background()
	logger := &levelCounter{Logger: log.NewNopLogger()}
	conn := abci.New(apptest.MemApp(t), abci.Options{Logger: logger})
	refuse := func(id string) {
		t.Helper()
		if res, err := conn.Query(ctx, &types.QueryRequest{Path: abci.PeerFilterIDPath + id}); err != nil || res.Code != abci.CodePeerRefused {
			t.Fatalf("peer %s: %v %v, want refused", id, res, err)
		}
	}
	refuse("0000000000000000000000000000000000000001")
	refuse("0000000000000000000000000000000000000001")
	if logger.info != 1 || logger.debug != 1 {
		t.Fatalf("one id refused twice: %d Info, %d Debug lines; want 1 and 1", logger.info, logger.debug)
	}
	refuse(strings.Repeat("not a node id ", 100))
	if logger.info != 1 {
		t.Fatalf("a path that is no node id: %d Info lines, want still 1", logger.info)
	}
	for i := range 300 {
		refuse(fmt.Sprintf("%040x", i+2))
	}
	if logger.info != 256 {
		t.Fatalf("301 ids refused: %d Info lines, want 256", logger.info)
	}
}

// TestValidatorUpdates: a block whose proposal executes a validator change
// hands it to CometBFT in FinalizeBlock (an ed25519 update); a block
// without one hands none.
func TestValidatorUpdates(t *testing.T) {
	transports(t, func(t *testing.T, conn types.Application) {
		ctx := context.Background()
		g := apptest.Consortium()
		g.Organizations, g.Members = g.Organizations[:1], g.Members[:1] // one organization decides alone
		initChainWith(t, conn, g)
		block(t, conn, 1)
		registrar := apptest.Registrar(apptest.HospitalA)
		removed := apptest.Validator(2).SignPub()
		tx := registrar.Tx(testChainID, 0, apptest.SetValidatorPower(removed, 0))
		fin, err := conn.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: 2, Time: genesisTime.Add(2 * time.Second), Txs: [][]byte{tx}})
		if err != nil || fin.TxResults[0].Code != 0 {
			t.Fatalf("FinalizeBlock = %v, %v", fin, err)
		}
		if u := fin.ValidatorUpdates; len(u) != 1 || u[0].PubKeyType != "ed25519" || !bytes.Equal(u[0].PubKeyBytes, removed) || u[0].Power != 0 {
			t.Fatalf("validator updates = %v, want one removing %X", u, removed)
		}
		if _, err := conn.Commit(ctx, &types.CommitRequest{}); err != nil {
			t.Fatal(err)
		}
		fin, err = conn.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: 3, Time: genesisTime.Add(3 * time.Second)})
		if err != nil || len(fin.ValidatorUpdates) != 0 {
			t.Fatalf("empty block: validator updates %v, %v", fin.ValidatorUpdates, err)
		}
	})
}

// TestConsensusParamUpdates: a block whose proposal executes a change of
// the block and evidence limits hands it to CometBFT in FinalizeBlock, as
// the block and evidence sections (with the genesis's gas limit kept) and
// the app version (which a genesis of version 0 would otherwise put in
// every later header), and no other section; CometBFT's params take it
// and its own checks pass. A block without one hands none.
func TestConsensusParamUpdates(t *testing.T) {
	transports(t, func(t *testing.T, conn types.Application) {
		ctx := context.Background()
		g := apptest.Consortium()
		g.Organizations, g.Members = g.Organizations[:1], g.Members[:1] // one organization decides alone
		genesis := cmttypes.DefaultConsensusParams()
		genesis.Block.MaxBytes, genesis.Block.MaxGas = 8<<20, 5_000_000
		initChainWithParams(t, conn, g, genesis)
		block(t, conn, 1)
		next := proto.Clone(g.Params).(*emrchainv1.Params)
		next.Consensus = app.ConsensusLimitsOf(genesis.Block, genesis.Evidence)
		next.Consensus.BlockMaxBytes = 3 << 20
		tx := apptest.Registrar(apptest.HospitalA).Tx(testChainID, 0, apptest.SetParams(next, 0))
		fin, err := conn.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: 2, Time: genesisTime.Add(2 * time.Second), Txs: [][]byte{tx}})
		if err != nil || fin.TxResults[0].Code != 0 {
			t.Fatalf("FinalizeBlock = %v, %v", fin, err)
		}
		u := fin.ConsensusParamUpdates
		if u.GetBlock().GetMaxBytes() != 3<<20 || u.GetBlock().GetMaxGas() != 5_000_000 || u.GetEvidence() == nil ||
			u.Evidence.MaxBytes != genesis.Evidence.MaxBytes || u.Evidence.MaxAgeNumBlocks != genesis.Evidence.MaxAgeNumBlocks || u.Evidence.MaxAgeDuration != genesis.Evidence.MaxAgeDuration ||
			u.Validator != nil || u.GetVersion().GetApp() != abci.AppVersion || u.Feature != nil || u.Synchrony != nil {
			t.Fatalf("consensus param updates = %v, want a 3 MiB block and the rest of block and evidence as at genesis, and the app version", u)
		}
		updated := genesis.Update(u)
		if err := updated.ValidateBasic(); err != nil {
			t.Fatalf("CometBFT's checks refuse the update: %v", err)
		}
		// The genesis left version.app at 0; CometBFT's headers after the
		// update carry the params' (updateState), which must stay Info's.
		if updated.Version.App != abci.AppVersion {
			t.Fatalf("after the update the headers carry app version %d; Info says %d", updated.Version.App, abci.AppVersion)
		}
		if _, err := conn.Commit(ctx, &types.CommitRequest{}); err != nil {
			t.Fatal(err)
		}
		fin, err = conn.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: 3, Time: genesisTime.Add(3 * time.Second)})
		if err != nil || fin.ConsensusParamUpdates != nil {
			t.Fatalf("empty block: consensus param updates %v, %v", fin.ConsensusParamUpdates, err)
		}
	})
}

// TestSignersClearUnseenPower: a validator's added power counts as unseen
// (limiting further changes) until its signature is in a block's decided
// last commit; an absent vote does not count.
func TestSignersClearUnseenPower(t *testing.T) {
	ctx := context.Background()
	conn := openNode(t, t.TempDir()).app
	g := apptest.Consortium()
	g.Organizations, g.Members = g.Organizations[:1], g.Members[:1]
	initChainWith(t, conn, g)
	block(t, conn, 1)
	reg := apptest.Registrar(apptest.HospitalA)
	y, z := apptest.NewActor("validator-y"), apptest.NewActor("validator-z")
	finalize := func(h int64, yFlag cmtproto.BlockIDFlag, txs ...[]byte) []*types.ExecTxResult {
		t.Helper()
		fin, err := conn.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: h, Time: genesisTime.Add(time.Duration(h) * time.Second), Txs: txs,
			DecidedLastCommit: types.CommitInfo{Votes: []types.VoteInfo{
				{Validator: types.Validator{Address: apptest.Validator(0).Address, Power: 10}, BlockIdFlag: cmtproto.BlockIDFlagCommit},
				{Validator: types.Validator{Address: y.Address, Power: 19}, BlockIdFlag: yFlag},
			}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Commit(ctx, &types.CommitRequest{}); err != nil {
			t.Fatal(err)
		}
		return fin.TxResults
	}
	if r := finalize(2, cmtproto.BlockIDFlagAbsent, reg.Tx(testChainID, 0, apptest.SetValidatorPowerWith(y.SignPub(), 19, y.Possession(testChainID)))); r[0].Code != 0 {
		t.Fatalf("add Y: %v", r[0])
	}
	addZ := func(seq uint64) []byte {
		return reg.Tx(testChainID, seq, apptest.SetValidatorPowerWith(z.SignPub(), 1, z.Possession(testChainID)))
	}
	if r := finalize(3, cmtproto.BlockIDFlagAbsent, addZ(1)); r[0].Code != app.ErrTooLarge.Code() {
		t.Fatalf("add Z while Y is unseen: %v", r[0])
	}
	finalize(4, cmtproto.BlockIDFlagAbsent) // Y absent: still unseen
	if r := finalize(5, cmtproto.BlockIDFlagCommit, addZ(1)); r[0].Code != app.ErrTooLarge.Code() {
		t.Fatalf("add Z in the block whose last commit first holds Y's signature: %v (the signatures count after the block's transactions)", r[0])
	}
	if r := finalize(6, cmtproto.BlockIDFlagAbsent, addZ(1)); r[0].Code != 0 {
		t.Fatalf("add Z once Y signed: %v", r[0])
	}
}
