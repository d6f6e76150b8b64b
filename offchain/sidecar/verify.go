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
		return sent, fmt.Errorf("the store gave %d of the blob's %d bytes: %w", read, size, io.ErrUnexpectedEOF)
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
// same size and age and is damaged too (read again under the lock: a
// peer's or an uploader's copy written since is not touched). dropped is
// false if it found another copy, an intact one, or none; errBlobBusy if
// an upload, the sweep or another drop holds the lock (the next GET, or
// scrub, finds the copy again).
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
	// Size and age cannot tell two copies apart on every store (MinIO's
	// Stat has whole seconds): hash the copy stored now, under the lock,
	// and delete it only if it is damaged too.
	if intact, err := s.storedCopyIntact(ctx, key, info.Size); errors.Is(err, blobstore.ErrNotFound) {
		return false, nil // gone meanwhile
	} else if err != nil || intact {
		return false, err
	}
	if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return false, fmt.Errorf("deleting the damaged copy: %w", err)
	}
	s.pending.deleted(key)
	return true, nil
}

// storedCopyIntact reads the stored copy of key (size bytes) whole and
// reports whether it hashes to key.Sum. A read that fails or ends short
// is an error (nothing is judged on it); a copy gone, ErrNotFound.
func (s *Server) storedCopyIntact(ctx context.Context, key blobstore.Key, size int64) (bool, error) {
	rc, _, err := s.store.Get(ctx, key, 0, -1)
	if err != nil {
		return false, fmt.Errorf("reading the copy again: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err == nil && n != size {
		err = fmt.Errorf("%d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return false, fmt.Errorf("reading the copy again: %w", err)
	}
	return blobstore.Sum(h.Sum(nil)) == key.Sum, nil
}
