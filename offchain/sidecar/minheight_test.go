package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestMinHeight: requests that say their client saw height 11 committed
// (HeaderMinHeight), at a sidecar whose node is at 10. A member's request
// is answered 503 chain_behind, with Retry-After, and not charged to its
// host. Once the node reaches 11 within MaxHeightWait, the request is
// judged at that height: a clinician registered in block 11 is then
// known (no access event yet: 403, not 401). A height the node has
// changes nothing; a header that is not a height is a bad request. A
// request no member signed (at the node's state) that waits in vain is
// charged like a failed authentication, so a host that signs nothing
// cannot keep requests waiting on the node for free.
func TestMinHeight(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxHeightWait = 200 * time.Millisecond
		o.FailedAuthPerMinute = 2 // the third charged failure is a 429
	})
	data := []byte("ciphertext of an x-ray report")
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	rec := e.chain.addRecord(e.pid, sum, e.writer)
	ref := RecordRef(rec.PatientId, rec.Sequence)

	// A clinician registered in block 11, which the node has not made.
	late := newActor("late")
	late.member = &emrv1.Member{Address: late.Address(), SignPubKey: late.PubKey(), Role: emrv1.Role_ROLE_CLINICIAN,
		OrganizationId: "hospital-a", Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE}
	get := func(a *actor, minHeight int64) error {
		t.Helper()
		c := e.client(a)
		c.MinHeight = minHeight
		var buf bytes.Buffer
		_, err := c.Get(context.Background(), ref, sum, &buf, nil)
		return err
	}
	behind := func(a *actor, height int64) {
		t.Helper()
		err := get(a, height)
		wantStatus(t, err, http.StatusServiceUnavailable, fmt.Sprintf("below height %d", height))
		if se := err.(*Error); se.Code != CodeChainBehind || se.RetryAfter != time.Second {
			t.Fatalf("node behind: code %q, Retry-After %s; want chain_behind, 1s", se.Code, se.RetryAfter)
		}
	}
	for range 3 {
		behind(e.reader, 11) // a member's: not charged
	}
	// Told a height the node has, the node judges what it has.
	wantStatus(t, get(e.reader, 10), http.StatusForbidden, "no committed access event")

	// The node makes block 11 while the request waits: the member is
	// judged at it (no access event yet: 403, not 401).
	e.chain.mu.Lock()
	polls := 0
	e.chain.onHead = func() { // runs under e.chain.mu
		if polls++; polls == 2 {
			e.chain.head.Height = 11
			e.chain.members[string(late.Address())] = late.member
		}
	}
	e.chain.mu.Unlock()
	wantStatus(t, get(late, 11), http.StatusForbidden, "no committed access event")

	for _, bad := range []string{"eleven", "-1", "0x0b", "99999999999999999999"} {
		req := e.signed(e.reader, http.MethodGet, "/v1/blobs/"+hex.EncodeToString(sum[:])+"?"+ref.query(), nil, false)
		req.Header.Set(HeaderMinHeight, bad)
		if status, body := doJSON(t, req); status != http.StatusBadRequest || body.Code != "bad_request" {
			t.Errorf("%s %q: %d %+v, want 400 bad_request", HeaderMinHeight, bad, status, body)
		}
	}
	// A key the node does not know (not yet, or never), waiting in vain
	// for block 12: charged, twice, then the host is refused.
	stranger := newActor("stranger")
	behind(stranger, 12)
	behind(stranger, 12)
	wantStatus(t, get(stranger, 12), http.StatusTooManyRequests, "too many failed authentications")
}
