package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

type env struct {
	t       *testing.T
	chain   *fakeChain
	store   *blobstore.FS
	srv     *Server
	ts      *httptest.Server
	patient *actor
	writer  *actor
	reader  *actor
	pid     []byte
	wperm   *emrv1.Permission
	rperm   *emrv1.Permission
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	now := time.Now()
	chain := newFakeChain(now)
	store, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Store: store, Chain: chain, SweepInterval: -1}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e := &env{t: t, chain: chain, store: store, srv: srv, ts: ts}
	e.patient = chain.addMember("patient", emrv1.Role_ROLE_PATIENT, "")
	e.writer = chain.addMember("writer", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	e.reader = chain.addMember("reader", emrv1.Role_ROLE_CLINICIAN, "hospital-b")
	e.pid = bytes.Repeat([]byte{0xaa}, 32)
	chain.enroll(e.patient, e.pid)
	e.wperm = chain.grant(e.pid, e.writer, now.Add(24*time.Hour), emrv1.Right_RIGHT_WRITE)
	e.rperm = chain.grant(e.pid, e.reader, now.Add(24*time.Hour), emrv1.Right_RIGHT_READ)
	return e
}

func (e *env) client(a *actor) *Client { return NewClient(e.ts.URL, a, nil) }

func statusOf(err error) int {
	var se *Error
	if errors.As(err, &se) {
		return se.StatusCode
	}
	return 0
}

func wantStatus(t *testing.T, err error, status int, reasonPart string) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) || se.StatusCode != status {
		t.Fatalf("got %v, want HTTP %d", err, status)
	}
	if reasonPart != "" && !strings.Contains(se.Reason, reasonPart) {
		t.Fatalf("reason %q does not say %q", se.Reason, reasonPart)
	}
}

func (e *env) put(a *actor, data []byte) (*PutResult, error) {
	return e.putIn(a, testCategory, data)
}

func (e *env) putIn(a *actor, category string, data []byte) (*PutResult, error) {
	e.chain.uploaded(data)
	return e.client(a).Put(context.Background(), e.pid, category, sha256.Sum256(data), bytes.NewReader(data), int64(len(data)))
}

// putShared uploads data as a share's ciphertext, for testCategory.
func (e *env) putShared(a *actor, data []byte) (*PutResult, error) {
	e.chain.uploaded(data)
	return e.client(a).PutShared(context.Background(), e.pid, testCategory, sha256.Sum256(data), bytes.NewReader(data), int64(len(data)))
}

// key is the store key of data uploaded for e's patient in testCategory.
func (e *env) key(sum [32]byte) blobstore.Key { return BlobKey(e.pid, testCategory, sum) }

func (e *env) get(a *actor, ref BlobRef, sum [32]byte, rng *Range) ([]byte, error) {
	var buf bytes.Buffer
	_, err := e.client(a).Get(context.Background(), ref, sum, &buf, rng)
	return buf.Bytes(), err
}

