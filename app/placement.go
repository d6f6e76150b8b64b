package app

import (
	"bytes"
	"crypto/sha256"
	"slices"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Where the copies of a blob live. The consortium names the organizations
// whose storage services keep copies (params.storage_organizations) and
// how many of them keep each blob (params.storage_copies; 0: all). Which
// ones is rendezvous hashing: every organization's score for a blob is
// SHA-256 of a domain tag, the organization and the blob's SHA-256, and
// the storage_copies highest keep it. Every sidecar computes the same
// answer from the params alone, no one keeps a placement table, and
// naming or dropping an organization moves only the copies it wins or
// held (about storage_copies/n of the blobs), not the others.

// placementDomain separates placement scores from every other SHA-256
// the chain computes.
const placementDomain = "emrchain/v1/copy-placement"

// CopyHolders are the organizations that keep a copy of the blob whose
// SHA-256 is sum, highest score first: params.storage_organizations
// entire, in the params' order, when params.storage_copies is 0 or at
// least their number.
func CopyHolders(p *emrv1.Params, sum []byte) []string {
	orgs := p.GetStorageOrganizations()
	copies := p.GetStorageCopies()
	if copies == 0 || uint64(copies) >= uint64(len(orgs)) {
		return slices.Clone(orgs)
	}
	k := int(copies) // below len(orgs)
	type scored struct {
		org   string
		score [sha256.Size]byte
	}
	all := make([]scored, len(orgs))
	for i, org := range orgs {
		all[i] = scored{org, placementScore(org, sum)}
	}
	slices.SortFunc(all, func(a, b scored) int {
		if c := bytes.Compare(b.score[:], a.score[:]); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.org), []byte(b.org)) // distinct ids score apart; for a total order all the same
	})
	out := make([]string, k)
	for i := range out {
		out[i] = all[i].org
	}
	return out
}

// HoldsCopy reports whether org keeps a copy of the blob whose SHA-256
// is sum (CopyHolders): without building the list, as a sidecar asks it
// of every committed blob in a pass. org holds one when fewer than k
// organizations rank above it.
func HoldsCopy(p *emrv1.Params, org string, sum []byte) bool {
	orgs := p.GetStorageOrganizations()
	copies := p.GetStorageCopies()
	if !slices.Contains(orgs, org) {
		return false
	}
	if copies == 0 || uint64(copies) >= uint64(len(orgs)) {
		return true
	}
	mine := placementScore(org, sum)
	above := 0
	for _, other := range orgs {
		if other == org {
			continue
		}
		score := placementScore(other, sum)
		if c := bytes.Compare(score[:], mine[:]); c > 0 || c == 0 && other < org {
			if above++; uint64(above) >= uint64(copies) {
				return false
			}
		}
	}
	return true
}

// placementScore is org's rendezvous score for the blob whose SHA-256 is
// sum. The organization id is length-prefixed (ids are at most 64
// bytes), so no two (org, sum) pairs hash the same input.
func placementScore(org string, sum []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(placementDomain))
	h.Write([]byte{byte(len(org))})
	h.Write([]byte(org))
	h.Write(sum)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
