// Command emrchaind is the emrchain node: a CometBFT v1 consensus engine and
// the emrchain state machine in one process.
//
//	emrchaind init  --home DIR --chain-id ID   write config, keys and genesis
//	emrchaind start --home DIR                 run the node (and its gRPC, REST and blob sidecar servers) until SIGINT/SIGTERM
//	emrchaind sidecar --home DIR               run the blob sidecar alone, beside a node (sidecar.go)
//	emrchaind testnet --output DIR             write an N-validator consortium on 127.0.0.1 (testnet.go)
//	emrchaind load --testnet DIR               load it with signed txs and measure commits (load.go, package testnet/load)
//	emrchaind show node-id|validator --home DIR print the node id, the genesis validator entry or (--possession) its proof of possession (show.go)
//	emrchaind version                          print versions
//
// The home directory follows CometBFT's layout, plus emrchain's own files:
//
//	config/config.toml              CometBFT node configuration
//	config/app.toml                 emrchain store and app settings, [grpc], [api] and [sidecar] servers
//	config/genesis.json             app_state = protojson of emrchainv1.GenesisState
//	config/node_key.json            P2P identity
//	config/priv_validator_key.json  validator signing key
//	data/                           CometBFT block store, state store, WAL
//	data/priv_validator_state.json  double-sign protection
//	data/emrchaind.lock             held by a running start: one node per home
//	data/app.db/                    the application's IAVL store
//	data/snapshots/                 state-sync snapshots this node serves
//	data/blobs/                     the sidecar's filesystem blob store (when [sidecar] backend = "fs")
//	data/sidecar-refs/              the sidecar's reference index (which blobs the chain references)
//	dev-keys/NAME.json              development member keys written by init
//	storage-keyring/                the sidecar's storage service key, in a testnet home (testnet --replicate)
//
// Beside the node, start serves the emrchain.v1.Query and emrchain.v1.TxService
// gRPC services (grpc_server.go, default 127.0.0.1:9090) and the same routes
// over REST through grpc-gateway (rest_server.go, default 127.0.0.1:1317, the
// OpenAPI document at /openapi.json, the node's health at /healthz). Both run the same queryServer and
// txServer: a query can be pinned to a height with x-emrchain-height
// (metadata, header or ?height=), app errors become gRPC status codes
// (grpc_codes.go) and, over REST, JSON {"code", "status", "message"} with the
// matching HTTP status. CometBFT's RPC (config.toml [rpc] laddr) is served by
// start too, with CometBFT's routes (rpc_server.go), so that it and REST both
// refuse a Host outside [app] allowed_hosts (http_hosts.go, DNS rebinding)
// and the RPC's WebSocket refuses browsers from origins not listed.
//
// start runs CometBFT in-process over a local ABCI client (package abci). The
// app persists only in Commit and reports its last commit in Info, so a crash
// or kill at any moment is recovered by CometBFT's handshake on the next
// start, which replays the missing blocks.
package main
