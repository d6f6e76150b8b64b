// Command emrchaind is the emrchain node: a CometBFT v1 consensus engine and
// the emrchain state machine in one process.
//
//	emrchaind init  --home DIR --chain-id ID   write config, keys and genesis
//	emrchaind start --home DIR                 run the node until SIGINT/SIGTERM
//	emrchaind version                          print versions
//
// The home directory follows CometBFT's layout, plus two emrchain files:
//
//	config/config.toml              CometBFT node configuration
//	config/app.toml                 emrchain store and app settings
//	config/genesis.json             app_state = protojson of emrchainv1.GenesisState
//	config/node_key.json            P2P identity
//	config/priv_validator_key.json  validator signing key
//	data/                           CometBFT block store, state store, WAL
//	data/priv_validator_state.json  double-sign protection
//	data/app.db/                    the application's IAVL store
//	dev-keys/NAME.json              development member keys written by init
//
// start runs CometBFT in-process over a local ABCI client (package abci). The
// app persists only in Commit and reports its last commit in Info, so a crash
// or kill at any moment is recovered by CometBFT's handshake on the next
// start, which replays the missing blocks.
package main
