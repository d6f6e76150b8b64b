package client

import (
	"context"
	"io"
	"net/http"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	jsonrpcclient "github.com/cometbft/cometbft/rpc/jsonrpc/client"
	cmttypes "github.com/cometbft/cometbft/types"
)

// Bounds of one answer of a node's RPC. CometBFT's JSON-RPC client reads
// an answer whole before it decodes it, so without a bound a lying node
// could make the client (or a sidecar that links it) hold as much memory
// as it can send within the timeout, on every request.
const (
	// maxAnswerBytes bounds every answer but a whole block's: a query's
	// page is bounded by params.max_page_size, a light block by the
	// validator set (app.MaxValidators), a status by little.
	maxAnswerBytes = 64 << 20
	// maxBlockAnswerBytes bounds a block or its results (Block,
	// BlockResults), read only to find a transaction: CometBFT's largest
	// block (types.MaxBlockSizeBytes) as JSON, its transactions in base64,
	// with room for the results' events.
	maxBlockAnswerBytes = 4 * cmttypes.MaxBlockSizeBytes
)

// trustRequestTimeout bounds each request of TrustFromGenesis (a variable
// for tests).
var trustRequestTimeout = DefaultTimeout

// answerBoundKey is the context key of an answer's bound (withAnswerBound).
type answerBoundKey struct{}

// withAnswerBound lets the answer to a request made with the returned
// context hold up to bound bytes instead of maxAnswerBytes.
func withAnswerBound(ctx context.Context, bound int64) context.Context {
	return context.WithValue(ctx, answerBoundKey{}, bound)
}

// newRPC is an RPC client of node whose requests time out after timeout
// (0: never) and whose answers are bounded (maxAnswerBytes).
func newRPC(node string, timeout time.Duration) (*rpchttp.HTTP, error) {
	hc, err := jsonrpcclient.DefaultHTTPClient(node)
	if err != nil {
		return nil, err
	}
	hc.Timeout = timeout
	hc.Transport = boundedTransport{base: hc.Transport}
	return rpchttp.NewWithClient(node, hc)
}

// boundedTransport cuts an answer off, with an error, past its bound.
type boundedTransport struct{ base http.RoundTripper }

func (t boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	bound := int64(maxAnswerBytes)
	if b, ok := req.Context().Value(answerBoundKey{}).(int64); ok {
		bound = b
	}
	body := &boundedBody{rc: resp.Body, left: bound, bound: bound, node: req.URL.Host}
	if resp.ContentLength > bound {
		resp.Body.Close()
		return nil, body.tooLarge()
	}
	resp.Body = body
	return resp, nil
}

// boundedBody is an answer's body that fails once more than bound bytes
// were read from it.
type boundedBody struct {
	rc    io.ReadCloser
	left  int64 // bytes still allowed; -1 once the bound is passed
	bound int64
	node  string
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	// One byte past the bound tells an answer of exactly bound bytes
	// from a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n - 1, b.tooLarge()
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

func (b *boundedBody) tooLarge() error {
	return verificationError("node %s sent an answer of more than %d MiB, more than any honest answer to this request; the answer is dropped", b.node, b.bound>>20)
}
