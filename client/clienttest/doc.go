// Package clienttest runs real emrchaind nodes for the tests of the client
// library and of emrcli: it builds binaries once per test process, inits
// single-validator homes on free loopback ports, starts the nodes and kills
// them in t.Cleanup; it starts a MinIO server for the blob tests
// (StartMinIO); and it offers Proxy, a JSON-RPC man in the middle
// that tests use to play a lying full node. It runs the node as a separate
// process (clients never link the node).
package clienttest
