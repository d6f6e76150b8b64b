// Package testnet runs an emrchain consortium on one machine — N validator
// processes on loopback, each with its gRPC, REST and blob sidecar servers —
// and holds the end-to-end and fault tests that run against it.
//
// # Harness
//
// Start builds emrchaind once per test binary (or takes $EMRCHAIND_BIN),
// writes a testnet with `emrchaind testnet` into t.TempDir() on a block of
// free ports below the kernel's ephemeral range, starts every validator as a
// process (`emrchaind start --home ...`, output in DIR/logs/nodeI.runK.log)
// and waits for the first blocks. The returned Net stops (SIGTERM), kills
// (SIGKILL) and restarts single nodes, reports heights and app hashes over
// each node's CometBFT RPC, and compares the nodes block by block
// (CheckAgreement: block hash, app hash and results hash at every common
// height). Every process is killed in t.Cleanup, also when a test fails;
// the tail of every log is printed then.
//
// With Options.Blob "minio" the harness also runs one MinIO server (the
// binary offchain/blobstore/miniotest finds; the test is skipped without
// it) that all sidecars share, and can kill and restart it (KillStorage,
// StartStorage).
//
// # Partitions
//
// Cutting a validator off needs no network namespace or firewall: Isolate
// restarts the node with no persistent peers, an empty address book and its
// P2P listener moved to a spare port of its block. Its peers keep dialling
// the old port and find nothing; it knows no one to dial. It runs on, alone
// with a quarter of the voting power, unable to commit. Heal restarts it
// with its configuration as written, so it rejoins through block sync. This
// is a partition of one node from all others, not an arbitrary split of the
// network, and the cut node is restarted on the way in and out (so it
// catches up by block sync, not by consensus gossip): the fault tests need
// no more.
//
// # Load
//
// Submit broadcasts a transaction with broadcast_tx_sync to a running node
// whose application has every block this process saw a transaction
// committed in (so CheckTx sees the writes the transaction builds on), and
// counts it committed only once a node's tx index returns it; one lost with
// a killed node's mempool is broadcast again to another node. Load drives
// the consortium's clinical flow with it — registrars (from the testnet's
// dev keys, see LoadKey) register clinicians, patients enroll and grant,
// clinicians add records and log their reads — with apptest actors, one
// transaction in flight per signer; Load.Verify then looks every
// transaction it saw committed up by hash on every node (in the node's
// block at that height when its tx index lacks it: CometBFT indexes a
// block after committing it and not again after a crash in between).
//
// Workload is the randomized valid/invalid mix of app's determinism test,
// bounded and adapted to a real mempool (one transaction per signer per
// round, all of a round broadcast at once so conflicting ones reach
// different mempools; garbage and forged transactions included).
//
// Transport runs the stories of package scenario on a Net, the same stories
// the in-process chain runs.
//
// # Tests and scripts
//
// The tests here (skipped under -short) kill, stop, isolate and restart
// validators under load, run the randomized workload, the care flow, a
// lying node in front of a verified client, the death of the sidecars'
// object store, the storage services' copies of every blob, a node joining
// by state sync and a fifth validator joining by proposal. localnet.sh
// (make localnet, make localnet-stop) runs a testnet in the background for
// people; demo.sh (make demo) plays the emrcli story across two hospitals
// on it.
package testnet
