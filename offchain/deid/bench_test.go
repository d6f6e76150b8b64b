package deid

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// largeBundle is the synthetic bundle with its clinical entries repeated n
// times, each copy with its own ids and identifiers (as in a Synthea record
// of a long life: thousands of encounters, observations and claims).
func largeBundle(t testing.TB, n int) []byte {
	dec := json.NewDecoder(bytes.NewReader(readBundle(t)))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	entries := doc["entry"].([]any)
	out := append([]any{}, entries[:3]...) // Patient, Practitioner, Organization
	for i := 0; i < n; i++ {
		for j, e := range entries[3:] {
			var c map[string]any
			b := mustMarshal(e)
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			if err := d.Decode(&c); err != nil {
				t.Fatal(err)
			}
			r := c["resource"].(map[string]any)
			id := fmt.Sprintf("copy-%d-%d", i, j)
			c["fullUrl"] = "urn:uuid:" + id
			r["id"] = id
			r["identifier"] = []any{map[string]any{"system": "https://github.com/synthetichealth/synthea", "value": fmt.Sprintf("ident-%08d-%04d", i, j)}}
			out = append(out, c)
		}
	}
	doc["entry"] = out
	return mustMarshal(doc)
}

func BenchmarkDeidentifyLarge(b *testing.B) {
	in := largeBundle(b, 300) // about 4,000 resources
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := Deidentify(in, Options{Now: testNow}); err != nil {
			b.Fatal(err)
		}
	}
}
