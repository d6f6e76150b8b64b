package sidecar

import (
	"context"
	"sync"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// keyLocks serialises, blob by blob, an upload with the sweep's last check
// and delete. An upload of a blob already stored refreshes its age (it is
// about to be referenced: a client retrying AddRecord uploads first), so a
// sweep that read the old age must not delete the blob after the upload was
// acknowledged: under the lock, the sweep either deletes before the upload
// starts (which then stores the blob anew) or sees the refreshed age. The
// locks are this process's: one sidecar per store.
//
// An upload holds its blob's lock while the store reads the body, which a
// client may send slowly; the sweep therefore never waits for a lock
// (tryLock): it passes over a blob being uploaded, whose age the upload
// refreshes anyway, and sees it again at a later pass.
type keyLocks struct {
	mu   sync.Mutex
	held map[blobstore.Key]*keyLock
}

// keyLock is a mutex as a channel of one slot, so that a wait for it can
// end with a context.
type keyLock struct {
	slot  chan struct{}
	users int // holders and waiters; the entry goes when it drops to 0
}

// entry is key's lock, counted as used by one more holder or waiter.
func (l *keyLocks) entry(key blobstore.Key) *keyLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = make(map[blobstore.Key]*keyLock)
	}
	k := l.held[key]
	if k == nil {
		k = &keyLock{slot: make(chan struct{}, 1)}
		l.held[key] = k
	}
	k.users++
	return k
}

// release drops one user of key's lock k.
func (l *keyLocks) release(key blobstore.Key, k *keyLock) {
	l.mu.Lock()
	if k.users--; k.users == 0 {
		delete(l.held, key)
	}
	l.mu.Unlock()
}

// lockCtx locks key and returns its unlock, or gives up with ctx's error
// when ctx ends first (a member who hung up does not keep a request
// waiting for a blob's lock).
func (l *keyLocks) lockCtx(ctx context.Context, key blobstore.Key) (unlock func(), err error) {
	k := l.entry(key)
	select {
	case k.slot <- struct{}{}:
		return l.unlocker(key, k), nil
	case <-ctx.Done():
		l.release(key, k)
		return nil, ctx.Err()
	}
}

// tryLock locks key if no one holds it, and returns its unlock; ok is false
// (and nothing locked) if someone does.
func (l *keyLocks) tryLock(key blobstore.Key) (unlock func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key] != nil { // held, or waited for
		return nil, false
	}
	if l.held == nil {
		l.held = make(map[blobstore.Key]*keyLock)
	}
	k := &keyLock{slot: make(chan struct{}, 1), users: 1}
	k.slot <- struct{}{}
	l.held[key] = k
	return l.unlocker(key, k), true
}

// unlocker is the unlock of k, held for key: the entry goes with its last
// user.
func (l *keyLocks) unlocker(key blobstore.Key, k *keyLock) func() {
	return func() {
		<-k.slot
		l.release(key, k)
	}
}
