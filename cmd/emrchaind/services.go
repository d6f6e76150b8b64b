package main

import (
	"context"

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
// ABCI adapter (abci.Application.Query), which serialises them with
// consensus, or through the node's RPC — never through the store directly.
type serviceEnv struct {
	home   string
	config *cmtcfg.Config
	node   *node.Node
	abci   *abci.Application
	app    *app.App
	logger log.Logger
}

// startServices is the hook where start brings up the services that run
// beside the node, after the node has started:
//
//   - the gRPC Query/Tx server (9090) and the grpc-gateway REST server (1317)
//     with the OpenAPI document from proto/;
//   - the blob sidecar (HTTP) that moves ciphertext to and from the object store.
//
// They arrive in later issues; each will append itself here, configured from
// app.toml. Today no service runs besides the node.
func startServices(_ context.Context, _ serviceEnv) ([]service, error) {
	return nil, nil
}
