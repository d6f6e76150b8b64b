package main

import (
	"context"
	"errors"
	"fmt"

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
	// Stop shuts the service down, giving up when ctx ends.
	Stop(ctx context.Context) error
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
}

// startServices is the hook where start brings up the services that run
// beside the node, after the node has started, in this order:
//
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
		if err != nil || len(started) == 0 {
			txs.close()
		}
	}()
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
