// Package scenario holds emrchain's stories as code: each one is written
// once against a Transport and runs unchanged in-process (over
// app/apptest, block by block without consensus) and over real validators
// (over the client library and CometBFT RPC). A rule that holds in one and
// not the other is a bug in the adapter, the node or the client.
package scenario
