package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cometbft/cometbft/libs/log"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
)

// newTestREST serves the REST handler over an in-memory chain on a
// loopback port (httptest); broadcasts are not wired.
func newTestREST(t *testing.T, c *apptest.Chain) *httptest.Server {
	t.Helper()
	q := newQueryServerOver(app.NewQueryService(c.App), log.NewNopLogger(), queriesPerCPU)
	txs := &txServer{app: c.App, mempoolMaxTxBytes: 1 << 20, timeout: time.Second,
		done: make(chan struct{}), waiters: make(chan struct{}, 1), logger: log.NewNopLogger()}
	h, err := newRESTHandler(q, txs, func() nodeHealth { return servingStatus(nodeHead{height: 1, time: time.Now()}, time.Now(), 0) }, nil,
		newHostFilter(defaultAllowedHosts), log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestRESTInvalidUTF8IsBadRequest: a REST parameter that is not UTF-8 (so
// cannot be a proto string) is the caller's mistake, 400 INVALID_ARGUMENT,
// not a 500 INTERNAL that the node logs as its own failure.
func TestRESTInvalidUTF8IsBadRequest(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	pat, pid := apptest.NewActor("patient-utf8"), apptest.PatientID("patient-utf8")
	c.Must(pat, apptest.Enroll(pat))
	srv := newTestREST(t, c)
	for _, path := range []string{
		"/emrchain/v1/organizations/%ff%fe",
		fmt.Sprintf("/emrchain/v1/patients/%x/records?category=%%ff", pid),
		"/emrchain/v1/studies/%c0",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e restErrorBody
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Status != "InvalidArgument" {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
}

// TestJSONPath: a query parameter given by its proto names is checked by
// its JSON form, the OpenAPI document's.
func TestJSONPath(t *testing.T) {
	for in, want := range map[string]string{
		"category": "category", "page.after": "page.after", "study_id": "studyId",
		"study_id.page_size": "studyId.pageSize", "a__b": "aB", "trailing_": "trailing",
	} {
		if got := jsonPath(in); got != want {
			t.Errorf("jsonPath(%q) = %q, want %q", in, got, want)
		}
	}
}
