package sidecar

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// errDamagedCopy: the stored bytes of a blob do not hash to its SHA-256.
var errDamagedCopy = errors.New("the stored copy is damaged: its bytes do not hash to the blob's SHA-256")

// copyVerified copies a whole blob from r to w, hashing as it goes, and
// holds the last chunk back until r is at its end: it sends that chunk
// only if everything read hashes to want. On a mismatch it returns
// errDamagedCopy with the chunk unsent, so the reader's transfer is cut
// short (the response announced the full length) rather than complete
// with damaged bytes. buf is split in two: the chunk held and the next.
func copyVerified(w io.Writer, r io.Reader, want blobstore.Sum, buf []byte) (sent int64, err error) {
	h := sha256.New()
	half := len(buf) / 2
	held, next := buf[:half:half], buf[half:]
	n, rerr := io.ReadFull(r, held)
	held = held[:n]
	for rerr == nil {
		var m int
		m, rerr = io.ReadFull(r, next[:cap(next)])
		if m == 0 {
			break
		}
		h.Write(held)
		k, werr := w.Write(held)
		sent += int64(k)
		if werr != nil {
			return sent, werr
		}
		held, next = next[:m], held
	}
	if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
		return sent, rerr
	}
	h.Write(held)
	if blobstore.Sum(h.Sum(nil)) != want {
		return sent, errDamagedCopy
	}
	k, werr := w.Write(held)
	return sent + int64(k), werr
}

// dropDamagedCopy deletes the stored copy of key that was read as served
// (whose bytes did not hash to key.Sum; served is what Stat said before
// the read), so that the next GET reads the blob through from a peer, and
// an upload stores it anew. It deletes only that copy: locked against
// uploads of the blob, and only if the store still holds a copy of the
// same size and age (nothing replaces a copy of the right size in place,
// so a different one was written after a delete). dropped is false if it
// found another copy, or none; errBlobBusy if an upload holds the lock
// (the next GET, or scrub, finds the copy again).
func (s *Server) dropDamagedCopy(ctx context.Context, key blobstore.Key, served blobstore.Info) (dropped bool, err error) {
	unlock, ok := s.blobs.tryLock(key)
	if !ok {
		return false, errBlobBusy
	}
	defer unlock()
	info, err := s.store.Stat(ctx, key)
	if errors.Is(err, blobstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if info.Size != served.Size || !info.ModTime.Equal(served.ModTime) {
		return false, nil
	}
	if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return false, fmt.Errorf("deleting the damaged copy: %w", err)
	}
	s.pending.deleted(key)
	return true, nil
}
