package main

import (
	"context"
	"errors"
	"time"

	"github.com/cometbft/cometbft/libs/log"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// grpcMsgMargin is what a BroadcastTxRequest may carry beyond the tx itself.
const grpcMsgMargin = 64 << 10

// Connection limits of the gRPC server. grpc-go's defaults allow any
// number of connections, unlimited concurrent streams per connection, two
// minutes to finish a handshake and idle connections forever; every
// connection holds a file descriptor, which consensus shares (a node out
// of them crashes writing its WAL). (Its default ping policy stays: a
// client pinging more than once in five minutes is disconnected.)
const (
	grpcMaxConnections       = 512              // served at once; more wait in the listen queue
	grpcMaxConcurrentStreams = 100              // per connection; more wait for a free one
	grpcHandshakeTimeout     = 10 * time.Second // to complete the HTTP/2 handshake
	grpcMaxConnectionIdle    = 2 * time.Minute  // a connection without calls is closed (GOAWAY)
	// A connection is told to go after grpcMaxConnectionAge and closed
	// grpcMaxConnectionAgeGrace later, whatever it does: an idle stream
	// (BroadcastTxs) keeps its connection from counting as idle.
	grpcMaxConnectionAge      = 30 * time.Minute
	grpcMaxConnectionAgeGrace = time.Minute
)

// grpcServerOptions are the server's limits: messages up to maxMsg bytes,
// and the connection limits above.
func grpcServerOptions(maxMsg int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsg),
		grpc.MaxConcurrentStreams(grpcMaxConcurrentStreams),
		grpc.ConnectionTimeout(grpcHandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: grpcMaxConnectionIdle,
			MaxConnectionAge: grpcMaxConnectionAge, MaxConnectionAgeGrace: grpcMaxConnectionAgeGrace}),
	}
}

// grpcService is the gRPC server: emrchain.v1.Query, emrchain.v1.TxService,
// server reflection (grpcurl, grpc_cli) and grpc.health.v1.
type grpcService struct {
	srv        *grpc.Server
	health     *health.Server
	stopHealth chan struct{} // ends watchHealth
	txs        *txServer
	addr       string
	done       chan error
	logger     log.Logger
}

// startGRPC serves on [grpc] address (taken by listenServices) in the
// background.
func startGRPC(env serviceEnv, queries *queryServer, txs *txServer) (*grpcService, error) {
	lis := netutil.LimitListener(take(&env.listeners.grpc), grpcMaxConnections)
	srv := grpc.NewServer(grpcServerOptions(txs.maxMessageBytes())...)
	emrv1.RegisterQueryServer(srv, queries)
	emrv1.RegisterTxServiceServer(srv, txs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)

	s := &grpcService{
		srv: srv, health: hs, stopHealth: make(chan struct{}), txs: txs, addr: lis.Addr().String(),
		done: make(chan error, 1), logger: env.logger.With("module", "grpc"),
	}
	s.watchHealth(env.nodeHealth)
	go func() { s.done <- srv.Serve(lis) }()
	s.logger.Info("gRPC server listening", "address", s.addr)
	return s, nil
}

// Name implements service.
func (s *grpcService) Name() string { return "grpc" }

// Stop ends waiting broadcasts, then stops gracefully: in-flight calls
// finish unless ctx ends first, when the rest are cut off.
func (s *grpcService) Stop(ctx context.Context) error {
	close(s.stopHealth)
	s.health.Shutdown()
	s.txs.close()
	stopped := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.srv.Stop()
		<-stopped
	}
	if err := <-s.done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	s.logger.Info("gRPC server stopped", "address", s.addr)
	return nil
}

// healthPoll is how often watchHealth looks at the node.
const healthPoll = time.Second

// watchHealth keeps grpc.health.v1's status (the server's, "", and each
// service's) SERVING only while the node answers from a state that keeps
// up: NOT_SERVING while it block- or state-syncs (its reads lag the
// chain) or holds no committed state yet. A load balancer then sends
// clients elsewhere. node reports whether the node is catching up and its
// last committed height.
func (s *grpcService) watchHealth(node func() (catchingUp bool, height int64)) {
	set := func() {
		status := servingStatus(node())
		for _, name := range []string{"", emrv1.Query_ServiceDesc.ServiceName, emrv1.TxService_ServiceDesc.ServiceName} {
			s.health.SetServingStatus(name, status)
		}
	}
	set()
	go func() {
		tick := time.NewTicker(healthPoll)
		defer tick.Stop()
		for {
			select {
			case <-s.stopHealth:
				return
			case <-tick.C:
				set()
			}
		}
	}()
}

// servingStatus is the health of a node catching up or not, at height.
func servingStatus(catchingUp bool, height int64) healthpb.HealthCheckResponse_ServingStatus {
	if catchingUp || height < 1 {
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	return healthpb.HealthCheckResponse_SERVING
}
