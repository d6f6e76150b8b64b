package abci

import (
	"context"
	"fmt"
	"strings"

	"github.com/cometbft/cometbft/abci/types"

	"github.com/emrchain/emrchain/app"
)

// Query paths.
const (
	// QueryServicePrefix precedes the method name of a gRPC Query method
	// served over ABCI: "/emrchain.v1.Query/Member". Data is the request
	// proto, Value the response proto (with StoreProofs when prove is set).
	QueryServicePrefix = "/emrchain.v1.Query/"
	// QueryStoreKeyPath reads one raw key of the state tree. Data is the key;
	// with prove, ProofOps holds one "ics23:iavl" op proving the value (or
	// its absence) against the AppHash of the header at Height+1.
	QueryStoreKeyPath = "/store/key"
	// PeerFilterIDPath and PeerFilterAddrPath are CometBFT's peer filter
	// queries (config.toml filter_peers): "/p2p/filter/id/<node id>" is
	// answered 0 only for Options.AllowedPeers (none when it is empty);
	// addresses are not filtered, as node ids are what the P2P handshake
	// authenticates and an address is not.
	PeerFilterIDPath   = "/p2p/filter/id/"
	PeerFilterAddrPath = "/p2p/filter/addr/"
)

// Query serves reads of committed state at req.Height (0 = the latest).
//
// Query never fails the call and never panics on bad input: an unknown path,
// a malformed request, a pruned height or a missing object all come back as a
// non-zero Code with a Log. Codes from the state machine are passed on
// unchanged (app.CodeOf, in app.Codespace); the adapter's own codes are in
// Codespace "abci".
// Query reads only committed versions, so a recovered panic cannot have
// touched consensus state; it is reported as CodeInternal and logged.
func (a *Application) Query(_ context.Context, req *types.QueryRequest) (resp *types.QueryResponse, _ error) {
	if err := a.rlock(); err != nil {
		return &types.QueryResponse{Code: CodeClosed, Codespace: Codespace, Log: err.Error()}, nil
	}
	defer a.readMu.RUnlock()
	defer func() {
		if r := recover(); r != nil {
			path := app.QuoteInput(req.Path)
			a.logger.Error("ABCI Query panicked", "path", path, "panic", r)
			resp = &types.QueryResponse{
				Code: CodeInternal, Codespace: Codespace, Height: req.Height,
				Log: "internal error serving " + path,
			}
		}
	}()

	if req.Height < 0 {
		return &types.QueryResponse{
			Code: CodeInvalidQuery, Codespace: Codespace,
			Log: fmt.Sprintf("negative height %d", req.Height),
		}, nil
	}
	if last, _ := a.app.LastCommit(); req.Height > last {
		// The state machine's code, as its own reads answer: a client
		// tells a node that is behind from a bad request by it.
		return queryError(req, fmt.Errorf("%w: height %d (this node's last committed height is %d)",
			app.ErrHeightNotCommitted, req.Height, last)), nil
	}

	switch {
	case strings.HasPrefix(req.Path, PeerFilterIDPath):
		id := strings.ToLower(strings.TrimPrefix(req.Path, PeerFilterIDPath))
		if !a.allowed[id] {
			// Anyone may send this query over RPC: a node id (40 hex
			// characters) is shown as it is, anything else quoted, cut short.
			shown := id
			if !IsNodeID(id) {
				shown = app.QuoteInput(id)
			}
			a.logRefusedPeer(id, shown)
			return &types.QueryResponse{Code: CodePeerRefused, Codespace: Codespace, Log: fmt.Sprintf("node %s is not one of this node's allowed peers", shown)}, nil
		}
		return &types.QueryResponse{}, nil
	case strings.HasPrefix(req.Path, PeerFilterAddrPath):
		return &types.QueryResponse{}, nil
	case req.Path == QueryStoreKeyPath:
		if len(req.Data) == 0 {
			return &types.QueryResponse{
				Code: CodeInvalidQuery, Codespace: Codespace, Height: req.Height,
				Log: "store query needs a key in data",
			}, nil
		}
		value, proof, height, err := a.app.QueryKey(req.Data, req.Height, req.Prove)
		if err != nil {
			return queryError(req, err), nil
		}
		resp := &types.QueryResponse{Key: req.Data, Value: value, Height: height}
		if req.Prove {
			resp.ProofOps = proof
		}
		return resp, nil

	case strings.HasPrefix(req.Path, QueryServicePrefix) && len(req.Path) > len(QueryServicePrefix):
		value, height, err := a.app.Query(req.Path, req.Data, req.Height, req.Prove)
		if err != nil {
			return queryError(req, err), nil
		}
		return &types.QueryResponse{Value: value, Height: height}, nil

	default:
		return &types.QueryResponse{
			Code: CodeUnknownPath, Codespace: Codespace, Height: req.Height,
			Log: fmt.Sprintf("unknown query path %s (want %q or %s<Method>)", app.QuoteInput(req.Path), QueryStoreKeyPath, QueryServicePrefix),
		}, nil
	}
}

// queryError turns a failed query into a response: the app's code when the
// error carries one, CodeInternal otherwise, so a failure is never code 0.
func queryError(req *types.QueryRequest, err error) *types.QueryResponse {
	resp := &types.QueryResponse{Log: err.Error(), Height: req.Height}
	if code := app.CodeOf(err); code != types.CodeTypeOK {
		resp.Code, resp.Codespace = code, app.Codespace
	} else {
		resp.Code, resp.Codespace = CodeInternal, Codespace
	}
	return resp
}

// maxLoggedRefusals bounds the node ids whose first refusal is logged at
// Info (logRefusedPeer).
const maxLoggedRefusals = 256

// logRefusedPeer logs a refused peer at Info the first time its id is
// refused and at Debug after that: anyone may send the peer filter's query
// over RPC, and a flood of them must not flood the log. Only node ids (40
// hex characters; CometBFT asks about no other kind) are remembered, and
// once maxLoggedRefusals of them have been logged, every refusal is at
// Debug until the node restarts.
func (a *Application) logRefusedPeer(id, shown string) {
	a.refusedMu.Lock()
	first := IsNodeID(id) && !a.refused[id] && len(a.refused) < maxLoggedRefusals
	if first {
		a.refused[id] = true
	}
	a.refusedMu.Unlock()
	log := a.logger.Debug
	if first {
		log = a.logger.Info
	}
	log("refused a peer that is not one of the consortium's nodes", "node_id", shown)
}
