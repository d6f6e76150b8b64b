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

// copyVerified copies a whole blob of size bytes from r to w, hashing as
// it goes, and holds the last chunk back until r is at its end: it sends
// that chunk only if all size bytes were read and hash to want. On a
// mismatch it returns errDamagedCopy with the chunk unsent, so the
// reader's transfer is cut short (the response announced the full length)
// rather than complete with damaged bytes. A read that ends short of size
// (a store's connection cut: minio-go then returns io.ErrUnexpectedEOF)
// is a failed read, never damage. buf is split in two: the chunk held and
// the next.
func copyVerified(w io.Writer, r io.Reader, size int64, want blobstore.Sum, buf []byte) (sent int64, err error) {
	h := sha256.New()
	half := len(buf) / 2
	held, next := buf[:half:half], buf[half:]
	n, rerr := io.ReadFull(r, held)
	held = held[:n]
	read := int64(n)
	for rerr == nil {
		var m int
		m, rerr = io.ReadFull(r, next[:cap(next)])
		read += int64(m)
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
	if read != size {
		return sent, shortRead(read, size)
	}
	h.Write(held)
	if blobstore.Sum(h.Sum(nil)) != want {
		return sent, errDamagedCopy
	}
	k, werr := w.Write(held)
	return sent + int64(k), werr
}

// foundDamaged notes that a read found the stored copy of key damaged,
// whether or not it can be dropped: it is counted (damaged_copies_total),
// and no longer remembered as intact, so no range is served from it
// (rangecheck.go).
func (s *Server) foundDamaged(key blobstore.Key) {
	s.metrics.damaged.Inc()
	s.verified.forget(key)
}

// dropDamagedCopy deletes the stored copy of key, which a read found
// damaged, so that the next GET is answered from a peer, a storage service
// copies it back, and an upload stores it anew. Locked against uploads and
// copies of
// the blob, it reads the copy again whole and deletes it only if that read
// is damaged too: a fault of one read (a bit flipped in memory or on a
// cable) deletes nothing, and neither does a copy written since (a
// peer's, an uploader's; on MinIO, whose Stat has whole seconds, size and
// age cannot tell two copies apart). dropped is false if it found an
// intact copy, or none; errBlobBusy if an upload, a copy from a peer, the
// sweep or another drop holds the lock (the next GET, or scrub, finds the
// copy again).
func (s *Server) dropDamagedCopy(ctx context.Context, key blobstore.Key) (dropped bool, err error) {
	unlock, ok := s.blobs.tryLock(key)
	if !ok {
		return false, errBlobBusy
	}
	defer unlock()
	return s.dropDamagedCopyLocked(ctx, key)
}

// dropDamagedCopyLocked is dropDamagedCopy for a caller that holds key's
// lock. A copy it reads whole and finds intact is remembered as such
// (verifiedCopies).
func (s *Server) dropDamagedCopyLocked(ctx context.Context, key blobstore.Key) (dropped bool, err error) {
	intact, _, err := s.storedCopyIntact(ctx, key, nil, nil)
	switch {
	case errors.Is(err, blobstore.ErrNotFound):
		return false, nil // gone meanwhile
	case err != nil:
		return false, fmt.Errorf("reading the copy again: %w", err)
	case intact:
		s.verified.intact(key, s.opts.Now())
		return false, nil
	}
	if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return false, fmt.Errorf("deleting the damaged copy: %w", err)
	}
	s.pending.deleted(key)
	s.verified.forget(key)
	s.replicas.repair(key) // a storage service copies it back from a peer
	return true, nil
}

// storedCopyIntact reads the stored copy of key whole, at limit's pace
// (nil: as fast as the store gives it) through buf (nil: a buffer of its
// own), and reports whether its bytes hash to key.Sum; n is the bytes
// read. A read that fails or ends short of the copy's size is an error
// (nothing is judged on it); a copy gone, ErrNotFound (MinIO's reads are
// lazy, so also a copy deleted after Get).
func (s *Server) storedCopyIntact(ctx context.Context, key blobstore.Key, limit *rateLimit, buf []byte) (intact bool, n int64, err error) {
	rc, size, err := s.store.Get(ctx, key, 0, -1)
	if err != nil {
		return false, 0, err
	}
	defer rc.Close()
	var r io.Reader = rc
	if limit != nil {
		r = &limitedReader{ctx: ctx, r: rc, limit: limit}
	}
	h := sha256.New()
	n, err = io.CopyBuffer(h, struct{ io.Reader }{r}, buf)
	if err == nil && n != size {
		err = shortRead(n, size)
	}
	if err != nil {
		return false, n, err
	}
	return blobstore.Sum(h.Sum(nil)) == key.Sum, n, nil
}

// shortRead is the error of a store's read that gave n of a blob's size
// bytes: a failed read (io.ErrUnexpectedEOF), never damage.
func shortRead(n, size int64) error {
	return fmt.Errorf("the store gave %d of the blob's %d bytes: %w", n, size, io.ErrUnexpectedEOF)
}
