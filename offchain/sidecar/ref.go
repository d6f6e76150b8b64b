package sidecar

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/emrchain/emrchain/app"
)

// BlobRef names the committed record or share whose ciphertext a GET asks
// for. The chain keeps no index from a blob's hash to what references it
// (it would be a randomly keyed write per record into the state tree), so
// the reader, who knows what it is reading, says so; the sidecar checks
// that the record or share has exactly this blob and authorizes that one.
type BlobRef struct {
	// Share: a share of a record with a study, not a record.
	Share     bool
	PatientID []byte
	Sequence  uint64
}

// RecordRef names record sequence of patient.
func RecordRef(patientID []byte, sequence uint64) BlobRef {
	return BlobRef{PatientID: patientID, Sequence: sequence}
}

// ShareRef names share sequence of patient.
func ShareRef(patientID []byte, sequence uint64) BlobRef {
	return BlobRef{Share: true, PatientID: patientID, Sequence: sequence}
}

// Query parameters of a GET that carry a BlobRef, as <patient hex>/<seq>.
const (
	queryRecord = "record"
	queryShare  = "share"
)

func (r BlobRef) kind() string {
	if r.Share {
		return queryShare
	}
	return queryRecord
}

// value is the parameter's value: "<patient hex>/<seq>".
func (r BlobRef) value() string { return fmt.Sprintf("%x/%d", r.PatientID, r.Sequence) }

// String is "record <patient hex>/<seq>" or "share <patient hex>/<seq>".
func (r BlobRef) String() string { return r.kind() + " " + r.value() }

// query is the GET query string that carries r.
func (r BlobRef) query() string { return url.Values{r.kind(): {r.value()}}.Encode() }

// patientIDSize is the size of a patient id (app.PatientIDSize; a test
// pins it).
const patientIDSize = app.PatientIDSize

var errBadRef = errors.New("a GET names the record or share it reads: ?record=<patient id hex>/<sequence> or ?share=<patient id hex>/<sequence>")

// parseBlobRef reads the one record= or share= parameter of a GET.
func parseBlobRef(q url.Values) (BlobRef, error) {
	if len(q) != 1 {
		return BlobRef{}, errBadRef
	}
	var ref BlobRef
	var vals []string
	switch {
	case q.Has(queryRecord):
		vals = q[queryRecord]
	case q.Has(queryShare):
		ref.Share, vals = true, q[queryShare]
	default:
		return BlobRef{}, errBadRef
	}
	if len(vals) != 1 {
		return BlobRef{}, errBadRef
	}
	id, seq, ok := strings.Cut(vals[0], "/")
	if !ok {
		return BlobRef{}, fmt.Errorf("%w (got %q)", errBadRef, vals[0])
	}
	pid, err := hex.DecodeString(id)
	if err != nil || len(pid) != patientIDSize {
		return BlobRef{}, fmt.Errorf("%w: the patient id must be %d hex characters, got %q", errBadRef, 2*patientIDSize, id)
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || n == 0 {
		return BlobRef{}, fmt.Errorf("%w: the sequence must be a number from 1, got %q", errBadRef, seq)
	}
	ref.PatientID, ref.Sequence = pid, n
	return ref, nil
}
