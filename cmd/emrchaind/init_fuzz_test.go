package main

import (
	"strings"
	"testing"
)

// FuzzParseOrg: an --org flag is refused or read as a non-empty id without
// a colon, a non-empty name and a known kind, which written back as
// id:name:kind reads the same.
func FuzzParseOrg(f *testing.F) {
	for _, seed := range []string{"hosp-a:Hospital A:hospital", "lab1:Lab: North:LAB", "x::hospital", ":name:hospital", "a:b:", "a:b:unknown", "a:b:organization_kind_research", "a:b:c:pharmacy", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		org, err := parseOrg(s)
		if err != nil {
			if org != nil {
				t.Fatalf("%q refused (%v) with %v", s, err, org)
			}
			return
		}
		if org.Id == "" || strings.Contains(org.Id, ":") || org.Name == "" || org.Kind == 0 {
			t.Fatalf("%q read as %v", s, org)
		}
		word := strings.ToLower(strings.TrimPrefix(org.Kind.String(), "ORGANIZATION_KIND_"))
		again, err := parseOrg(org.Id + ":" + org.Name + ":" + word)
		if err != nil || again.Id != org.Id || again.Name != org.Name || again.Kind != org.Kind {
			t.Fatalf("%q read as %v, written back read as %v (%v)", s, org, again, err)
		}
	})
}
