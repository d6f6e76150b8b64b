package load

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// rpcTimeout bounds every RPC call.
const rpcTimeout = 10 * time.Second

// rpc is a lean CometBFT JSON-RPC client: the load generator shares two
// cores with the nodes it measures, so a send costs one small POST and a
// small JSON answer, nothing more.
type rpc struct {
	url string
	hc  *http.Client
}

// newRPC makes a client of the node at url; a tcp:// URL (as CometBFT's
// config and testnet.json write it, and checkLoopback accepts) is spoken to
// over http://.
func newRPC(url string, conns int) *rpc {
	if rest, ok := strings.CutPrefix(url, "tcp://"); ok {
		url = "http://" + rest
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 4,
		MaxIdleConnsPerHost: conns + 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &rpc{url: strings.TrimRight(url, "/"), hc: &http.Client{Transport: tr, Timeout: rpcTimeout}}
}

func (c *rpc) close() { c.hc.CloseIdleConnections() }

// rpcError is a JSON-RPC error answer.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data"`
}

func (e *rpcError) Error() string {
	return fmt.Sprintf("rpc error %d: %s: %s", e.Code, e.Message, e.Data)
}

// post sends a JSON-RPC request body and decodes result into out.
func (c *rpc) post(ctx context.Context, body []byte, out any) error {
	raw, err := c.postRaw(ctx, body)
	if err != nil {
		return err
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *rpcError       `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s: bad answer: %w", c.url, err)
	}
	if env.Error != nil {
		return env.Error
	}
	return json.Unmarshal(env.Result, out)
}

// postRaw sends a JSON-RPC request body and returns the answer's body.
func (c *rpc) postRaw(ctx context.Context, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && !json.Valid(raw) {
		return nil, fmt.Errorf("%s: HTTP %d: %.200s", c.url, resp.StatusCode, raw)
	}
	return raw, nil
}

func (c *rpc) call(ctx context.Context, method string, params map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return err
	}
	return c.post(ctx, body, out)
}

// checkResult is the answer of broadcast_tx_sync.
type checkResult struct {
	Code      uint32 `json:"code"`
	Codespace string `json:"codespace"`
	Log       string `json:"log"`
}

// maxBatch is the most broadcasts sent in one JSON-RPC batch: CometBFT's
// default rpc.max_request_batch_size.
const maxBatch = 10

// outcome is one broadcast's answer within a batch: a CheckTx result, or
// the RPC error CometBFT gave for that element (e.g. mempool full).
type outcome struct {
	res checkResult
	err error
}

// broadcastBatch sends txs as one JSON-RPC batch of broadcast_tx_sync calls,
// which the node runs one after the other, in order; it returns their
// answers in the same order. One HTTP request and one JSON answer carry up
// to maxBatch transactions. err is a failure of the whole request.
func (c *rpc) broadcastBatch(ctx context.Context, txs [][]byte, buf []byte) ([]outcome, []byte, error) {
	buf = append(buf[:0], '[')
	for i, tx := range txs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"jsonrpc":"2.0","id":`...)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, `,"method":"broadcast_tx_sync","params":{"tx":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, tx)
		buf = append(buf, `"}}`...)
	}
	buf = append(buf, ']')
	raw, err := c.postRaw(ctx, buf)
	if err != nil {
		return nil, buf, err
	}
	type answer struct {
		ID     int             `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *rpcError       `json:"error"`
	}
	var answers []answer
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '{' {
		// A batch of one is answered with a single object.
		var a answer
		if err := json.Unmarshal(trimmed, &a); err != nil {
			return nil, buf, fmt.Errorf("%s: bad answer: %w", c.url, err)
		}
		answers = []answer{a}
	} else if err := json.Unmarshal(raw, &answers); err != nil {
		return nil, buf, fmt.Errorf("%s: bad answer: %w", c.url, err)
	}
	if len(answers) != len(txs) {
		return nil, buf, fmt.Errorf("%s: %d answers to a batch of %d", c.url, len(answers), len(txs))
	}
	out := make([]outcome, len(txs))
	for _, a := range answers {
		if a.ID < 0 || a.ID >= len(txs) {
			return nil, buf, fmt.Errorf("%s: answer id %d in a batch of %d", c.url, a.ID, len(txs))
		}
		switch {
		case a.Error != nil:
			out[a.ID].err = a.Error
		default:
			out[a.ID].err = json.Unmarshal(a.Result, &out[a.ID].res)
		}
	}
	return out, buf, nil
}

func (c *rpc) line() line { return &rpcLine{rpc: c} }

// rpcLine is a sender's line to a node's JSON-RPC: its own request
// buffer over the node's shared HTTP client.
type rpcLine struct {
	rpc *rpc
	buf []byte
}

func (l *rpcLine) broadcastBatch(ctx context.Context, txs [][]byte) ([]outcome, error) {
	out, buf, err := l.rpc.broadcastBatch(ctx, txs, l.buf)
	l.buf = buf
	return out, err
}

func (l *rpcLine) close() {}

// isMempoolFull: the node's mempool did not take the tx for want of room
// (CometBFT's RPC error, by its text, or BroadcastTxs's RESOURCE_EXHAUSTED).
func isMempoolFull(err error) bool {
	var re *rpcError
	if errors.As(err, &re) {
		return strings.Contains(re.Data, "mempool is full") || strings.Contains(re.Data, "considered as full")
	}
	return grpcstatus.Code(err) == codes.ResourceExhausted
}

// isInCache: the node had the tx already, in its mempool or committed.
func isInCache(err error) bool {
	var re *rpcError
	return errors.Is(err, errCommitted) || errors.As(err, &re) && strings.Contains(re.Data, "already exists in cache")
}

// block is the part of /block the observer needs.
type block struct {
	Header struct {
		Height string    `json:"height"`
		Time   time.Time `json:"time"`
	} `json:"header"`
	Data struct {
		Txs [][]byte `json:"txs"`
	} `json:"data"`
	// LastCommit is the commit of the block before: its round is the
	// consensus round that block was decided in.
	LastCommit struct {
		Round int32 `json:"round"`
	} `json:"last_commit"`
}

func (c *rpc) block(ctx context.Context, height int64) (*block, error) {
	var out struct {
		Block *block `json:"block"`
	}
	if err := c.call(ctx, "block", map[string]any{"height": strconv.FormatInt(height, 10)}, &out); err != nil {
		return nil, err
	}
	if out.Block == nil {
		return nil, fmt.Errorf("no block %d", height)
	}
	return out.Block, nil
}

// txResult is the part of an ExecTxResult the observer needs.
type txResult struct {
	Code      uint32 `json:"code"`
	Codespace string `json:"codespace"`
}

func (c *rpc) blockResults(ctx context.Context, height int64) ([]txResult, error) {
	var out struct {
		TxsResults []txResult `json:"txs_results"`
	}
	if err := c.call(ctx, "block_results", map[string]any{"height": strconv.FormatInt(height, 10)}, &out); err != nil {
		return nil, err
	}
	return out.TxsResults, nil
}

func (c *rpc) latestHeight(ctx context.Context) (int64, error) {
	var out struct {
		SyncInfo struct {
			LatestBlockHeight string `json:"latest_block_height"`
		} `json:"sync_info"`
	}
	if err := c.call(ctx, "status", map[string]any{}, &out); err != nil {
		return 0, err
	}
	return strconv.ParseInt(out.SyncInfo.LatestBlockHeight, 10, 64)
}

// appHeight is the last height the node's app has committed (abci_info):
// the state its CheckTx judges new txs against.
func (c *rpc) appHeight(ctx context.Context) (int64, error) {
	var out struct {
		Response struct {
			LastBlockHeight string `json:"last_block_height"`
		} `json:"response"`
	}
	if err := c.call(ctx, "abci_info", map[string]any{}, &out); err != nil {
		return 0, err
	}
	if out.Response.LastBlockHeight == "" {
		return 0, nil // nothing committed yet: the field is left out
	}
	return strconv.ParseInt(out.Response.LastBlockHeight, 10, 64)
}

// abciQuery runs an ABCI query at the latest height.
func (c *rpc) abciQuery(ctx context.Context, path string, data []byte) ([]byte, error) {
	var out struct {
		Response struct {
			Code  uint32 `json:"code"`
			Log   string `json:"log"`
			Value []byte `json:"value"`
		} `json:"response"`
	}
	if err := c.call(ctx, "abci_query", map[string]any{"path": path, "data": hex.EncodeToString(data), "height": "0", "prove": false}, &out); err != nil {
		return nil, err
	}
	if out.Response.Code != 0 {
		return nil, fmt.Errorf("query %s: code %d: %s", path, out.Response.Code, out.Response.Log)
	}
	return out.Response.Value, nil
}
