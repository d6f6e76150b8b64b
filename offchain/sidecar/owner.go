package sidecar

import (
	"crypto/sha256"
	"fmt"
	"regexp"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// A blob is filed in the store under its owner — the patient and the data
// category it was uploaded for — and not under its hash alone, and every
// reference that serves it (a record, or a share of a record) must be of
// that patient and category. The chain checks that a record names a
// well-formed hash, not whose bytes they are: without the owner, a member
// could add a record — to a patient they enrolled themselves, or in a
// category they may write — that names the hash of another patient's (or
// another category's) ciphertext, and read that ciphertext through it. To
// file bytes under an owner, an uploader needs the bytes and the write
// right for that patient and category (the share right, for a share's), so
// the only ciphertext a record can reach is ciphertext uploaded for its
// own patient and category.
//
// Shared ciphertext (a record re-encrypted to a study key) has owners of
// its own, and only a share serves it: a share names its ciphertext by
// hash too, and with one owner for both it could name the raw ciphertext
// of another record of the patient and category, which the study's
// researchers would then read with no access event logged for it.

// blobOwnerDomain and sharedBlobOwnerDomain separate owner digests from
// every other hash, and the owners of records' ciphertext from those of
// shares'.
const (
	blobOwnerDomain       = "emrchain/v1/sidecar-blob-owner"
	sharedBlobOwnerDomain = "emrchain/v1/sidecar-shared-blob-owner"
)

// blobOwner is the owner blobs uploaded for category of patient are filed
// under: a digest of both (a patient id has a fixed length, and its length
// is hashed too, so no two pairs share a digest).
func blobOwner(patientID []byte, category string) blobstore.Owner {
	return ownerIn(blobOwnerDomain, patientID, category)
}

func ownerIn(domain string, patientID []byte, category string) blobstore.Owner {
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write([]byte{0, byte(len(patientID))})
	h.Write(patientID)
	h.Write([]byte(category))
	var o blobstore.Owner
	h.Sum(o[:0])
	return o
}

// BlobKey is the store key the sidecar files blob sum under when it is
// uploaded for category of patient.
func BlobKey(patientID []byte, category string, sum [32]byte) blobstore.Key {
	return blobstore.Key{Owner: blobOwner(patientID, category), Sum: sum}
}

// SharedBlobKey is the store key the sidecar files shared blob sum under
// when it is uploaded (PUT /v1/shared-blobs) for a share of a record of
// category of patient.
func SharedBlobKey(patientID []byte, category string, sum [32]byte) blobstore.Key {
	return blobstore.Key{Owner: ownerIn(sharedBlobOwnerDomain, patientID, category), Sum: sum}
}

// blobKeyOf is BlobKey, or SharedBlobKey when shared.
func blobKeyOf(shared bool, patientID []byte, category string, sum [32]byte) blobstore.Key {
	if shared {
		return SharedBlobKey(patientID, category, sum)
	}
	return BlobKey(patientID, category, sum)
}

// categoryPattern is the chain's rule for a data category (app.checkID; a
// test pins the two together).
var categoryPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// checkCategory refuses what the chain would never accept as a category.
func checkCategory(c string) error {
	if !categoryPattern.MatchString(c) {
		return fmt.Errorf("category %q: 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", c)
	}
	return nil
}
