package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// How the load submits its transactions (Config.Submit).
const (
	// SubmitGRPC streams them to each node's TxService.BroadcastTxs:
	// protobuf over one HTTP/2 stream per sender, no JSON on the nodes'
	// side.
	SubmitGRPC = "grpc"
	// SubmitJSONRPC sends them as JSON-RPC batches of broadcast_tx_sync to
	// CometBFT's RPC: what any CometBFT chain takes.
	SubmitJSONRPC = "jsonrpc"
)

// maxStreamsPerNode is the most BroadcastTxs streams the load opens to a
// node: the streams emrchaind serves at once on one connection (its gRPC
// server's MaxConcurrentStreams), and every sender has one.
const maxStreamsPerNode = 100

// submitter is a validator as the sender reaches it.
type submitter interface {
	// line opens a sender's own line to the node: the line sends its
	// batches one after another, and the node checks their txs in order.
	line() line
	close()
}

// line is one sender's connection to a node.
type line interface {
	// broadcastBatch sends txs, answered in the same order. err is a
	// failure of the whole batch: any of its txs may or may not have
	// reached the node.
	broadcastBatch(ctx context.Context, txs [][]byte) ([]outcome, error)
	close()
}

// grpcNode reaches a node's TxService over gRPC.
type grpcNode struct {
	conn   *grpc.ClientConn
	client emrv1.TxServiceClient
}

// newGRPCNode makes a client of the gRPC server at addr (host:port); it
// connects on first use.
func newGRPCNode(addr string) (*grpcNode, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("gRPC endpoint %q: %w", addr, err)
	}
	return &grpcNode{conn: conn, client: emrv1.NewTxServiceClient(conn)}, nil
}

func (n *grpcNode) line() line { return &streamLine{client: n.client, timeout: rpcTimeout} }

func (n *grpcNode) close() { _ = n.conn.Close() }

// streamLine sends batches over one BroadcastTxs stream, opened on the
// first batch and again after a failure.
type streamLine struct {
	client  emrv1.TxServiceClient
	timeout time.Duration // for a batch's answers
	stream  grpc.BidiStreamingClient[emrv1.BroadcastTxsRequest, emrv1.BroadcastTxsResponse]
	ctx     context.Context // the stream's; close cancels it
	cancel  context.CancelFunc
}

// broadcastBatch sends every tx, then reads every answer: the node checks
// them one after another as they come. A batch not answered within the
// line's timeout fails, and takes its stream with it. The timeout also
// bounds the opening of the stream, which waits while the node serves its
// most streams on this connection.
func (l *streamLine) broadcastBatch(ctx context.Context, txs [][]byte) ([]outcome, error) {
	if l.stream == nil {
		l.ctx, l.cancel = context.WithCancel(ctx)
	}
	timer := time.AfterFunc(l.timeout, l.cancel)
	out, err := l.exchange(txs)
	if timedOut := !timer.Stop(); timedOut || err != nil {
		l.close() // the timer cancelled it, or it is broken
		if timedOut && err != nil {
			err = fmt.Errorf("no answer within %s: %w", l.timeout, err)
		}
	}
	return out, err
}

func (l *streamLine) exchange(txs [][]byte) ([]outcome, error) {
	if l.stream == nil {
		stream, err := l.client.BroadcastTxs(l.ctx)
		if err != nil {
			return nil, fmt.Errorf("BroadcastTxs: open a stream: %w", err)
		}
		l.stream = stream
	}
	for _, tx := range txs {
		if err := l.stream.Send(&emrv1.BroadcastTxsRequest{Tx: tx}); err != nil {
			// The stream is broken: its status comes after any answers
			// still on their way.
			var rerr error
			for rerr == nil {
				_, rerr = l.stream.Recv()
			}
			return nil, fmt.Errorf("BroadcastTxs: send: %w", rerr)
		}
	}
	out := make([]outcome, len(txs))
	for i := range txs {
		r, err := l.stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("BroadcastTxs: %d of %d answered: %w", i, len(txs), err)
		}
		out[i] = streamOutcome(r)
	}
	return out, nil
}

// streamOutcome is a BroadcastTxs answer as the sender books it.
func streamOutcome(r *emrv1.BroadcastTxsResponse) outcome {
	if ref := r.GetRefusal(); ref != nil {
		return outcome{err: grpcstatus.ErrorProto(ref)}
	}
	res := r.GetResult()
	if res == nil {
		return outcome{err: errors.New("BroadcastTxs: an answer with neither result nor refusal")}
	}
	if res.Height > 0 {
		// Committed already: a tx sent again after its answer was lost.
		return outcome{err: errCommitted}
	}
	return outcome{res: checkResult{Code: res.Code, Codespace: res.Codespace, Log: res.Log}}
}

func (l *streamLine) close() {
	if l.cancel != nil {
		l.cancel()
	}
	l.stream, l.ctx, l.cancel = nil, nil, nil
}

// errCommitted answers a tx the node had committed already.
var errCommitted = errors.New("committed already")

// checkLoopbackAddr is checkLoopback for a host:port address.
func checkLoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("gRPC endpoint %q: want 127.0.0.1:PORT: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("gRPC endpoint %q: only 127.0.0.1 targets are allowed", addr)
	}
	return nil
}
