package sidecar

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestAliasRecordServesNothing: a record that names the hash of ciphertext
// uploaded for another patient, or for another category of the same
// patient, reaches nothing, though the chain accepts such a record (it
// checks a hash's form, not whose bytes it names). The attacks it stops:
// enrolling a patient of one's own and adding a record naming a victim's
// hash, which as its owner one may read without any access event; and,
// with read and write on one category, adding a record in it that names
// another category's ciphertext.
func TestAliasRecordServesNothing(t *testing.T) {
	e := newEnv(t, nil)
	victim := []byte("imaging ciphertext of the patient")
	sum := sha256.Sum256(victim)
	if _, err := e.putIn(e.writer, "imaging", victim); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecordIn(e.pid, "imaging", sum, e.writer)
	if got, err := e.get(e.patient, RecordRef(e.pid, rec.Sequence), sum, nil); err != nil || !bytes.Equal(got, victim) {
		t.Fatalf("the owner reading the genuine record: %v", err)
	}

	// Another patient's record naming the victim's hash, read by its owner.
	mallory := e.chain.addMember("mallory", emrv1.Role_ROLE_PATIENT, "")
	mpid := bytes.Repeat([]byte{0x66}, patientIDSize)
	e.chain.enroll(mallory, mpid)
	alias := e.chain.addRecordIn(mpid, "imaging", sum, mallory)
	_, err := e.get(mallory, RecordRef(mpid, alias.Sequence), sum, nil)
	wantStatus(t, err, 404, "not stored on this sidecar for that record's patient and category")

	// The same patient's lab-results record naming the imaging hash, read
	// by a clinician with read and write on lab-results only.
	labdoc := e.chain.addMember("labdoc", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	perm := e.chain.grant(e.pid, labdoc, e.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE)
	perm.Categories = []string{"lab-results"}
	lab := e.chain.addRecordIn(e.pid, "lab-results", sum, labdoc)
	e.chain.recordAccess(lab, labdoc, emrv1.Purpose_PURPOSE_TREATMENT)
	_, err = e.get(labdoc, RecordRef(e.pid, lab.Sequence), sum, nil)
	wantStatus(t, err, 404, "not stored on this sidecar for that record's patient and category")
	// Nor through the genuine record, whose category the grant lacks.
	e.chain.recordAccess(rec, labdoc, emrv1.Purpose_PURPOSE_TREATMENT)
	_, err = e.get(labdoc, RecordRef(e.pid, rec.Sequence), sum, nil)
	wantStatus(t, err, 403, `does not cover "imaging"`)

	// Uploading the same bytes again under lab-results needs the bytes:
	// whoever has them may file them there, and then the lab record
	// serves them, as any upload of theirs would.
	if _, err := e.putIn(labdoc, "lab-results", victim); err != nil {
		t.Fatal(err)
	}
	if got, err := e.get(labdoc, RecordRef(e.pid, lab.Sequence), sum, nil); err != nil || !bytes.Equal(got, victim) {
		t.Fatalf("reading bytes uploaded for the record's own category: %v", err)
	}
}

// TestCategoryScope: an upload is authorized for the category it is filed
// under, and a read for the category of the record it reads: a permission
// narrowed to other categories (a new grant replaces the old one) ends both.
func TestCategoryScope(t *testing.T) {
	e := newEnv(t, nil)
	e.wperm.Categories = []string{"lab-results"}
	if _, err := e.putIn(e.writer, "lab-results", []byte("lab")); err != nil {
		t.Fatal(err)
	}
	_, err := e.putIn(e.writer, "imaging", []byte("scan"))
	wantStatus(t, err, 403, `does not cover "imaging"`)

	data := []byte("a lab report")
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecord(e.pid, sum, e.writer)
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	if _, err := e.get(e.reader, RecordRef(e.pid, rec.Sequence), sum, nil); err != nil {
		t.Fatalf("read within the access window: %v", err)
	}
	e.rperm.Categories = []string{"imaging"}
	_, err = e.get(e.reader, RecordRef(e.pid, rec.Sequence), sum, nil)
	wantStatus(t, err, 403, `does not cover "lab-results"`)
}

// TestBlobOwnerDistinct: owners differ by patient and by category, and a
// patient id and category cannot be shifted into one another.
func TestBlobOwnerDistinct(t *testing.T) {
	p1, p2 := bytes.Repeat([]byte{1}, patientIDSize), bytes.Repeat([]byte{2}, patientIDSize)
	seen := map[[32]byte]string{}
	for _, c := range []struct {
		pid      []byte
		category string
	}{{p1, "lab"}, {p1, "imaging"}, {p2, "lab"}, {p1[:31], "\x01lab"}, {append(p1, 'l'), "ab"}} {
		o := blobOwner(c.pid, c.category)
		name := string(c.pid) + "|" + c.category
		if prev, dup := seen[o]; dup {
			t.Fatalf("%q and %q share owner %s", prev, name, o)
		}
		seen[o] = name
	}
}