func TestPutAuthorization(t *testing.T) {
	e := newEnv(t, nil)
	data := []byte("ciphertext of a lab result")
	res, err := e.put(e.writer, data)
	if err != nil || !res.Created || res.Size != int64(len(data)) {
		t.Fatalf("writer put: %+v %v", res, err)
	}
	res, err = e.put(e.patient, data)
	if err != nil || res.Created {
		t.Fatalf("owner re-put: %+v %v (want 200, created=false)", res, err)
	}
	_, err = e.put(e.reader, []byte("other"))
	wantStatus(t, err, 403, "does not include write")
	// A record's ciphertext needs the write right, a share's the share
	// right (and a patient shares nothing itself).
	sharer := e.chain.addMember("put-sharer", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	e.chain.grant(e.pid, sharer, e.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_SHARE)
	_, err = e.put(sharer, []byte("a record's ciphertext"))
	wantStatus(t, err, 403, "does not include write")
	if _, err := e.putShared(sharer, []byte("a share's ciphertext")); err != nil {
		t.Fatalf("share-right shared upload: %v", err)
	}
	_, err = e.putShared(e.writer, []byte("a share's ciphertext"))
	wantStatus(t, err, 403, `may not upload shared "`+testCategory+`"`)
	_, err = e.putShared(e.patient, []byte("a share's ciphertext"))
	wantStatus(t, err, 403, "a clinician with the share right")

	stranger := e.chain.addMember("stranger", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	_, err = e.put(stranger, []byte("other"))
	wantStatus(t, err, 403, "granted this member nothing")

	e.chain.revoke(e.wperm)
	_, err = e.put(e.writer, []byte("after revoke"))
	wantStatus(t, err, 403, "revoked at height")

	// Expired: block time past not_after.
	w2 := e.chain.addMember("writer2", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	e.chain.grant(e.pid, w2, e.chain.head.Time.Add(time.Minute), emrv1.Right_RIGHT_WRITE)
	if _, err := e.put(w2, []byte("in time")); err != nil {
		t.Fatal(err)
	}
	e.chain.advance(2 * time.Minute)
	_, err = e.put(w2, []byte("too late"))
	wantStatus(t, err, 403, "expired at")

	// Unknown patient.
	c := e.client(e.patient)
	d := []byte("x")
	_, err = c.Put(context.Background(), bytes.Repeat([]byte{1}, 32), testCategory, sha256.Sum256(d), bytes.NewReader(d), 1)
	wantStatus(t, err, 403, "not enrolled")

	// Suspended members are refused even for their own patient.
	e.chain.setStatus(e.patient, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	_, err = e.put(e.patient, []byte("suspended"))
	wantStatus(t, err, 403, "suspended")
}

func TestPutValidation(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := e.client(e.writer)

	// A body that does not hash to the claimed sum: 400, nothing stored.
	data := []byte("the real ciphertext")
	claimed := sha256.Sum256([]byte("something else"))
	_, err := c.Put(ctx, e.pid, testCategory, claimed, bytes.NewReader(data), int64(len(data)))
	wantStatus(t, err, 400, "does not hash")
	if _, err := e.store.Stat(ctx, e.key(claimed)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("a mismatching body was stored: %v", err)
	}
	// Too large for the chain's params: 413, before the body is read.
	big := make([]byte, e.chain.params.MaxBlobBytes+1)
	_, err = c.Put(ctx, e.pid, testCategory, sha256.Sum256(big), bytes.NewReader(big), int64(len(big)))
	wantStatus(t, err, 413, "max_blob_bytes")

	// Path sum and header sum disagree.
	req := e.signed(e.writer, http.MethodPut, "/v1/blobs/"+hex.EncodeToString(claimed[:]), data, true)
	resp := do(t, req)
	if resp.StatusCode != 400 {
		t.Fatalf("path/header mismatch: %d", resp.StatusCode)
	}
	// PUT /v1/blobs (sum only in the header) works.
	req = e.signed(e.writer, http.MethodPut, "/v1/blobs", data, true)
	if resp := do(t, req); resp.StatusCode != 201 {
		t.Fatalf("PUT /v1/blobs: %d", resp.StatusCode)
	}
	// Missing patient and category headers.
	req = e.signed(e.writer, http.MethodPut, "/v1/blobs", data, false)
	if resp := do(t, req); resp.StatusCode != 400 {
		t.Fatalf("no patient header: %d", resp.StatusCode)
	}
	// A category the chain would refuse.
	for _, bad := range []string{"", "Lab Results", "-lab", strings.Repeat("x", 65)} {
		_, err = c.Put(ctx, e.pid, bad, sha256.Sum256(data), bytes.NewReader(data), int64(len(data)))
		wantStatus(t, err, 400, HeaderCategory)
	}
	// No Content-Length (chunked): 411.
	sum := sha256.Sum256(data)
	req, _ = http.NewRequest(http.MethodPut, e.ts.URL+"/v1/blobs", io.NopCloser(bytes.NewReader(data)))
	req.ContentLength = -1
	req.Header.Set(HeaderPatient, hex.EncodeToString(e.pid))
	req.Header.Set(HeaderCategory, testCategory)
	if err := SignRequest(req, e.writer, hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	if resp := do(t, req); resp.StatusCode != http.StatusLengthRequired {
		t.Fatalf("chunked PUT: %d", resp.StatusCode)
	}
}

// signed builds a signed request for data (PUT) or nothing (GET).
func (e *env) signed(a *actor, method, path string, data []byte, withPatient bool) *http.Request {
	var body io.Reader
	if data != nil {
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if withPatient {
		req.Header.Set(HeaderPatient, hex.EncodeToString(e.pid))
		req.Header.Set(HeaderCategory, testCategory)
	}
	sum := ""
	if data != nil {
		s := sha256.Sum256(data)
		sum = hex.EncodeToString(s[:])
	}
	if err := SignRequest(req, a, sum); err != nil {
		e.t.Fatal(err)
	}
	return req
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func doJSON(t *testing.T, req *http.Request) (int, ErrorBody) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("error answer with Content-Type %q", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, body
}

func TestGetAuthorization(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AccessWindow = 5 * time.Minute })
	data := bytes.Repeat([]byte("0123456789"), 1000)
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	// Not referenced by any committed record yet: nobody reads it.
	_, err := e.get(e.patient, RecordRef(e.pid, 1), sum, nil)
	wantStatus(t, err, 403, "no committed record")

	rec := e.chain.addRecord(e.pid, sum, e.writer)
	ref := RecordRef(rec.PatientId, rec.Sequence)
	// The owner reads without an access event.
	if got, err := e.get(e.patient, ref, sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("owner get: %v", err)
	}
	// The reader needs its access event.
	_, err = e.get(e.reader, ref, sum, nil)
	wantStatus(t, err, 403, "no committed access event")
	// The writer (no read right, no event) neither.
	_, err = e.get(e.writer, ref, sum, nil)
	wantStatus(t, err, 403, "no committed access event")

	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	if got, err := e.get(e.reader, ref, sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader get after access: %v", err)
	}
	// Ranges.
	got, err := e.get(e.reader, ref, sum, &Range{Start: 100, Length: 50})
	if err != nil || !bytes.Equal(got, data[100:150]) {
		t.Fatalf("range get: %q %v", got, err)
	}
	// The window is block time: 4 min later still fine, 6 min later not.
	e.chain.advance(4 * time.Minute)
	if _, err := e.get(e.reader, ref, sum, nil); err != nil {
		t.Fatalf("within window: %v", err)
	}
	e.chain.advance(2 * time.Minute)
	_, err = e.get(e.reader, ref, sum, nil)
	wantStatus(t, err, 403, "expired at")

	// A new event opens a new window; revocation ends it early.
	e.chain.recordAccess(rec, e.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	if _, err := e.get(e.reader, ref, sum, nil); err != nil {
		t.Fatalf("after a new event: %v", err)
	}
	e.chain.revoke(e.rperm)
	_, err = e.get(e.reader, ref, sum, nil)
	wantStatus(t, err, 403, "revoked at height")

	// A suspended member is refused whatever the chain says about its events.
	other := e.chain.addMember("other", emrv1.Role_ROLE_CLINICIAN, "hospital-b")
	e.chain.grant(e.pid, other, e.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_READ)
	e.chain.recordAccess(rec, other, emrv1.Purpose_PURPOSE_TREATMENT)
	if _, err := e.get(other, ref, sum, nil); err != nil {
		t.Fatal(err)
	}
	e.chain.setStatus(other, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)
	_, err = e.get(other, ref, sum, nil)
	wantStatus(t, err, 403, "suspended")

	// Referenced on chain but not stored here: 404 (only after authorization).
	missing := sha256.Sum256([]byte("never uploaded"))
	mrec := e.chain.addRecord(e.pid, missing, e.writer)
	_, err = e.get(e.patient, RecordRef(mrec.PatientId, mrec.Sequence), missing, nil)
	wantStatus(t, err, 404, "not stored")
	_, err = e.get(e.reader, RecordRef(mrec.PatientId, mrec.Sequence), missing, nil)
	wantStatus(t, err, 403, "")
}

func TestGetShares(t *testing.T) {
	e := newEnv(t, nil)
	data := []byte("ciphertext re-encrypted to a study key")
	sum := sha256.Sum256(data)
	sharer := e.chain.addMember("sharer", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	e.chain.grant(e.pid, sharer, e.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_SHARE).StudyId = "s1"
	if _, err := e.putShared(sharer, data); err != nil {
		t.Fatalf("share-right upload: %v", err)
	}
	pi := e.chain.addMember("pi", emrv1.Role_ROLE_RESEARCHER, "research")
	colleague := e.chain.addMember("colleague", emrv1.Role_ROLE_RESEARCHER, "research")
	outsider := e.chain.addMember("outsider", emrv1.Role_ROLE_RESEARCHER, "elsewhere")
	e.chain.studies["s1"] = &emrv1.Study{Id: "s1", PrincipalInvestigator: pi.Address(), OrganizationId: "research"}
	rec := e.chain.addRecord(e.pid, sha256.Sum256([]byte("the record shared")), e.writer)
	sh := e.chain.addShare(rec, "s1", sum, sharer)
	// A study member's download needs its read committed first; the
	// patient's does not.
	_, err := e.get(pi, ShareRef(e.pid, 1), sum, nil)
	wantStatus(t, err, 403, "no committed read of this share")
	e.chain.shareRead(sh, pi)
	e.chain.shareRead(sh, colleague)
	for _, a := range []*actor{pi, colleague, e.patient} {
		if got, err := e.get(a, ShareRef(e.pid, 1), sum, nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%x: %v", a.Address(), err)
		}
	}
	e.chain.shareRead(sh, outsider) // the chain refuses it; were it there
	_, err = e.get(outsider, ShareRef(e.pid, 1), sum, nil)
	wantStatus(t, err, 403, "neither its principal investigator")
	// A read expires with the access window, as a record's does.
	e.chain.mu.Lock()
	e.chain.head.Time = e.chain.head.Time.Add(DefaultAccessWindow + time.Second)
	e.chain.mu.Unlock()
	_, err = e.get(pi, ShareRef(e.pid, 1), sum, nil)
	wantStatus(t, err, 403, "expired")
	_, err = e.get(e.reader, ShareRef(e.pid, 1), sum, nil)
	wantStatus(t, err, 403, "study")
}

// TestShareServedWhileItsConsentStands: the study's researchers download a
// share only while the patient's consent it was made under stands (the
// chain's rule for making it): a revocation, the consent's end, a change
// of study, or a narrowing to anonymised sharing for a share that is not
// anonymised stops them; the patient still reads its own shares.
func TestShareServedWhileItsConsentStands(t *testing.T) {
	data := []byte("ciphertext re-encrypted to a study key")
	sum := sha256.Sum256(data)
	for _, c := range []struct {
		name       string
		anonymised bool
		change     func(p *emrv1.Permission, e *env)
		why        string // "" when the share is still served
	}{
		{"standing", false, func(*emrv1.Permission, *env) {}, ""},
		{"revoked", false, func(p *emrv1.Permission, e *env) { p.RevokedHeight = e.chain.head.Height }, "no longer stands: permission revoked at height 10"},
		{"ended", false, func(p *emrv1.Permission, e *env) { p.NotAfter = timestamppb.New(e.chain.head.Time) }, "no longer stands: permission expired: permission expired at"},
		{"share right taken away", false, func(p *emrv1.Permission, _ *env) { p.Rights = []emrv1.Right{emrv1.Right_RIGHT_READ} }, "does not include share"},
		{"category taken away", false, func(p *emrv1.Permission, _ *env) { p.Categories = []string{"imaging"} }, `does not cover "lab-results"`},
		{"another study", false, func(p *emrv1.Permission, _ *env) { p.StudyId = "s2" }, `it is now for study "s2"`},
		{"narrowed, raw share", false, func(p *emrv1.Permission, _ *env) { p.Anonymise = true }, "only anonymised, and this share is not"},
		{"sharer suspended", false, func(p *emrv1.Permission, e *env) {
			e.chain.members[string(p.Grantee)].Status = emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED
		}, "no longer stands: grantee suspended"},
		{"narrowed, anonymised share", true, func(p *emrv1.Permission, _ *env) { p.Anonymise = true }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			sharer := e.chain.addMember("sharer", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
			consent := e.chain.grant(e.pid, sharer, e.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_SHARE)
			consent.StudyId = "s1"
			if _, err := e.putShared(sharer, data); err != nil {
				t.Fatal(err)
			}
			pi := e.chain.addMember("pi", emrv1.Role_ROLE_RESEARCHER, "research")
			e.chain.studies["s1"] = &emrv1.Study{Id: "s1", PrincipalInvestigator: pi.Address(), OrganizationId: "research"}
			rec := e.chain.addRecord(e.pid, sha256.Sum256([]byte("the record shared")), e.writer)
			sh := e.chain.addShare(rec, "s1", sum, sharer)
			sh.Anonymised = c.anonymised
			e.chain.shareRead(sh, pi)
			e.chain.mu.Lock()
			c.change(consent, e)
			e.chain.mu.Unlock()
			got, err := e.get(pi, ShareRef(e.pid, 1), sum, nil)
			if c.why == "" {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("the study's investigator: %v", err)
				}
			} else {
				wantStatus(t, err, 403, c.why)
			}
			if got, err := e.get(e.patient, ShareRef(e.pid, 1), sum, nil); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("the patient reading its own share: %v", err)
			}
		})
	}
}

// TestShareCannotServeARecordsCiphertext: a share that names the hash of
// another record's raw ciphertext (same patient and category; hashes are
// public) serves nothing: shared ciphertext is filed apart from records',
// so the study's researchers cannot read a record through a share of
// another one, with no access event for it.
func TestShareCannotServeARecordsCiphertext(t *testing.T) {
	e := newEnv(t, nil)
	raw := []byte("raw ciphertext of record 2, not anonymised")
	rawSum := sha256.Sum256(raw)
	if _, err := e.put(e.writer, raw); err != nil {
		t.Fatal(err)
	}
	rec1 := e.chain.addRecord(e.pid, sha256.Sum256([]byte("record 1")), e.writer)
	e.chain.addRecord(e.pid, rawSum, e.writer)
	sharer := e.chain.addMember("sharer", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	e.chain.grant(e.pid, sharer, e.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_SHARE).StudyId = "s1"
	pi := e.chain.addMember("pi", emrv1.Role_ROLE_RESEARCHER, "research")
	e.chain.studies["s1"] = &emrv1.Study{Id: "s1", PrincipalInvestigator: pi.Address(), OrganizationId: "research"}
	// The sharer shares record 1 but names record 2's ciphertext.
	e.chain.shareRead(e.chain.addShare(rec1, "s1", rawSum, sharer), pi)
	if got, err := e.get(pi, ShareRef(e.pid, 1), rawSum, nil); err == nil || bytes.Equal(got, raw) {
		t.Fatalf("a share naming a record's ciphertext served it (%d bytes, %v)", len(got), err)
	}
	// What the sharer itself uploads as shared ciphertext is what the
	// share serves.
	if _, err := e.putShared(sharer, raw); err != nil {
		t.Fatal(err)
	}
	if got, err := e.get(pi, ShareRef(e.pid, 1), rawSum, nil); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("the same bytes uploaded as shared ciphertext by the sharer: %v", err)
	}
}

// studyRecordEnv is an env with a 10-minute access window and a record of
// the patient's, uploaded, that a study's reader reads.
func studyRecordEnv(t *testing.T) (e *env, rec *emrv1.Record, data []byte, sum [32]byte) {
	e = newEnv(t, func(o *Options) { o.AccessWindow = 10 * time.Minute })
	data = []byte("a record a study reads")
	sum = sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	return e, e.chain.addRecord(e.pid, sum, e.writer), data, sum
}

// TestGetResearchReadOfAConsentNowAnonymised: a research read's access
// event stops serving the record's ciphertext once the patient's consent
// asks for anonymisation, unless the reader is a clinician (who makes the
// anonymised share): the chain would refuse that read now, as it refuses
// a revoked one.
func TestGetResearchReadOfAConsentNowAnonymised(t *testing.T) {
	e, rec, data, sum := studyRecordEnv(t)
	ref := RecordRef(rec.PatientId, rec.Sequence)
	researcher := e.chain.addMember("researcher", emrv1.Role_ROLE_RESEARCHER, "research")
	clinician := e.chain.addMember("study-clinician", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	e.chain.studies["s1"] = &emrv1.Study{Id: "s1", PrincipalInvestigator: researcher.Address(), OrganizationId: "research"}
	var perms []*emrv1.Permission
	for _, a := range []*actor{researcher, clinician} {
		p := e.chain.grant(e.pid, a, e.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_SHARE)
		p.StudyId = "s1"
		perms = append(perms, p)
		e.chain.recordAccess(rec, a, emrv1.Purpose_PURPOSE_RESEARCH)
		if got, err := e.get(a, ref, sum, nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("research read by %x under a consent without anonymisation: %v", a.Address(), err)
		}
	}

	// The patient grants again, now only anonymised; the events stay
	// within their window.
	e.chain.mu.Lock()
	for _, p := range perms {
		p.Anonymise = true
	}
	e.chain.mu.Unlock()
	e.chain.advance(time.Minute)
	_, err := e.get(researcher, ref, sum, nil)
	wantStatus(t, err, 403, `study "s1" only anonymised`)
	if got, err := e.get(clinician, ref, sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a clinician's research read of an anonymise-only consent (to make the share): %v", err)
	}
}

// TestGetResearchReadOfAClosedStudy: a research read's access event stops
// serving the record's ciphertext once the study's organization has left
// the consortium (the chain refuses such a read now); a treatment read's
// does not.
func TestGetResearchReadOfAClosedStudy(t *testing.T) {
	e, rec, data, sum := studyRecordEnv(t)
	ref := RecordRef(rec.PatientId, rec.Sequence)
	pi := e.chain.addMember("pi", emrv1.Role_ROLE_RESEARCHER, "research")
	clinician := e.chain.addMember("study-clinician", emrv1.Role_ROLE_CLINICIAN, "hospital-a")
	e.chain.studies["s1"] = &emrv1.Study{Id: "s1", PrincipalInvestigator: pi.Address(), OrganizationId: "research"}
	p := e.chain.grant(e.pid, clinician, e.chain.head.Time.Add(time.Hour), emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_SHARE)
	p.StudyId = "s1"
	e.chain.recordAccess(rec, clinician, emrv1.Purpose_PURPOSE_RESEARCH)
	if got, err := e.get(clinician, ref, sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("research read for an open study: %v", err)
	}

	e.chain.mu.Lock()
	e.chain.orgs["research"].RetiredHeight = e.chain.head.Height
	e.chain.mu.Unlock()
	e.chain.advance(time.Minute)
	_, err := e.get(clinician, ref, sum, nil)
	wantStatus(t, err, 403, `study "s1": organization "research" was retired at height`)

	e.chain.recordAccess(rec, clinician, emrv1.Purpose_PURPOSE_TREATMENT)
	if got, err := e.get(clinician, ref, sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("treatment read after the study closed: %v", err)
	}
}

// TestGetNamesWhatItReads: a GET names the committed record or share it
// reads, and is authorized for that one only if it has exactly this blob.
func TestGetNamesWhatItReads(t *testing.T) {
	e := newEnv(t, nil)
	data, other := []byte("the blob asked for"), []byte("another record's blob")
	sum, otherSum := sha256.Sum256(data), sha256.Sum256(other)
	for _, d := range [][]byte{data, other} {
		if _, err := e.put(e.patient, d); err != nil {
			t.Fatal(err)
		}
	}
	rec := e.chain.addRecord(e.pid, sum, e.patient)
	otherRec := e.chain.addRecord(e.pid, otherSum, e.patient)
	e.chain.addShare(otherRec, "s1", otherSum, e.patient)
	if got, err := e.get(e.patient, RecordRef(e.pid, rec.Sequence), sum, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the owner reading its record: %v", err)
	}
	// The owner may read both blobs, but only under the record that has it.
	_, err := e.get(e.patient, RecordRef(e.pid, otherRec.Sequence), sum, nil)
	wantStatus(t, err, 403, "is blob")
	_, err = e.get(e.patient, ShareRef(e.pid, 1), sum, nil)
	wantStatus(t, err, 403, "is blob")
	_, err = e.get(e.patient, RecordRef(e.pid, 99), sum, nil)
	wantStatus(t, err, 403, "no committed record")
	_, err = e.get(e.patient, ShareRef(e.pid, 2), sum, nil)
	wantStatus(t, err, 403, "no committed share")

	base := "/v1/blobs/" + hex.EncodeToString(sum[:])
	pid := hex.EncodeToString(e.pid)
	for _, query := range []string{
		"",                            // names nothing
		"?x=1",                        // names nothing it knows
		"?record=" + pid,              // no sequence
		"?record=" + pid + "/0",       // sequences start at 1
		"?record=" + pid + "/-1",      // not a number
		"?record=" + pid[:10] + "/1",  // short patient id
		"?record=zz" + pid[2:] + "/1", // not hex
		"?record=" + pid + "/1&share=" + pid + "/1",  // two
		"?record=" + pid + "/1&record=" + pid + "/2", // twice
	} {
		req := e.signed(e.patient, http.MethodGet, base+query, nil, false)
		if status, body := doJSON(t, req); status != 400 || !strings.Contains(body.Error, "names the record or share") {
			t.Errorf("GET %s: %d %+v, want 400", query, status, body)
		}
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxClockSkew = 30 * time.Second })
	data := []byte("blob")
	sum := sha256.Sum256(data)
	if _, err := e.put(e.patient, data); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecord(e.pid, sum, e.patient)
	path := "/v1/blobs/" + hex.EncodeToString(sum[:]) + "?" + RecordRef(rec.PatientId, rec.Sequence).query()

	// Unsigned.
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
	status, body := doJSON(t, req)
	if status != 401 || !strings.Contains(body.Error, "unsigned") {
		t.Fatalf("unsigned: %d %+v", status, body)
	}
	// Stale and future timestamps.
	for _, skew := range []time.Duration{-time.Minute, time.Minute} {
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
		if err := signRequestAt(req, e.patient, "", time.Now().Add(skew)); err != nil {
			t.Fatal(err)
		}
		status, body := doJSON(t, req)
		if status != 401 || !strings.Contains(body.Error, "stale timestamp") {
			t.Fatalf("skew %v: %d %+v", skew, status, body)
		}
	}
	// Unix milliseconds are accepted.
	req, _ = http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
	ts := strconvMs(time.Now())
	addr := hex.EncodeToString(e.patient.Address())
	sig, _ := e.patient.Sign(SigningString("GET", path, addr, ts, emptySHA256, "", ""))
	req.Header.Set(HeaderAddress, addr)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderBodySHA256, emptySHA256)
	req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	if status, body := doJSON(t, req); status != 200 {
		t.Fatalf("unix-ms timestamp: %d %+v", status, body)
	}
	// Replay of the very same request.
	req2, _ := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
	req2.Header = req.Header.Clone()
	if status, body := doJSON(t, req2); status != 401 || !strings.Contains(body.Error, "replayed") {
		t.Fatalf("replay: %d %+v", status, body)
	}
	// Signed by another key than the address's.
	req, _ = http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
	if err := SignRequest(req, e.reader, ""); err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderAddress, addr)
	if status, body := doJSON(t, req); status != 401 || !strings.Contains(body.Error, "bad signature") {
		t.Fatalf("wrong key: %d %+v", status, body)
	}
	// Tampering with any signed part.
	for name, tamper := range map[string]func(*http.Request){
		"path":    func(r *http.Request) { r.URL.Path = "/v1/blobs/" + strings.Repeat("0", 64) },
		"query":   func(r *http.Request) { r.URL.RawQuery = "x=1" },
		"method":  func(r *http.Request) { r.Method = http.MethodPut },
		"patient": func(r *http.Request) { r.Header.Set(HeaderPatient, strings.Repeat("bb", 32)) },
		"time": func(r *http.Request) {
			r.Header.Set(HeaderTimestamp, time.Now().UTC().Format(time.RFC3339Nano))
		},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
		if err := SignRequest(req, e.patient, ""); err != nil {
			t.Fatal(err)
		}
		tamper(req)
		if status, body := doJSON(t, req); status != 401 {
			t.Fatalf("tampered %s: %d %+v", name, status, body)
		}
	}
	// Unknown member.
	ghost := newActor("ghost")
	_, err := e.get(ghost, RecordRef(rec.PatientId, rec.Sequence), sum, nil)
	wantStatus(t, err, 401, "not a member")
	// A GET that claims a body.
	req, _ = http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
	if err := SignRequest(req, e.patient, hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	if status, _ := doJSON(t, req); status != 400 {
		t.Fatalf("GET with a body hash: %d", status)
	}
	// Chain down: 503, never served.
	e.chain.down = true
	_, err = e.get(e.patient, RecordRef(rec.PatientId, rec.Sequence), sum, nil)
	wantStatus(t, err, 503, "")
	e.chain.down = false
}

func TestReplayCacheBounded(t *testing.T) {
	now := time.Now()
	c := newReplayCache(3, func() time.Time { return now })
	start := now
	for i := range 3 {
		if ok, err := c.add([32]byte{byte(i)}, start.Add(time.Minute)); !ok || err != nil {
			t.Fatal(i, ok, err)
		}
	}
	if ok, _ := c.add([32]byte{1}, start.Add(time.Minute)); ok {
		t.Fatal("duplicate accepted")
	}
	if _, err := c.add([32]byte{9}, start.Add(time.Minute)); !errors.Is(err, errReplayCacheFull) {
		t.Fatalf("full cache: %v", err)
	}
	now = start.Add(2 * time.Minute)
	if ok, err := c.add([32]byte{9}, now.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
	if c.len() != 1 {
		t.Fatalf("len = %d after expiry, want 1", c.len())
	}
}

// TestReplayCacheOutOfOrder: a request checked slowly (its timestamp was
// inside the window when the sidecar looked) reaches the cache after a
// later request pruned its first copy. The cache reads the clock itself,
// so the slow replay is refused, not stored as new. A clock stepped back
// does not make the cache refuse fresh requests.
func TestReplayCacheOutOfOrder(t *testing.T) {
	t0 := time.Now()
	now := t0
	c := newReplayCache(10, func() time.Time { return now })
	window := time.Minute
	key := [32]byte{7}
	if ok, err := c.add(key, t0.Add(window)); !ok || err != nil {
		t.Fatalf("first copy: %v %v", ok, err)
	}
	// A moment after key's window closed, another request prunes key.
	now = t0.Add(window + time.Millisecond)
	if ok, err := c.add([32]byte{8}, now.Add(window)); !ok || err != nil {
		t.Fatalf("later request: %v %v", ok, err)
	}
	// The replay of key, whose timestamp the sidecar found inside the
	// window a moment ago, reaches the cache only now.
	ok, err := c.add(key, t0.Add(window))
	if ok || !errors.Is(err, errReplayWindowPassed) {
		t.Fatalf("slow replay: fresh=%v err=%v, want refused with errReplayWindowPassed", ok, err)
	}
	// The clock is stepped back five minutes: a request signed by it is new.
	now = t0.Add(-5 * time.Minute)
	if ok, err := c.add([32]byte{9}, now.Add(window)); !ok || err != nil {
		t.Fatalf("after the clock stepped back: %v %v", ok, err)
	}
}

func TestParseRange(t *testing.T) {
	const size = 100
	for _, c := range []struct {
		h             string
		start, length int64
		partial, err  bool
	}{
		{"", 0, 100, false, false},
		{"bytes=0-9", 0, 10, true, false},
		{"bytes=90-", 90, 10, true, false},
		{"bytes=90-200", 90, 10, true, false},
		{"bytes=-5", 95, 5, true, false},
		{"bytes=-500", 0, 100, true, false},
		{"bytes=99-99", 99, 1, true, false},
		{"bytes=100-", 0, 0, false, true},
		{"bytes=-0", 0, 0, false, true},
		{"bytes=5-1", 0, 100, false, false},     // invalid: ignored
		{"bytes=0-1,5-6", 0, 100, false, false}, // several: ignored
		{"items=0-1", 0, 100, false, false},
		{"bytes=x-1", 0, 100, false, false},
	} {
		start, length, partial, err := parseRange(c.h, size)
		if start != c.start || length != c.length || partial != c.partial || (err != nil) != c.err {
			t.Errorf("parseRange(%q) = %d %d %v %v", c.h, start, length, partial, err)
		}
	}
}

func TestRangeHTTP(t *testing.T) {
	e := newEnv(t, nil)
	data := []byte("0123456789abcdefghij")
	sum := sha256.Sum256(data)
	if _, err := e.put(e.patient, data); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecord(e.pid, sum, e.patient)
	path := "/v1/blobs/" + hex.EncodeToString(sum[:]) + "?" + RecordRef(rec.PatientId, rec.Sequence).query()
	get := func(rng string) *http.Response {
		req := e.signed(e.patient, http.MethodGet, path, nil, false)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	// open reads the answer's body sealed to the patient.
	open := func(resp *http.Response) []byte {
		t.Helper()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		b, err := openAnswer(resp, body, e.patient.Enc, BlobAnswerContext(path, resp.Header.Get("Content-Range")))
		if err != nil {
			t.Fatalf("%d answer: %v", resp.StatusCode, err)
		}
		return b
	}
	resp := get("bytes=5-9")
	if b := open(resp); resp.StatusCode != 206 || string(b) != "56789" || resp.Header.Get("Content-Range") != "bytes 5-9/20" {
		t.Fatalf("range: %d %q %q", resp.StatusCode, b, resp.Header.Get("Content-Range"))
	}
	resp = get("bytes=-3")
	if b := open(resp); resp.StatusCode != 206 || string(b) != "hij" {
		t.Fatalf("suffix range: %d %q", resp.StatusCode, b)
	}
	// The client cuts a range at the end of the blob.
	if got, err := e.get(e.patient, RecordRef(rec.PatientId, rec.Sequence), sum, &Range{Start: 15, Length: 100}); err != nil || string(got) != "fghij" {
		t.Fatalf("client range past the end: %q %v", got, err)
	}
	if _, err := e.get(e.patient, RecordRef(rec.PatientId, rec.Sequence), sum, &Range{Start: 20, Length: 1}); statusOf(err) != 416 {
		t.Fatalf("client range beyond the end: %v", err)
	}
	resp = get("bytes=20-")
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != "bytes */20" {
		t.Fatalf("unsatisfiable: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	resp = get("")
	if b := open(resp); resp.StatusCode != 200 || !bytes.Equal(b, data) || resp.Header.Get("Content-Type") != "application/octet-stream" ||
		resp.Header.Get(HeaderSealedSize) != "20" {
		t.Fatalf("full: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestClientDetectsTamperedBlob: a sidecar that serves other bytes than
// the blob whole (a sidecar of its own cuts such a transfer short:
// TestSameSizeDamagedCopy) is caught by the client's hash check.
func TestClientDetectsTamperedBlob(t *testing.T) {
	data := []byte("honest ciphertext")
	sum := sha256.Sum256(data)
	signer := newActor("tampered blob reader")
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		corrupt := bytes.Clone(data)
		corrupt[0] ^= 1
		sealedAnswer(w, r, signer, corrupt, int64(len(corrupt)))
	}))
	t.Cleanup(liar.Close)
	var buf bytes.Buffer
	_, err := NewClient(liar.URL, signer, nil).Get(context.Background(), RecordRef(bytes.Repeat([]byte{1}, 32), 1), sum, &buf, nil)
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("tampered download: %v, want ErrHashMismatch", err)
	}
}

// TestHealthChecksAreShared: /healthz is anonymous, so however many ask,
// the store and the node are checked at most once a second, and the answer
// says what failed, not the error (which names hosts, paths and buckets).
func TestHealthChecksAreShared(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	headCalls := func() int {
		e.chain.mu.Lock()
		defer e.chain.mu.Unlock()
		return e.chain.headCalls
	}

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if status, h := e.health(t); status != 200 || h.Status != "ok" {
				t.Errorf("healthz: %d %+v", status, h)
			}
		})
	}
	wg.Wait()
	if n := headCalls(); n != 1 {
		t.Fatalf("20 callers within a second checked the node %d times, want 1", n)
	}

	e.chain.mu.Lock()
	e.chain.down = true
	e.chain.mu.Unlock()
	if status, _ := e.health(t); status != 200 {
		t.Fatalf("healthz within a second of the last check: %d, want its answer (200)", status)
	}
	clock.Add(int64(healthFresh))
	status, h := e.health(t)
	if status != 503 || h.Status != "unavailable" || h.ChainError == "" || h.BackendError != "" {
		t.Fatalf("healthz with the chain down: %d %+v", status, h)
	}
	if strings.Contains(h.ChainError, "fake chain is down") {
		t.Fatalf("healthz tells an anonymous caller the node's error: %q", h.ChainError)
	}
	if n := headCalls(); n != 2 {
		t.Fatalf("the node was checked %d times, want 2", n)
	}

	// A check slower than a second is shared too: callers that come while
	// it runs wait for its answer instead of each starting their own.
	clock.Add(int64(healthFresh))
	e.chain.mu.Lock()
	e.chain.down = false
	e.chain.onHead = func() {
		time.Sleep(100 * time.Millisecond) // the callers below arrive meanwhile
		clock.Add(int64(2 * healthFresh))
	}
	e.chain.mu.Unlock()
	for range 8 {
		wg.Go(func() {
			if status, h := e.health(t); status != 200 || h.Status != "ok" {
				t.Errorf("healthz during a slow check: %d %+v", status, h)
			}
		})
	}
	wg.Wait()
	if n := headCalls(); n != 3 {
		t.Fatalf("8 callers during one slow check checked the node %d more times, want 1", n-2)
	}
}

// TestHealthCheckThatHangs: a check that ignores its timeout (a store on
// a hung mount) is reported as not answering, callers are answered, and
// it is not started again until it returns.
func TestHealthCheckThatHangs(t *testing.T) {
	defer func(d time.Duration) { healthCheckTimeout = d }(healthCheckTimeout)
	healthCheckTimeout = 50 * time.Millisecond
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	release := make(chan struct{})
	e.chain.mu.Lock()
	e.chain.onHead = func() { <-release }
	e.chain.mu.Unlock()
	if status, h := e.health(t); status != 503 || !strings.Contains(h.ChainError, "did not answer within") {
		t.Fatalf("healthz with a hung node check: %d %+v", status, h)
	}
	clock.Add(int64(healthFresh))
	if status, h := e.health(t); status != 503 || !strings.Contains(h.ChainError, "has not answered a check begun") {
		t.Fatalf("healthz while the hung check has not returned: %d %+v", status, h)
	}
	close(release)
	for e.srv.health.chainBusy.Load() {
		time.Sleep(time.Millisecond)
	}
	e.chain.mu.Lock()
	calls := e.chain.headCalls
	e.chain.mu.Unlock()
	if calls != 1 {
		t.Fatalf("the hung check was started %d times, want once", calls)
	}
	clock.Add(int64(healthFresh))
	if status, h := e.health(t); status != 200 || h.Status != "ok" {
		t.Fatalf("healthz once the check returned: %d %+v", status, h)
	}
}

// hangingStore is a blob store whose Ping ignores its context until
// release is closed (a store on a hung mount).
type hangingStore struct {
	blobstore.Store
	release chan struct{}
}

func (h hangingStore) Ping(context.Context) error {
	<-h.release
	return nil
}

// TestHealthOfAHungStore: a hung store is reported as not answering, and
// the node, checked beside it, is still reported up (a check after the
// store's would find its time used up).
func TestHealthOfAHungStore(t *testing.T) {
	defer func(d time.Duration) { healthCheckTimeout = d }(healthCheckTimeout)
	healthCheckTimeout = 100 * time.Millisecond
	release := make(chan struct{})
	defer close(release)
	e := newEnv(t, func(o *Options) { o.Store = hangingStore{o.Store, release} })
	if status, h := e.health(t); status != 503 || !strings.Contains(h.BackendError, "did not answer within") || h.ChainError != "" || h.Height != 10 {
		t.Fatalf("healthz with a hung store: %d %+v, want the store not answering and the node up", status, h)
	}
}

// health asks the sidecar's /healthz.
func (e *env) health(t *testing.T) (int, Health) {
	t.Helper()
	resp, err := http.Get(e.ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, h
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, nil)
	data := []byte("metrics")
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	_, _ = e.put(e.reader, data) // 403
	resp, err := http.Get(e.ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h Health
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != 200 || h.Status != "ok" || h.Backend != "fs" || h.Height != 10 {
		t.Fatalf("healthz: %d %+v", resp.StatusCode, h)
	}
	resp, err = http.Get(e.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`emrchain_sidecar_requests_total{outcome="ok",route="put_blob"} 1`,
		`emrchain_sidecar_requests_total{outcome="forbidden",route="put_blob"} 1`,
		`emrchain_sidecar_bytes_in_total 7`,
		`emrchain_sidecar_request_duration_seconds_bucket{route="put_blob"`,
		`emrchain_sidecar_bytes_out_total`,
		`go_goroutines`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

// TestServerLifecycle: Start on a loopback port, serve, Shutdown.
func TestServerLifecycle(t *testing.T) {
	chain := newFakeChain(time.Now())
	store, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Store: store, Chain: chain, SweepInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	time.Sleep(120 * time.Millisecond) // a sweep or two
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + srv.Addr().String() + "/healthz"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
}

// TestMaxConnections: connections beyond MaxConnections are not served
// (they wait in the listen queue) until one of those served closes; idle
// connections could otherwise use up the node's file descriptors.
func TestMaxConnections(t *testing.T) {
	e := newEnv(t, nil)
	srv, err := New(Options{Store: e.store, Chain: e.chain, SweepInterval: -1, MaxConnections: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	addr := srv.Addr().String()
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	health := func(timeout time.Duration) error {
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := health(500 * time.Millisecond); err == nil {
		t.Fatal("a third connection was served while two idle ones held the limit")
	}
	idle[0].Close()
	if err := health(5 * time.Second); err != nil {
		t.Fatalf("after one idle connection closed: %v", err)
	}
	idle[1].Close()
}

// TestDownloadReaderThatStopsReading: a download whose reader stops
// reading is cut off after the idle timeout, so it no longer holds the
// handler and the blob's file for as long as it keeps the connection.
func TestDownloadReaderThatStopsReading(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.UploadIdleTimeout = 200 * time.Millisecond })
	data := bytes.Repeat([]byte("ciphertext"), 4<<20) // 40 MiB: more than the socket buffers
	sum := sha256.Sum256(data)
	e.chain.mu.Lock()
	e.chain.params.MaxBlobBytes = uint64(len(data))
	e.chain.mu.Unlock()
	if _, err := e.put(e.patient, data); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecord(e.pid, sum, e.patient)
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/blobs/"+hex.EncodeToString(sum[:])+"?"+RecordRef(e.pid, rec.Sequence).query(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := signRequestAt(req, e.patient, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // not reading
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading after the pause: %v (the server should have closed the connection)", err)
	}
	if len(got) >= len(data) {
		t.Fatalf("the whole %d-byte blob was sent to a reader that paused for 5 idle timeouts", len(data))
	}
}

// TestUnknownSignerOnANodeCatchingUp: a signer the node does not know yet
// while it catches up gets 503 (retry, or ask another sidecar), not a 401
// counted against its host's failed authentications; once the node is in
// sync, an unknown signer is refused with 401.
func TestUnknownSignerOnANodeCatchingUp(t *testing.T) {
	e := newEnv(t, nil)
	stranger := newActor("registered-elsewhere-first")
	e.chain.mu.Lock()
	e.chain.syncing = true
	e.chain.mu.Unlock()
	_, err := e.get(stranger, RecordRef(e.pid, 1), [32]byte{}, nil)
	wantStatus(t, err, http.StatusServiceUnavailable, "catching up")
	e.chain.mu.Lock()
	e.chain.syncing = false
	e.chain.mu.Unlock()
	_, err = e.get(stranger, RecordRef(e.pid, 1), [32]byte{}, nil)
	wantStatus(t, err, http.StatusUnauthorized, "not a member")
}

// lines is a Logger that keeps what it is told.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) Info(msg string, kv ...any)  { l.add(msg, kv) }
func (l *lines) Error(msg string, kv ...any) { l.add(msg, kv) }
func (l *lines) add(msg string, kv []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, strings.TrimSpace(fmt.Sprintln(append([]any{msg}, kv...)...)))
}

func (l *lines) with(part string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.all {
		if strings.Contains(s, part) {
			out = append(out, s)
		}
	}
	return out
}

// TestRefusalsAreLogged: a refused read is logged with who asked, from
// where and why; a client refused again and again within a second fills
// at most refusalLogsPerHost lines, and the next line says how many went
// unlogged.
func TestRefusalsAreLogged(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	log := &lines{}
	e := newEnv(t, func(o *Options) {
		o.Logger = log
		o.Now = func() time.Time { return time.Unix(0, clock.Load()) }
		o.ReplayPerSigner = -1
	})
	data := []byte("a record the reader has not read yet")
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	rec := e.chain.addRecord(e.pid, sum, e.writer)
	for range refusalLogsPerHost + 5 {
		_, err := e.get(e.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil)
		wantStatus(t, err, 403, "no committed access event")
	}
	refused := log.with("request refused")
	if len(refused) != refusalLogsPerHost {
		t.Fatalf("%d refusals logged in one second, want %d:\n%s", len(refused), refusalLogsPerHost, strings.Join(refused, "\n"))
	}
	for _, want := range []string{"get_blob", "403", "no committed access event", hex.EncodeToString(e.reader.Address()), "127.0.0.1"} {
		if !strings.Contains(strings.ToLower(refused[0]), strings.ToLower(want)) {
			t.Fatalf("the refusal's line lacks %q: %s", want, refused[0])
		}
	}
	clock.Add(int64(time.Second))
	_, err := e.get(e.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil)
	wantStatus(t, err, 403, "")
	if refused = log.with("request refused"); len(refused) != refusalLogsPerHost+1 || !strings.Contains(refused[len(refused)-1], "unlogged_before 5") {
		t.Fatalf("the first refusal of the next second: %q", refused[len(refused)-1])
	}

	// What a client sends is quoted in a reason, and logged, only in part.
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/blobs/"+hex.EncodeToString(sum[:]), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderAddress, hex.EncodeToString(e.reader.Address()))
	req.Header.Set(HeaderTimestamp, strings.Repeat("x", 60<<10))
	req.Header.Set(HeaderBodySHA256, emptySHA256)
	req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(make([]byte, 64)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	refused = log.with("request refused")
	if last := refused[len(refused)-1]; resp.StatusCode != http.StatusUnauthorized || len(body) > 2<<10 || len(last) > 2<<10 || !strings.Contains(last, "(61440 bytes)") {
		t.Fatalf("a 60 KiB timestamp: %d, a %d-byte answer, a %d-byte log line: %.300s", resp.StatusCode, len(body), len(last), last)
	}
}

// TestRefusalLogBudget: one host's refusals cannot keep another's out of
// the log, and all hosts together log at most perSecond a second.
func TestRefusalLogBudget(t *testing.T) {
	b := logBudget{perSecond: 8, perHost: 3}
	now := time.Unix(1000, 0)
	a, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	logged := func(host netip.Addr, n int) (ok int) {
		for range n {
			if yes, _ := b.take(now, host); yes {
				ok++
			}
		}
		return ok
	}
	if n := logged(a, 10); n != 3 {
		t.Fatalf("host a: %d logged of 10, want 3", n)
	}
	if ok, dropped := b.take(now, c); !ok || dropped != 7 {
		t.Fatalf("host c after a's flood: %v, %d unlogged before it, want logged after 7", ok, dropped)
	}
	for i := range 10 {
		logged(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 1)
	}
	if b.used != 8 {
		t.Fatalf("%d logged in one second, want at most 8", b.used)
	}
	now = now.Add(time.Second)
	if ok, dropped := b.take(now, a); !ok || dropped != 6 {
		t.Fatalf("the next second: %v, %d unlogged before it, want 6", ok, dropped)
	}
}

// TestStaleHeadIsRefused: a node that stopped advancing (cut off from the
// other validators) does not say it is catching up; it answers with its
// last block. The sidecar must not authorize by a head older than
// MaxHeadAge: here the head is two hours old, the reader's grant ended an
// hour ago by the wall clock, and its access event is two hours old, yet
// by the frozen head both still count. Both a GET and a PUT get 503
// chain_stale; with no bound (a chain that makes no empty blocks) the
// same GET is served.
func TestStaleHeadIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	data := []byte("a record read through a frozen node")
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	wall := time.Now()
	e.chain.mu.Lock()
	e.chain.head.Time = wall.Add(-2 * time.Hour)
	e.chain.mu.Unlock()
	rec := e.chain.addRecord(e.pid, sum, e.writer)
	reader := e.chain.addMember("stale-reader", emrv1.Role_ROLE_CLINICIAN, "hospital-b")
	e.chain.grant(e.pid, reader, wall.Add(-time.Hour), emrv1.Right_RIGHT_READ)
	e.chain.recordAccess(rec, reader, emrv1.Purpose_PURPOSE_TREATMENT)

	_, err := e.get(reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil)
	var se *Error
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable || se.Code != "chain_stale" {
		t.Fatalf("GET on a head 2h old: %v, want 503 chain_stale", err)
	}
	if _, err := e.put(e.writer, []byte("another upload")); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("PUT on a head 2h old: %v, want 503", err)
	}

	unbounded := newEnv(t, func(o *Options) { o.MaxHeadAge = -1 })
	if _, err := unbounded.put(unbounded.writer, data); err != nil {
		t.Fatal(err)
	}
	unbounded.chain.mu.Lock()
	unbounded.chain.head.Time = wall.Add(-2 * time.Hour)
	unbounded.chain.mu.Unlock()
	rec = unbounded.chain.addRecord(unbounded.pid, sum, unbounded.writer)
	unbounded.chain.recordAccess(rec, unbounded.reader, emrv1.Purpose_PURPOSE_TREATMENT)
	if _, err := unbounded.get(unbounded.reader, RecordRef(rec.PatientId, rec.Sequence), sum, nil); err != nil {
		t.Fatalf("with MaxHeadAge < 0 (no bound): %v", err)
	}
}

// TestHealthzSaysStale: while the head is older than MaxHeadAge every
// request is refused (chain_stale), so /healthz says unavailable too: a
// load balancer must not keep the sidecar in rotation.
func TestHealthzSaysStale(t *testing.T) {
	e := newEnv(t, nil)
	e.chain.mu.Lock()
	e.chain.head.Time = time.Now().Add(-2 * time.Hour)
	e.chain.mu.Unlock()
	if status, h := e.health(t); status == http.StatusOK || h.Status != "unavailable" || !strings.Contains(h.ChainError, "max_head_age") {
		t.Fatalf("healthz on a head 2h old: %d %+v", status, h)
	}
}

// TestClientHealth: Client.Health (what a download asks each sidecar
// before it logs a read) returns the answer of a sidecar that serves, and
// an *Error with the reason of one that does not (a stale head, a store
// not open), or with the answer of something that does not serve
// /healthz at all.
func TestClientHealth(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if h, err := NewClient(e.ts.URL, nil, nil).Health(ctx); err != nil || h.Status != "ok" || h.Height != 10 {
		t.Fatalf("Health of a sidecar that serves: %+v, %v", h, err)
	}
	e.chain.mu.Lock()
	e.chain.head.Time = time.Now().Add(-2 * time.Hour)
	e.chain.mu.Unlock()
	time.Sleep(healthFresh + 100*time.Millisecond) // past the cached answer
	var se *Error
	if _, err := NewClient(e.ts.URL, nil, nil).Health(ctx); !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable ||
		se.Code != "unavailable" || !strings.Contains(se.Reason, "max_head_age") {
		t.Fatalf("Health of a sidecar on a stale head: %v", err)
	}
	notOpen := httptest.NewServer(NotOpenHandler("minio", func() string { return "MinIO is not answering" }))
	defer notOpen.Close()
	if _, err := NewClient(notOpen.URL, nil, nil).Health(ctx); !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable ||
		err.Error() != "sidecar: 503 Service Unavailable: MinIO is not answering" {
		t.Fatalf("Health of a sidecar whose store is not open: %v", err)
	}
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	if _, err := NewClient(other.URL, nil, nil).Health(ctx); !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Fatalf("Health of a server without /healthz: %v, want its 404", err)
	}
}
