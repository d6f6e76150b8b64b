package load

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// scriptedTxService answers BroadcastTxs by the tx's text: "full" is
// refused as a full mempool, "down" as by a node catching up, "done" was committed at height 5, "bad" is
// rejected with code 3, "hang" is never answered; anything else is taken.
type scriptedTxService struct {
	emrv1.UnimplementedTxServiceServer
	streams atomic.Int32
}

func (s *scriptedTxService) BroadcastTxs(stream grpc.BidiStreamingServer[emrv1.BroadcastTxsRequest, emrv1.BroadcastTxsResponse]) error {
	s.streams.Add(1)
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		var r emrv1.BroadcastTxsResponse
		switch string(req.Tx) {
		case "full":
			r.Outcome = &emrv1.BroadcastTxsResponse_Refusal{Refusal: grpcstatus.New(codes.ResourceExhausted, "mempool is full").Proto()}
		case "down":
			r.Outcome = &emrv1.BroadcastTxsResponse_Refusal{Refusal: grpcstatus.New(codes.Unavailable, "catching up").Proto()}
		case "done":
			r.Outcome = &emrv1.BroadcastTxsResponse_Result{Result: &emrv1.BroadcastTxResponse{Height: 5}}
		case "bad":
			r.Outcome = &emrv1.BroadcastTxsResponse_Result{Result: &emrv1.BroadcastTxResponse{Code: 3, Codespace: "emrchain", Log: "no"}}
		case "hang":
			<-stream.Context().Done()
			return stream.Context().Err()
		default:
			r.Outcome = &emrv1.BroadcastTxsResponse_Result{Result: &emrv1.BroadcastTxResponse{}}
		}
		if err := stream.Send(&r); err != nil {
			return err
		}
	}
}

// serveGRPC serves srv on a loopback port until the test ends, and
// returns a client of it.
func serveGRPC(t *testing.T, srv *grpc.Server) *grpcNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	n, err := newGRPCNode(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	return n
}

// TestStreamLine: a batch's answers come back in order and are booked as
// JSON-RPC's are; a batch left unanswered fails after the line's timeout,
// and the next batch goes out on a new stream.
func TestStreamLine(t *testing.T) {
	srv := grpc.NewServer(grpc.MaxConcurrentStreams(2))
	svc := &scriptedTxService{}
	emrv1.RegisterTxServiceServer(srv, svc)
	n := serveGRPC(t, srv)
	l := n.line().(*streamLine)
	l.timeout = 300 * time.Millisecond
	defer l.close()
	ctx := context.Background()

	outs, err := l.broadcastBatch(ctx, [][]byte{[]byte("a"), []byte("full"), []byte("done"), []byte("bad")})
	if err != nil {
		t.Fatal(err)
	}
	if o := outs[0]; o.err != nil || o.res.Code != 0 {
		t.Errorf("taken: %+v", o)
	}
	if o := outs[1]; !isMempoolFull(o.err) || isInCache(o.err) {
		t.Errorf("full: %+v", o)
	}
	if o := outs[2]; !isInCache(o.err) || isMempoolFull(o.err) {
		t.Errorf("committed already: %+v", o)
	}
	if o := outs[3]; o.err != nil || o.res.Code != 3 || o.res.Codespace != "emrchain" || o.res.Log != "no" {
		t.Errorf("rejected: %+v", o)
	}

	if _, err := l.broadcastBatch(ctx, [][]byte{[]byte("b"), []byte("hang")}); err == nil || !errors.Is(err, context.Canceled) && grpcstatus.Code(err) != codes.Canceled {
		t.Fatalf("unanswered batch: %v, want its stream cancelled", err)
	}
	if outs, err := l.broadcastBatch(ctx, [][]byte{[]byte("c")}); err != nil || outs[0].err != nil {
		t.Fatalf("after a timeout: %v, %+v", err, outs)
	}
	if got := svc.streams.Load(); got != 2 {
		t.Errorf("%d streams opened, want 2 (one more after the timeout)", got)
	}

	// The node serves two streams per connection: a third line waits to
	// open its stream, and fails within its timeout instead of for good.
	l2 := n.line().(*streamLine)
	defer l2.close()
	if _, err := l2.broadcastBatch(ctx, [][]byte{[]byte("d")}); err != nil {
		t.Fatal(err)
	}
	l3 := n.line().(*streamLine)
	l3.timeout = 300 * time.Millisecond
	defer l3.close()
	if _, err := l3.broadcastBatch(ctx, [][]byte{[]byte("e")}); err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("a line beyond the node's streams: %v, want a timeout", err)
	}
	l2.close()
	if outs, err := l3.broadcastBatch(ctx, [][]byte{[]byte("f")}); err != nil || outs[0].err != nil {
		t.Fatalf("once a stream is free: %v, %+v", err, outs)
	}
}

// TestSenderKeepsTheFirstRPCError: a node whose gRPC server has no
// TxService fails every batch; the sender counts the failures and keeps
// the first one's text for the report, so the user learns why.
func TestSenderKeepsTheFirstRPCError(t *testing.T) {
	n := serveGRPC(t, grpc.NewServer()) // serves nothing
	s := &sender{nodes: []submitter{n}, conns: 1, stats: newSendStats()}
	end := time.Now().Add(300 * time.Millisecond)
	s.send(context.Background(), []*plannedTx{{raw: []byte("a")}}, 0, end, end)
	if s.stats.rpcErrors.Load() == 0 || s.stats.accepted.Load() != 0 {
		t.Fatalf("%d rpc errors, %d accepted", s.stats.rpcErrors.Load(), s.stats.accepted.Load())
	}
	if text := s.stats.errorText(); !strings.Contains(text, "rpc errors, the first: BroadcastTxs") || !strings.Contains(text, "Unimplemented") {
		t.Errorf("error text %q", text)
	}
}

// TestSenderBacksOffARefusingNode: a node that refuses a tx (here, as one
// catching up would) is asked again after errorBackoff, not at once: a
// tight loop would take the CPU the nodes share.
func TestSenderBacksOffARefusingNode(t *testing.T) {
	srv := grpc.NewServer()
	emrv1.RegisterTxServiceServer(srv, &scriptedTxService{})
	n := serveGRPC(t, srv)
	s := &sender{nodes: []submitter{n}, conns: 1, stats: newSendStats()}
	const window = 500 * time.Millisecond
	end := time.Now().Add(window)
	s.send(context.Background(), []*plannedTx{{raw: []byte("down")}}, 0, end, end)
	if got, most := s.stats.attempts.Load(), int64(window/errorBackoff)+1; got < 2 || got > most {
		t.Fatalf("%d attempts in %s, want 2 to %d (one per %s)", got, window, most, errorBackoff)
	}
	if !strings.Contains(s.stats.errorText(), "catching up") {
		t.Errorf("error text %q", s.stats.errorText())
	}
}
