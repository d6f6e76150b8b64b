package app_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// queryProven runs a Query service method over ABCI with prove set, as a
// verifying client (or anyone with the node's RPC) does.
func queryProven(t *testing.T, c *apptest.Chain, method string, req, resp proto.Message) {
	t.Helper()
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := c.App.Query(app.QueryPathPrefix+method, data, 0, true)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if err := proto.Unmarshal(out, resp); err != nil {
		t.Fatal(err)
	}
}

// TestRecordsCategoryScanIsBounded: a Records page with a category filter
// that few records match must not read (and, with prove, prove) every
// record of the patient: the work of one query is bounded by the page size,
// and paging on from Next still lists every matching record exactly once.
func TestRecordsCategoryScanIsBounded(t *testing.T) {
	const pageSize, records = 10, 250
	g := apptest.Consortium()
	g.Params.MaxPageSize = pageSize
	c := apptest.New(t, apptest.Options{Genesis: g})
	pat, pid := apptest.NewActor("patient-scan"), apptest.PatientID("patient-scan")
	c.Must(pat, apptest.Enroll(pat))

	// Records 1 and 250 are lab results, the others imaging.
	var want []uint64
	seq := c.Seq(pat.Address)
	for n := 1; n <= records; {
		var txs [][]byte
		for ; n <= records && len(txs) < 50; n++ {
			category := "imaging"
			if n == 1 || n == records {
				category = "lab-results"
				want = append(want, uint64(n))
			}
			txs = append(txs, pat.Tx(apptest.ChainID, seq, apptest.AddRecord(pid, category, fmt.Sprintf("scan-%d", n))))
			seq++
		}
		for i, res := range c.Block(txs...) {
			if !res.OK() {
				t.Fatalf("add record (tx %d): code %d: %s", i, res.Code, res.Log)
			}
		}
	}

	// One page after record 1, one item: it reads from record 2 on.
	var first emrv1.QueryRecordsResponse
	queryProven(t, c, "Records", &emrv1.QueryRecordsRequest{
		PatientId: fmt.Sprintf("%x", pid), Category: "lab-results", Page: &emrv1.PageRequest{After: 1, Limit: 1},
	}, &first)
	// The patient, the params and the records scanned.
	if max := 2 + 10*pageSize + 1; len(first.Proofs) > max {
		t.Errorf("a page of 1 lab result read and proved %d keys (of %d records); want at most %d", len(first.Proofs), records, max)
	}

	// Paging on from Next lists every lab result once, in order.
	var got []uint64
	var after uint64
	for pages := 0; ; pages++ {
		if pages > records {
			t.Fatalf("no end after %d pages", pages)
		}
		var resp emrv1.QueryRecordsResponse
		queryProven(t, c, "Records", &emrv1.QueryRecordsRequest{
			PatientId: fmt.Sprintf("%x", pid), Category: "lab-results", Page: &emrv1.PageRequest{After: after, Limit: 1},
		}, &resp)
		if resp.Page.GetTotal() != records {
			t.Fatalf("total %d, want %d", resp.Page.GetTotal(), records)
		}
		for _, r := range resp.Records {
			if r.Category != "lab-results" || r.Sequence <= after {
				t.Fatalf("page after %d holds record %d (%s)", after, r.Sequence, r.Category)
			}
			got = append(got, r.Sequence)
		}
		next := resp.Page.GetNext()
		if next == 0 {
			break
		}
		if next <= after {
			t.Fatalf("next %d does not move past %d", next, after)
		}
		after = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paging listed %v, want %v", got, want)
	}
}

// TestQueryErrorsDoNotEchoHugeInput: a query with a huge malformed id is
// refused with an error of bounded size: the error (a gRPC status message,
// a REST body, an ABCI log) does not quote the whole input, %q-escaped to
// up to four times its size.
func TestQueryErrorsDoNotEchoHugeInput(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	huge := strings.Repeat("\x01", 1<<20)
	for method, req := range map[string]proto.Message{
		"Member":         &emrv1.QueryMemberRequest{Address: huge},
		"Account":        &emrv1.QueryAccountRequest{Address: huge},
		"Patient":        &emrv1.QueryPatientRequest{PatientId: huge},
		"PatientByOwner": &emrv1.QueryPatientByOwnerRequest{Owner: huge},
		"Grants":         &emrv1.QueryGrantsRequest{Grantee: huge},
		"Records":        &emrv1.QueryRecordsRequest{PatientId: huge},
		"LastAccess":     &emrv1.QueryLastAccessRequest{PatientId: huge},
		"Organization":   &emrv1.QueryOrganizationRequest{Id: huge},
		"Study":          &emrv1.QueryStudyRequest{Id: huge},
	} {
		err := c.TryQuery(method, req, &emrv1.QueryMemberResponse{})
		if err == nil {
			t.Fatalf("%s with a huge id: no error", method)
		}
		if n := len(err.Error()); n > 1024 {
			t.Errorf("%s with an id of %d bytes: an error of %d bytes", method, len(huge), n)
		}
	}
}
