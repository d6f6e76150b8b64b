package sidecar

import (
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

type keyLock struct {
	sync.Mutex
	users int // holders and waiters; the entry goes when it drops to 0
}

// lock locks key and returns its unlock.
func (l *keyLocks) lock(key blobstore.Key) (unlock func()) {
	l.mu.Lock()
	if l.held == nil {
		l.held = make(map[blobstore.Key]*keyLock)
	}
	k := l.held[key]
	if k == nil {
		k = &keyLock{}
		l.held[key] = k
	}
	k.users++
	l.mu.Unlock()
	k.Lock()
	return l.unlocker(key, k)
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
	k := &keyLock{users: 1}
	k.Lock()
	l.held[key] = k
	return l.unlocker(key, k), true
}

// unlocker is the unlock of k, held for key: the entry goes with its last
// user.
func (l *keyLocks) unlocker(key blobstore.Key, k *keyLock) func() {
	return func() {
		k.Unlock()
		l.mu.Lock()
		if k.users--; k.users == 0 {
			delete(l.held, key)
		}
		l.mu.Unlock()
	}
}
