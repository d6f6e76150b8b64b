package main

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestOpenAPIEveryQueryRouteTakesHeight: every Query route documents the
// X-Emrchain-Height request and response header (decisions.md, session 37),
// as the server takes it on every route. A session-54 review found the
// document without it on EmergencyReads and BreakGlassLog (openapi.yaml
// listed 24 of the 26 methods): a client generated from it could not pin
// those reads to a height, nor page a break-glass log consistently. The
// count of routes keeps a new method from slipping through again.
func TestOpenAPIEveryQueryRouteTakesHeight(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct{ Name, In string }
			Responses   map[string]struct {
				Headers map[string]any `json:"headers"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(emrv1.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	seen := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !strings.HasPrefix(op.OperationID, "Query_") {
				continue
			}
			seen++
			takes := false
			for _, p := range op.Parameters {
				if p.In == "header" && http.CanonicalHeaderKey(p.Name) == heightHeader {
					takes = true
				}
			}
			_, answers := op.Responses["200"].Headers[heightHeader]
			if !takes || !answers {
				missing = append(missing, strings.ToUpper(method)+" "+path+" ("+op.OperationID+")")
			}
		}
	}
	if want := len(emrv1.Query_ServiceDesc.Methods); seen != want {
		t.Errorf("the document has %d Query routes, the service %d methods", seen, want)
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("Query routes whose OpenAPI operation documents no %s request or response header:\n  %s",
			heightHeader, strings.Join(missing, "\n  "))
	}
}
