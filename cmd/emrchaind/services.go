package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/node"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
)

// service is something start runs beside the CometBFT node, such as the gRPC
// server, the REST gateway or the blob sidecar. start stops services in the
// reverse order of their start, before it stops the node.
type service interface {
	// Name is used in log lines.
	Name() string
	// Stop shuts the service down, giving up when ctx ends. It is called
	// once (stopServices), and a second call need not return.
	Stop(ctx context.Context) error
}

// nodeHealth is the node's health now, for the services' health answers
// (grpc.health.v1 and REST's /healthz): its head by this machine's clock
// against [grpc] max_head_age.
func (env serviceEnv) nodeHealth() nodeHealth {
	return servingStatus(env.nodeHead(), time.Now(), env.appConfig.GRPC.MaxHeadAge)
}

// nodeHead reads whether the node is catching up (block- or state-syncing:
// its reads lag the chain), its last committed height (the state reads
// are answered from) and that block's time, from the block store, which
// holds every block the app has committed beyond a state-sync snapshot.
func (env serviceEnv) nodeHead() nodeHead {
	h, _ := env.app.LastCommit()
	head := nodeHead{catchingUp: env.node.ConsensusReactor().WaitSync(), height: h}
	if h > 0 {
		if meta := env.node.BlockStore().LoadBlockMeta(h); meta != nil {
			head.time = meta.Header.Time
		}
	}
	return head
}

// serviceEnv is what a service may build on. Services read state through the
// ABCI adapter (abci.Application.Query, committed versions beside a block in
// progress), through app.QueryService (App.Query over committed versions
// only, the same code as ABCI queries) or through the node's RPC — never
// through the store directly.
type serviceEnv struct {
	home      string
	config    *cmtcfg.Config
	appConfig appConfig
	node      *node.Node
	abci      *abci.Application
	app       *app.App
	logger    log.Logger
	listeners *serviceListeners
}

// serviceListeners hold the addresses of start's servers, taken before the
// node starts (listenServices): a port in use then stops start before the
// node joins consensus, rather than after it has signed blocks. Each
// server takes its listener (take); close closes those never taken.
type serviceListeners struct {
	grpc, api, sidecar net.Listener
	// rpc is CometBFT's RPC (rpcService), taken later than the others
	// (runNode): once the node has replayed its blocks, just before it
	// starts, as CometBFT itself takes it.
	rpc []rpcListener
}

// listenServices listens on every enabled server's address but the RPC's.
func listenServices(c appConfig) (_ *serviceListeners, err error) {
	l := &serviceListeners{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	for _, s := range []struct {
		enable     bool
		addr, what string
		dst        *net.Listener
	}{
		{c.GRPC.Enable, c.GRPC.Address, "grpc server: listen on %s ([grpc] address in app.toml or --grpc.address): %w", &l.grpc},
		{c.API.Enable, c.API.Address, "rest server: listen on %s ([api] address in app.toml or --api.address): %w", &l.api},
		{c.Sidecar.Enable, c.Sidecar.Listen, "sidecar: listen on %s ([sidecar] listen in app.toml or --sidecar.listen): %w", &l.sidecar},
	} {
		if !s.enable {
			continue
		}
		if *s.dst, err = net.Listen("tcp", s.addr); err != nil {
			return nil, fmt.Errorf(s.what, s.addr, err)
		}
	}
	return l, nil
}

// take hands *ln over to its server.
func take(ln *net.Listener) net.Listener {
	l := *ln
	*ln = nil
	return l
}

func (l *serviceListeners) close() {
	for _, ln := range []*net.Listener{&l.grpc, &l.api, &l.sidecar} {
		if *ln != nil {
			_ = take(ln).Close()
		}
	}
	for _, ln := range l.rpc {
		_ = ln.Close()
	}
	l.rpc = nil
}

// startServices is the hook where start brings up the services that run
// beside the node, after the node has started, in this order:
//
//   - CometBFT's RPC (config.toml [rpc] laddr), served by rpcService rather
//     than by the node, so that it checks Host and WebSocket Origin;
//   - the gRPC server (app.toml [grpc]): emrchain.v1.Query, emrchain.v1.TxService,
//     reflection and health, on 127.0.0.1:9090 by default;
//   - the REST gateway (app.toml [api]): every Query and TxService route of the
//     protos and /openapi.json, on 127.0.0.1:1317 by default;
//   - the blob sidecar (app.toml [sidecar]), whose blob store being out of
//     reach never stops start (see sidecarService).
//
// Both API servers share one
// txServer, so a broadcast waits the same way whichever door it came in by.
// ctx ends when start is asked to stop; if a service fails to start, the
// ones already started are stopped and the error says which one failed.
func startServices(ctx context.Context, env serviceEnv) (_ []service, err error) {
	txs, err := newTxServer(ctx, env)
	if err != nil {
		return nil, err
	}
	var started []service
	defer func() {
		if err != nil {
			stopServices(env.logger, started)
		}
		if err != nil || !(env.appConfig.GRPC.Enable || env.appConfig.API.Enable) {
			txs.close() // else the API servers close it when they stop
		}
	}()
	if rpc := env.listeners.rpc; len(rpc) > 0 {
		s, err := startRPCService(env.node, env.config.RPC, rpc, newHostFilter(env.appConfig.App.AllowedHosts), env.logger)
		if err != nil {
			return nil, err // start's listeners.close closes them
		}
		env.listeners.rpc = nil // the service's now
		started = append(started, s)
	}
	queries := newQueryServer(env)
	if env.appConfig.GRPC.Enable {
		s, err := startGRPC(env, queries, txs)
		if err != nil {
			return nil, err
		}
		started = append(started, s)
	}
	if env.appConfig.API.Enable {
		s, err := startREST(env, queries, txs)
		if err != nil {
			return nil, err
		}
		started = append(started, s)
	}
	sc, err := startSidecarService(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	if sc != nil {
		started = append(started, sc)
	}
	return started, nil
}

// stopServices stops services in the reverse order of their start.
func stopServices(logger log.Logger, services []service) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	for i := len(services) - 1; i >= 0; i-- {
		if err := services[i].Stop(ctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("stopping service", "service", services[i].Name(), "err", err)
		}
	}
}
