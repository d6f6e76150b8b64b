// Command emrcli is emrchain's client: keys (encrypted at rest), patient
// enrollment, consents (grant, revoke with key rotation and re-wrapping of
// record keys), encrypted upload and verified download of records through
// the blob sidecars (upload, download), research sharing with Safe Harbor
// de-identification (share, download --share), logged reads, break-glass
// reads and their logs (download --purpose emergency, audit,
// break-glass-log, emergency-reads), the registrars' work (member, study,
// and the consortium's proposals: propose, approve, withdraw, proposals),
// and queries whose every answer is verified by the CometBFT light client
// and the state proofs (package client; the transfer pipelines are
// described in client/blob.go). Run "emrcli --help".
//
// The command line is the interface scripts use: --json on every command,
// exit code 0 on success, 1 on failure, 2 on a wrong command line, and on
// failure one line on stderr, "Error: <reason>", with the chain's own
// message when the chain refused (e.g. "record 1: permission revoked at
// height 42").
package main
