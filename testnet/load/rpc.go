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

func newRPC(url string, conns int) *rpc {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *rpcError       `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s: bad answer (HTTP %d): %w", c.url, resp.StatusCode, err)
	}
	if env.Error != nil {
		return env.Error
	}
	return json.Unmarshal(env.Result, out)
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

var (
	bcastHead = []byte(`{"jsonrpc":"2.0","id":1,"method":"broadcast_tx_sync","params":{"tx":"`)
	bcastTail = []byte(`"}}`)
)

// broadcast sends tx with broadcast_tx_sync: it returns once CheckTx has
// answered on that node.
func (c *rpc) broadcast(ctx context.Context, tx []byte, buf []byte) (checkResult, []byte, error) {
	n := base64.StdEncoding.EncodedLen(len(tx))
	need := len(bcastHead) + n + len(bcastTail)
	if cap(buf) < need {
		buf = make([]byte, need)
	}
	buf = buf[:need]
	copy(buf, bcastHead)
	base64.StdEncoding.Encode(buf[len(bcastHead):], tx)
	copy(buf[len(bcastHead)+n:], bcastTail)
	var res checkResult
	err := c.post(ctx, buf, &res)
	return res, buf, err
}

// Mempool refusals CometBFT reports as RPC errors, by their text.
func isMempoolFull(err error) bool {
	var re *rpcError
	return errors.As(err, &re) && (strings.Contains(re.Data, "mempool is full") || strings.Contains(re.Data, "considered as full"))
}

func isInCache(err error) bool {
	var re *rpcError
	return errors.As(err, &re) && strings.Contains(re.Data, "already exists in cache")
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
