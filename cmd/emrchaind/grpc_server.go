package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
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
	// grpcMaxHeaderListBytes bounds a call's decoded request headers.
	// grpc-go's default, 16 MiB a stream, let a client without a key hold
	// hundreds of MB of a node's memory: HPACK repeats a header entry for
	// one byte on the wire, and grpc-go decodes each repeat anew. The API
	// needs a few standard headers and x-emrchain-height.
	grpcMaxHeaderListBytes = 16 << 10
)

// grpcServerOptions are the server's limits: messages up to maxMsg bytes,
// request headers up to grpcMaxHeaderListBytes, and the connection limits
// above; and its codec, which lets the emrchain
// services decode their own requests (grpc_decode.go).
func grpcServerOptions(maxMsg int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.MaxRecvMsgSize(maxMsg),
		grpc.MaxConcurrentStreams(grpcMaxConcurrentStreams),
		grpc.MaxHeaderListSize(grpcMaxHeaderListBytes),
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
	registerAPIServices(srv, queries, txs)
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
// chain), holds no committed state yet, or its latest block is older than
// [grpc] max_head_age (servingStatus). A load balancer then sends clients
// elsewhere. health is the node's health now; a change of status or of
// its cause is logged with the reason, since the health service itself
// tells a client no reason (a node that has caught up on a chain that has
// stopped goes from one NOT_SERVING to another).
func (s *grpcService) watchHealth(health func() nodeHealth) {
	var last nodeHealth
	set := func() {
		h := health()
		for _, name := range []string{"", emrv1.Query_ServiceDesc.ServiceName, emrv1.TxService_ServiceDesc.ServiceName} {
			s.health.SetServingStatus(name, h.status)
		}
		if h.status != last.status || h.cause != last.cause {
			last = h
			if h.status == healthpb.HealthCheckResponse_SERVING {
				s.logger.Info("health: SERVING", "height", h.head.height)
			} else {
				s.logger.Info("health: NOT_SERVING", "reason", h.reason)
			}
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

// nodeHead is what the health answers are made of: whether the node is
// catching up (block- or state-syncing: its reads lag the chain), its last
// committed height and the time of that block (zero when unknown).
type nodeHead struct {
	catchingUp bool
	height     int64
	time       time.Time
}

// nodeHealth is the health of a node: its head, and SERVING or
// NOT_SERVING with the reason.
type nodeHealth struct {
	head   nodeHead
	status healthpb.HealthCheckResponse_ServingStatus
	cause  healthCause
	reason string // empty while SERVING
}

// healthCause is why a node is NOT_SERVING; reasons hold ages and heights,
// which change with every look.
type healthCause int

const (
	causeNone healthCause = iota
	causeCatchingUp
	causeNoState
	causeNoBlockTime
	causeStaleHead
)

// servingStatus is the health of a node at head, by the node's clock (now):
// SERVING only while it is not catching up, holds committed state and its
// latest block is at most maxAge old (0: no bound). A node cut off from the
// other validators, or on a chain that lost its quorum, says nothing of it
// itself (it is not catching up, it just sees no new blocks) and would
// otherwise keep answering reads from a frozen state as a healthy node.
func servingStatus(head nodeHead, now time.Time, maxAge time.Duration) nodeHealth {
	h := nodeHealth{head: head, status: healthpb.HealthCheckResponse_NOT_SERVING}
	switch age := now.Sub(head.time); {
	case head.catchingUp:
		h.cause, h.reason = causeCatchingUp, fmt.Sprintf("the node is catching up (block- or state-syncing), at height %d", head.height)
	case head.height < 1:
		h.cause, h.reason = causeNoState, "the node holds no committed state yet"
	case maxAge > 0 && head.time.IsZero():
		h.cause, h.reason = causeNoBlockTime, fmt.Sprintf("the time of the node's latest block (height %d) is unknown, so its age cannot be checked against max_head_age %s", head.height, maxAge)
	case maxAge > 0 && age > maxAge:
		h.cause, h.reason = causeStaleHead, fmt.Sprintf("the node's latest block (height %d, %s) is %s old, more than max_head_age %s: the node may be cut off from the other validators, or the chain may have lost its quorum",
			head.height, head.time.UTC().Format(time.RFC3339), age.Round(time.Millisecond), maxAge)
	default:
		h.status = healthpb.HealthCheckResponse_SERVING
	}
	return h
}

// checkHealthHeadAge refuses a [grpc] max_head_age that an idle chain's
// head would pass, as checkHeadAge does the sidecar's: the health answers
// would say NOT_SERVING whenever the chain is quiet, and a load balancer
// would send clients away from every node at once.
func checkHealthHeadAge(c grpcConfig, consensus *cmtcfg.ConsensusConfig) error {
	return checkIdleHeadAge("grpc.max_head_age", c.MaxHeadAge, "grpc.health.v1 and REST's /healthz would say NOT_SERVING whenever the chain is quiet", consensus)
}
