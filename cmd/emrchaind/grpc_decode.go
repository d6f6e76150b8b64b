package main

import (
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// A request the server cannot decode (not protobuf, truncated, a string
// field that is not UTF-8) is the caller's mistake: INVALID_ARGUMENT, as
// REST answers it (400). grpc-go decodes a request inside the stream's
// RecvMsg, before the method's handler runs, and answers a failure there
// INTERNAL ("grpc: failed to unmarshal the received message"), writing
// that status itself: neither the handler nor an interceptor can change
// the code afterwards, and a codec's own error is replaced by INTERNAL.
//
// So the emrchain services decode their requests themselves: their
// ServiceDescs (decodeInHandler) ask RecvMsg for the request's bytes
// (undecodedRequest, which the server's codec, requestCodec, fills without
// decoding) and unmarshal them with protobuf's own rules, answering
// INVALID_ARGUMENT when that fails. Every other service (health,
// reflection) sees no difference, and unary interceptors see the decoded
// request. Stream interceptors that wrap RecvMsg, and stats handlers (an
// InPayload's Payload, unary calls' too), see an *undecodedRequest: the
// node registers neither; whoever adds one must decode the bytes itself,
// or move the stream decoding into a first stream interceptor. Each
// request is copied once more than grpc's own codec does (Materialize):
// for a 64 KiB transaction, 35 µs and 64 KiB more (a reviewer's
// benchmark); for the load's few hundred bytes, an allocation of their
// size.

// undecodedRequest receives a request's bytes from requestCodec.
type undecodedRequest struct{ data []byte }

// requestCodec is the server's codec (grpcServerOptions): grpc-go's proto
// codec, except that an undecodedRequest receives the request's bytes.
type requestCodec struct{ encoding.CodecV2 }

func newRequestCodec() requestCodec {
	return requestCodec{encoding.GetCodecV2(protoenc.Name)}
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if u, ok := v.(*undecodedRequest); ok {
		u.data = data.Materialize()
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// registerAPIServices registers emrchain.v1.Query and emrchain.v1.TxService
// on srv (made with grpcServerOptions), each decoding its requests itself.
func registerAPIServices(srv *grpc.Server, queries emrv1.QueryServer, txs emrv1.TxServiceServer) {
	if queries != nil {
		srv.RegisterService(decodeInHandler(&emrv1.Query_ServiceDesc), queries)
	}
	if txs != nil {
		srv.RegisterService(decodeInHandler(&emrv1.TxService_ServiceDesc), txs)
	}
}

// decodeInHandler is a copy of sd whose methods and streams decode their
// requests with decodeRequest.
func decodeInHandler(sd *grpc.ServiceDesc) *grpc.ServiceDesc {
	out := *sd
	out.Methods = slices.Clone(sd.Methods)
	for i := range out.Methods {
		handler := out.Methods[i].Handler
		out.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			return handler(srv, ctx, func(m any) error { return decodeRequest(dec, m) }, interceptor)
		}
	}
	out.Streams = slices.Clone(sd.Streams)
	for i := range out.Streams {
		handler := out.Streams[i].Handler
		out.Streams[i].Handler = func(srv any, stream grpc.ServerStream) error {
			return handler(srv, decodingStream{stream})
		}
	}
	return &out
}

// decodingStream is a server stream whose requests decodeRequest decodes.
type decodingStream struct{ grpc.ServerStream }

func (s decodingStream) RecvMsg(m any) error { return decodeRequest(s.ServerStream.RecvMsg, m) }

// decodeRequest receives one request into m with recv (a stream's
// RecvMsg): its bytes, then protobuf decoding, whose failure is
// INVALID_ARGUMENT. Errors of recv itself (the end of the stream, a
// message above the size limit, a cancelled call) are returned as they
// are.
func decodeRequest(recv func(any) error, m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return recv(m)
	}
	var req undecodedRequest
	if err := recv(&req); err != nil {
		return err
	}
	if err := proto.Unmarshal(req.data, msg); err != nil {
		return grpcstatus.Errorf(codes.InvalidArgument, "malformed request: %v", err)
	}
	return nil
}
