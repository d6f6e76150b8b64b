package main

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// echoTxService answers each BroadcastTxs request with its tx's length
// (as the log), and BroadcastTx with the tx's length too.
type echoTxService struct {
	emrv1.UnimplementedTxServiceServer
}

func (echoTxService) BroadcastTx(_ context.Context, r *emrv1.BroadcastTxRequest) (*emrv1.BroadcastTxResponse, error) {
	return &emrv1.BroadcastTxResponse{Log: string(rune('0' + len(r.Tx)))}, nil
}

func (echoTxService) BroadcastTxs(stream grpc.BidiStreamingServer[emrv1.BroadcastTxsRequest, emrv1.BroadcastTxsResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := stream.Send(&emrv1.BroadcastTxsResponse{Outcome: &emrv1.BroadcastTxsResponse_Result{
			Result: &emrv1.BroadcastTxResponse{Log: string(rune('0' + len(req.Tx)))}}}); err != nil {
			return err
		}
	}
}

// TestGRPCDecodeInHandler: with the node's codec and registration
// (grpc_decode.go), a malformed request to a stream is INVALID_ARGUMENT
// too, well-formed ones are decoded as before, a unary interceptor sees
// the decoded request, and the services registered as usual (health)
// still work.
func TestGRPCDecodeInHandler(t *testing.T) {
	var intercepted any
	srv := grpc.NewServer(append(grpcServerOptions(4<<20), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			intercepted = req
			return h(ctx, req)
		}))...)
	registerAPIServices(srv, nil, echoTxService{})
	hs := healthpb.NewServer()
	healthgrpc.RegisterHealthServer(srv, hs)
	conn := serveGRPC(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	txs := emrv1.NewTxServiceClient(conn)
	resp, err := txs.BroadcastTx(ctx, &emrv1.BroadcastTxRequest{Tx: []byte("abc")})
	if err != nil || resp.Log != "3" {
		t.Fatalf("BroadcastTx: %v %v", resp, err)
	}
	if r, ok := intercepted.(*emrv1.BroadcastTxRequest); !ok || string(r.Tx) != "abc" {
		t.Fatalf("the interceptor saw %T %v, want the decoded request", intercepted, intercepted)
	}
	var out []byte
	in := []byte{0x0a, 0x40, 0x41} // tx: 64 bytes announced, 1 sent
	if err := conn.Invoke(ctx, emrv1.TxService_BroadcastTx_FullMethodName, &in, &out, grpc.ForceCodec(reviewRawCodec{})); grpcstatus.Code(err) != codes.InvalidArgument {
		t.Errorf("BroadcastTx, truncated: %v; want INVALID_ARGUMENT", err)
	}

	// A stream: one good request answered, then a malformed one ends it.
	stream, err := conn.NewStream(ctx, &emrv1.TxService_ServiceDesc.Streams[0], emrv1.TxService_BroadcastTxs_FullMethodName, grpc.ForceCodec(reviewRawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	good := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("ab"))
	if err := stream.SendMsg(&good); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := stream.RecvMsg(&got); err != nil {
		t.Fatalf("BroadcastTxs, a good request: %v", err)
	}
	bad := []byte{0xff, 0xff, 0xff}
	if err := stream.SendMsg(&bad); err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(&got); grpcstatus.Code(err) != codes.InvalidArgument {
		t.Errorf("BroadcastTxs, malformed: %v; want INVALID_ARGUMENT", err)
	}

	if r, err := healthgrpc.NewHealthClient(conn).Check(ctx, &healthgrpc.HealthCheckRequest{}); err != nil || r.Status != healthgrpc.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v", r, err)
	}
}
