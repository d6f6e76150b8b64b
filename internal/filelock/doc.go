// Package filelock is the one lock emrcli runs of one home take to keep
// out of each other's way: an exclusive flock on a lock file, waited for
// as long as a context lets. The keyring takes one per key it saves; the
// client takes one on its light store for the moment of each light-client
// operation (a verification), so two runs of one home work at once and
// wait, at most, for one verification of the other.
//
// The lock is the kernel's (flock(2)): it belongs to the open file, so two
// Locks of one path exclude each other within a process too, and it goes
// with the process when that dies, however it dies: a crashed run leaves
// no lock behind, only the (empty) lock file. The wait polls (LOCK_NB,
// then a short sleep that doubles: ctxtime.Retry) rather than
// blocking in the kernel, because a blocking flock cannot be given up
// when the context ends. On Windows the lock is LockFileEx's on the lock
// file's first byte, which also belongs to the open handle and goes with
// the process. Where neither is at hand (AIX, and systems that are neither
// unix nor Windows) Lock does nothing.
package filelock
