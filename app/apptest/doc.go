// Package apptest drives emrchain's state machine without consensus: a
// Chain executes blocks (ProcessProposal, FinalizeBlock, Commit) at times
// the test chooses, and Actors sign transactions with deterministic keys.
// It is the in-process transport of the shared scenario (package
// scenario) and the harness of the app tests and benchmarks.
package apptest
