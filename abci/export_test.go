package abci

// BeforeSnapshotWrite has fn called, with its height, before each snapshot
// a is about to write; set it before the first block.
func BeforeSnapshotWrite(a *Application, fn func(height int64)) { a.snaps.beforeWrite = fn }

// SnapshotsFault reports whether a restore that failed for err failed for
// the snapshot (see failRestore).
var SnapshotsFault = snapshotsFault
