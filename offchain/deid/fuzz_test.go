package deid

// FuzzDeidentify: Deidentify never panics; it fails only with ErrNotFHIR or
// ErrUnsupported; when it succeeds its output is valid JSON, deterministic,
// its references resolve inside it, none of its strings or numbers contains
// a Patient name, telecom or address value, an Identifier value or a
// resource id of the input (of 4 characters or more) or a full date, no
// year or age of it shows a person 90 or older, read from the output
// alone (no age beside a Patient marked 90 or older, none that the years
// linked to it date to 90 or more; see checkYears), and its states and
// countries are names (see checkOutput). The seed corpus in
// testdata/fuzz/FuzzDeidentify/ is written by
// `go test -run TestWriteFuzzSeeds -write-seeds` from the inputs of
// fuzzSeeds; `go test` runs it, `go test -fuzz=FuzzDeidentify` explores.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzDeidentify(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		opts := Options{Now: testNow}
		out, rep, err := Deidentify(in, opts)
		if err != nil {
			if !errors.Is(err, ErrNotFHIR) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unexpected error %v", err)
			}
			if out != nil || rep != nil {
				t.Fatal("output with an error")
			}
			return
		}
		if rep == nil || !json.Valid(out) {
			t.Fatalf("invalid output:\n%s", out)
		}
		again, _, err := Deidentify(in, opts)
		if err != nil || !bytes.Equal(out, again) {
			t.Fatal("not deterministic")
		}
		checkOutput(t, in, out)
	})
}

// FuzzMayHoldDate: the pre-check text runs before dateLike never turns
// away a string dateLike matches.
func FuzzMayHoldDate(f *testing.F) {
	for _, s := range []string{"4 Mar 19", "March 2019", "2019-03", "3/4/19", "20190304", "abc", "12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if dateLike.MatchString(s) && !mayHoldDate(s) {
			t.Fatalf("dateLike matches %q, which mayHoldDate turns away", s)
		}
	})
}

var (
	tokenRE    = regexp.MustCompile(`^de1d0c5e-de1d-8de1-ade1-[0-9]{12}$`)
	fullDateRE = regexp.MustCompile(`[0-9]{4}-[0-9]{2}`)
)

// allowedURLs are the extension URLs the output may contain.
func allowedURLs() map[string]bool {
	m := map[string]bool{URLDataAbsentReason: true, URLAge90OrOlder: true}
	var add func(*extSpec)
	add = func(s *extSpec) {
		m[s.url] = true
		for _, sub := range s.subs {
			add(sub)
		}
	}
	for _, s := range patientExtensions {
		add(s)
	}
	return m
}

// checkOutput checks a successful output (of Options{Now: testNow})
// against the identifying values of its input.
func checkOutput(t *testing.T, in, out []byte) {
	t.Helper()
	needles := slices.Concat(patientValues(in), identifierValues(in), idValues(in))
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("output is not a JSON object: %v", err)
	}
	checkYears(t, in, doc)
	checkNumbers(t, needles, out)
	var leaves []leaf
	stringLeaves(doc, "$", "", &leaves)
	urls := allowedURLs()
	targets := map[string]bool{}
	outputResources(doc, func(_, fullURL string, _ map[string]any) { targets[fullURL] = true })
	for _, l := range leaves {
		// The fixed strings of the output, which do not go through the
		// sweep: check that they are fixed.
		switch {
		case l.key == "resourceType":
			if resources[l.val] == nil && !(l.val == "Bundle" && l.path == "$.resourceType") {
				t.Errorf("%s = %q", l.path, l.val)
			}
			continue
		case l.key == "id":
			if !tokenRE.MatchString(l.val) {
				t.Errorf("%s = %q is not a token", l.path, l.val)
			}
			continue
		case l.key == "fullUrl" || l.key == "reference":
			if !strings.HasPrefix(l.val, "urn:uuid:") || !tokenRE.MatchString(l.val[9:]) {
				t.Errorf("%s = %q is not a token", l.path, l.val)
			}
			if l.key == "reference" && !targets[l.val] {
				t.Errorf("%s = %q resolves to nothing in the output", l.path, l.val)
			}
			continue
		case l.key == "url":
			if !urls[l.val] {
				t.Errorf("%s = %q is not a whitelisted extension URL", l.path, l.val)
			}
			continue
		case l.path == "$.type":
			if l.val != "collection" {
				t.Errorf("Bundle.type = %q", l.val)
			}
			continue
		}
		for _, n := range needles {
			if strings.Contains(l.val, n) {
				t.Errorf("%s = %q contains the input's %q", l.path, l.val, n)
				break
			}
		}
		if fullDateRE.MatchString(l.val) || strings.Contains(l.val, "@") {
			t.Errorf("%s = %q looks like a date or an e-mail address", l.path, l.val)
		}
		if (l.key == "state" || l.key == "country") && (len(l.val) > 40 || strings.ContainsAny(l.val, "0123456789,;:/#()\n\r\t")) {
			t.Errorf("%s = %q is no name of a state or country", l.path, l.val)
		}
	}
}

// checkNumbers checks that no number literal of the output holds a date or
// one of the needles, and that multipleBirthInteger is a birth order.
func checkNumbers(t *testing.T, needles []string, out []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any, path, key string)
	walk = func(v any, path, key string) {
		switch x := v.(type) {
		case json.Number:
			s := string(x)
			if dateLike.MatchString(s) {
				t.Errorf("%s = %s holds a date", path, s)
			}
			for _, n := range needles {
				if strings.Contains(s, n) {
					t.Errorf("%s = %s contains the input's %q", path, s, n)
					break
				}
			}
			if n, err := strconv.Atoi(s); key == "multipleBirthInteger" && (err != nil || n < 1 || n > 20) {
				t.Errorf("%s = %s is no birth order", path, s)
			}
		case []any:
			for i, e := range x {
				walk(e, path+"["+itoa(i)+"]", key)
			}
		case map[string]any:
			for k, e := range x {
				walk(e, path+"."+k, k)
			}
		}
	}
	walk(doc, "$", "")
}

// appendLongStrings appends to out every string in v, at any depth, as
// given and trimmed, when 4 characters or longer.
func appendLongStrings(out []string, v any) []string {
	leaves(v, func(x string) {
		for _, s := range []string{x, strings.TrimSpace(x)} {
			if utf8.RuneCountInString(s) >= 4 {
				out = append(out, s)
			}
		}
	})
	return out
}

// identifierValues returns the strings under the value of every Identifier
// element of a JSON input (members named identifier or ending in
// Identifier, at any depth), when 4 characters or longer.
func identifierValues(in []byte) []string {
	var root any
	if !decodeInput(in, &root) {
		return nil
	}
	var out []string
	eachObject(root, func(x map[string]any) {
		for k, e := range x {
			if k == "identifier" || strings.HasSuffix(k, "Identifier") {
				each(e, func(m map[string]any) { out = appendLongStrings(out, m["value"]) })
			}
		}
	})
	return out
}

// decodeInput decodes a JSON input as Deidentify reads it (a leading byte
// order mark skipped) into v, and reports whether it decoded.
func decodeInput(in []byte, v any) bool {
	return json.Unmarshal(bytes.TrimPrefix(in, []byte("\xef\xbb\xbf")), v) == nil
}

// idValues returns the ids of the resources of a JSON input (at any
// depth) and the ids its references and fullUrls name, those that idNeedle
// takes.
func idValues(in []byte) []string {
	var root any
	if !decodeInput(in, &root) {
		return nil
	}
	var out []string
	add := func(id string) {
		for _, s := range []string{id, strings.TrimSpace(id)} {
			if idNeedle(s) && utf8.RuneCountInString(s) >= 4 {
				out = append(out, s)
			}
		}
	}
	eachObject(root, func(x map[string]any) {
		if _, ok := x["resourceType"].(string); ok {
			if id, ok := x["id"].(string); ok {
				add(id)
			}
		}
		for _, k := range []string{"reference", "fullUrl"} {
			ref, ok := x[k].(string)
			if !ok || strings.Contains(ref, "?") || strings.HasPrefix(ref, "urn:oid:") {
				continue
			}
			ref, _, _ = strings.Cut(ref, "/_history/")
			ref = strings.TrimPrefix(strings.TrimPrefix(ref, "urn:uuid:"), "#")
			add(ref[strings.LastIndex(ref, "/")+1:])
		}
	})
	return out
}

// checkYears checks the years and ages of an output against the rules of
// "Ages over 89", reading everything from the output alone (see
// readOutput): that no year of a date element (but a Patient's birthDate)
// is 90 or more years before the reference year (see outputFacts.refYear);
// that no year of birth is 90 or more years before the latest year of the
// output or, for a person who may be alive, testNow's; that no age under
// 90 remains beside a Patient marked URLAge90OrOlder; and that no age A
// under 90 (its lower bound), with the earliest year Y of the events that
// date it (see outputFacts.datingYear), shows a person 90 or older
// (A + ref − Y ≥ 90), whatever its code. Of the input it reads only which
// Observations are dates of birth (see inputBirthObservations).
func checkYears(t *testing.T, in []byte, doc map[string]any) {
	t.Helper()
	f := readOutput(t, doc, inputBirthObservations(in))
	ref := f.refYear()
	for _, d := range f.dates {
		if ref-d.year >= 90 {
			t.Errorf("%s = %d: a year %d years before %d", d.path, d.year, ref-d.year, ref)
		}
	}
	for _, b := range f.births {
		ref := f.latest
		if b.alive {
			ref = max(ref, testNow.Year())
		}
		if ref-b.year >= 90 {
			t.Errorf("%s = %d: a year of birth %d years before %d", b.path, b.year, ref-b.year, ref)
		}
	}
	for _, a := range f.ages {
		if len(f.marked) > 0 {
			t.Errorf("%s = %v years kept beside the 90-or-older marker of %s", a.path, a.years, f.marked[0])
			continue
		}
		if !a.hasLow {
			continue
		}
		if y, ok := f.datingYear(a.n); ok && a.years+float64(ref-y) >= 90 {
			t.Errorf("%s = %v years in %s, dated %d: %v years old in %d", a.path, a.years, f.types[a.n], y, a.years+float64(ref-y), ref)
		}
	}
}

// outputFacts is what checkYears reads from a de-identified output. Its
// resources are numbered by their position in the output.
type outputFacts struct {
	dates    []outputYear  // the years of date elements, but Patients' birthDates
	births   []outputBirth // the years of birth
	latest   int           // the latest year of any date element
	types    []string      // the resource types
	first    map[int]int   // the earliest year of an event of each resource
	ages     []outputAge   // the ages under 90
	links    []outputLink  // the references between resources, neither a party
	patients int           // the number of Patients
	deceased int           // how many of them the output shows deceased
	marked   []string      // the paths of the Patients marked URLAge90OrOlder
}

// outputYear is the year of a date element of the output.
type outputYear struct {
	path string
	year int
}

// outputBirth is a year of birth of the output: a Patient's birthDate, or
// the value of a date of birth observation or component (of a person who
// may be alive).
type outputBirth struct {
	outputYear
	alive bool
}

// outputAge is an age under 90 years of the output, in resource n:
// years is its lower bound when hasLow (a Range's high alone has none).
type outputAge struct {
	path   string
	n      int
	years  float64
	hasLow bool
}

// outputLink is a reference of the output, from resource from's member
// field ("encounter", "result", ...) to resource to.
type outputLink struct {
	from, to int
	field    string
}

// readOutput reads the years, ages, references and Patients of a
// de-identified output. A year of birth (a Patient's birthDate, the
// valueDateTime of a date of birth observation or component) is the year
// of no event; birthObs are the positions of the date of birth
// Observations. The years must be years: anything else is an error.
func readOutput(t *testing.T, doc map[string]any, birthObs map[int]bool) *outputFacts {
	t.Helper()
	f := &outputFacts{first: map[int]int{}}
	tokens := map[string]int{} // fullUrl → position
	type pending struct {
		from       int
		field, ref string
	}
	var refs []pending
	outputResources(doc, func(path, fullURL string, res map[string]any) {
		n := len(f.types)
		typ := res["resourceType"].(string)
		f.types = append(f.types, typ)
		tokens[fullURL] = n
		mayBeAlive := true // the person whose year of birth res may hold
		if typ == "Patient" {
			mayBeAlive = f.readPatient(path, res)
		}
		births := map[string]bool{} // the paths of date of birth observations and components
		if typ == "Observation" {
			f.ages = append(f.ages, valueAges(res, path, n)...)
			births[path] = birthObs[n]
		}
		walkSchema(res, resources[typ].schema, path, func(p, k string, e elem, v any) {
			switch {
			case k == "component" && typ == "Observation":
				if m, ok := v.(map[string]any); ok {
					f.ages = append(f.ages, valueAges(m, p, n)...)
					if hasCoding(m["code"], isBirthDateCoding) {
						births[p] = true
					}
				}
			case e.kind == kObject && (e.sub == age.sub || e.sub == ageRange.sub.fields[0].e.sub || e.sub == ageRange.sub.fields[1].e.sub):
				if y, ok := ageValue(v, false); ok && y < 90 { // a Range's high alone is no lower bound
					f.ages = append(f.ages, outputAge{path: p, n: n, years: y, hasLow: e.sub != ageRange.sub.fields[1].e.sub})
				}
			case e.kind == kReference:
				if r, ok := get(v, "reference").(string); ok {
					refs = append(refs, pending{n, k, r})
				}
			case e.kind == kDate:
				s, _ := v.(string)
				y, err := strconv.Atoi(s)
				if err != nil || len(s) != 4 {
					t.Errorf("%s = %v is not a year", p, v)
					return
				}
				f.latest = max(f.latest, y)
				patientBirth := k == "birthDate" && typ == "Patient"
				switch {
				case patientBirth && y == 0:
					// "0000" is no FHIR year (they start at 0001) nor
					// anyone's year of birth; Deidentify takes it for no
					// birthDate, and keeps it.
				case patientBirth || k == "valueDateTime" && births[strings.TrimSuffix(p, ".valueDateTime")]:
					f.births = append(f.births, outputBirth{outputYear{p, y}, mayBeAlive})
				default:
					if first, ok := f.first[n]; !ok || y < first {
						f.first[n] = y
					}
				}
				if !patientBirth {
					f.dates = append(f.dates, outputYear{p, y})
				}
			}
		})
	})
	for _, r := range refs {
		if to, ok := tokens[r.ref]; ok && !f.party(r.from) && !f.party(to) {
			f.links = append(f.links, outputLink{r.from, to, r.field})
		}
	}
	return f
}

// inputBirthObservations returns the positions, among the resources of a
// FHIR JSON input that Deidentify keeps (those of its output, in order), of
// the date of birth Observations. Deidentify knows them by the input's
// code, which the sweep may take from the output (a Patient named "loinc"
// takes the system "http://loinc.org" with it); a component by its code in
// the output, which readOutput reads.
func inputBirthObservations(in []byte) map[int]bool {
	root, err := parse(in)
	if err != nil {
		return nil
	}
	all := []any{root}
	if root["resourceType"] == "Bundle" {
		all = nil
		for _, e := range asArray(root["entry"]) {
			all = append(all, get(e, "resource"))
		}
	}
	births := map[int]bool{}
	n := 0
	for _, r := range all {
		m, ok := r.(map[string]any)
		rt, _ := m["resourceType"].(string)
		if !ok || resources[rt] == nil || hasModifierExtension(m) {
			continue // dropped (a nested Bundle too: resources has none)
		}
		if rt == "Observation" && hasCoding(m["code"], isBirthDateCoding) {
			births[n] = true
		}
		n++
	}
	return births
}

// readPatient notes the Patient res (at path), whether it carries the
// URLAge90OrOlder marker, and whether it is deceased as the output shows it
// (deceasedBoolean true or a deceasedDateTime); it reports whether the
// Patient may be alive.
func (f *outputFacts) readPatient(path string, res map[string]any) (alive bool) {
	f.patients++
	for _, e := range asArray(res["extension"]) {
		if get(e, "url") == URLAge90OrOlder && get(e, "valueBoolean") == true {
			f.marked = append(f.marked, path)
		}
	}
	if res["deceasedBoolean"] == true || res["deceasedDateTime"] != nil {
		f.deceased++
		return false
	}
	return true
}

// valueAges returns the ages under 90 of an Observation's or a
// component's value (m, at path p, in resource n). Coded as an age, its
// valueInteger, valueQuantity and valueRange are ages whatever their unit;
// under another code, its valueQuantity and valueRange are when in a unit
// of time. A valueRange is an age when a bound is under 90; its low, when
// it has one, is the age's lower bound.
func valueAges(m map[string]any, p string, n int) []outputAge {
	coded := hasAgeCode(m["code"])
	var ages []outputAge
	if v, ok := m["valueInteger"].(float64); ok && coded && v < 90 {
		ages = append(ages, outputAge{path: p + ".valueInteger", n: n, years: v, hasLow: true})
	}
	if y, ok := ageValue(m["valueQuantity"], coded); ok && y < 90 {
		ages = append(ages, outputAge{path: p + ".valueQuantity", n: n, years: y, hasLow: true})
	}
	low, hasLow := ageValue(get(m, "valueRange", "low"), coded)
	high, hasHigh := ageValue(get(m, "valueRange", "high"), coded)
	if hasLow && low < 90 || hasHigh && high < 90 {
		ages = append(ages, outputAge{path: p + ".valueRange", n: n, years: low, hasLow: hasLow})
	}
	return ages
}

// refYear is the year at which the people of the output are judged:
// testNow's, or, when the output holds Patients and shows every one of
// them deceased, the latest year of the output if earlier.
func (f *outputFacts) refYear() int {
	if f.patients == 0 || f.deceased < f.patients {
		return testNow.Year()
	}
	return min(testNow.Year(), f.latest)
}

// datingYear returns the earliest year of the events that date the ages of
// resource n, if there is one: the years of n; of the resources one
// reference away from it, either way; of those that place any of these in
// their time, however far (see placedIn); and, for any of these without a
// year of its own, of the resources one reference away from it. A Patient,
// Practitioner or Organization dates nothing and links nothing (see
// eventNeighbours).
func (f *outputFacts) datingYear(n int) (year int, ok bool) {
	reached := f.placedIn(append([]int{n}, f.eventNeighbours(n)...))
	dating := reached
	for _, m := range reached {
		if _, dated := f.first[m]; !dated {
			dating = append(dating, f.eventNeighbours(m)...)
		}
	}
	for _, m := range dating {
		if y, has := f.first[m]; has && (!ok || y < year) {
			year, ok = y, true
		}
	}
	return year, ok
}

// eventNeighbours returns the resources one reference away from resource
// n, either way (links hold no party: a Patient's, Practitioner's or
// Organization's years are a birth, a death or a period of work).
func (f *outputFacts) eventNeighbours(n int) []int {
	var out []int
	for _, l := range f.links {
		if l.from == n {
			out = append(out, l.to)
		}
		if l.to == n {
			out = append(out, l.from)
		}
	}
	return out
}

// placedIn returns the resources of start and those that place any of
// them in their time, however far: the target of an encounter or partOf
// reference, the source of a result or hasMember reference; never a party.
func (f *outputFacts) placedIn(start []int) []int {
	seen := map[int]bool{}
	var out []int
	for len(start) > 0 {
		m := start[len(start)-1]
		start = start[:len(start)-1]
		if seen[m] {
			continue
		}
		seen[m] = true
		out = append(out, m)
		for _, l := range f.links {
			switch {
			case l.from == m && (l.field == "encounter" || l.field == "partOf"):
				start = append(start, l.to)
			case l.to == m && (l.field == "result" || l.field == "hasMember"):
				start = append(start, l.from)
			}
		}
	}
	return out
}

// party reports whether resource n is a Patient, Practitioner or
// Organization.
func (f *outputFacts) party(n int) bool {
	switch f.types[n] {
	case "Patient", "Practitioner", "Organization":
		return true
	}
	return false
}

// ageValue returns the value in years of a Quantity of the output (a
// decoded JSON object), when its unit is one of time as Deidentify reads
// it (a UCUM code, or a unit as textUnit reads it), or, if unitless, its
// value whatever its unit.
func ageValue(q any, unitless bool) (float64, bool) {
	m, ok := q.(map[string]any)
	if !ok {
		return 0, false
	}
	v, ok := m["value"].(float64)
	if !ok {
		return 0, false
	}
	for _, k := range []string{"code", "unit"} {
		u, _ := m[k].(string)
		if y, ok := ucumTime[u]; ok {
			return v * y, true
		}
		if y, ok := textUnit(u); ok {
			return v * y, true
		}
	}
	return v, unitless
}

// outputResources calls f with each resource of a de-identified output,
// its path and its fullUrl (a lone resource's is "urn:uuid:" and its id).
func outputResources(doc map[string]any, f func(path, fullURL string, res map[string]any)) {
	if doc["resourceType"] != "Bundle" {
		id, _ := doc["id"].(string)
		f("$", "urn:uuid:"+id, doc)
		return
	}
	entries, _ := doc["entry"].([]any)
	for i, e := range entries {
		if r, ok := get(e, "resource").(map[string]any); ok {
			fu, _ := get(e, "fullUrl").(string)
			f("$.entry["+itoa(i)+"].resource", fu, r)
		}
	}
}

// walkSchema calls f with every element of the output object m (of schema
// s, at path p) that the whitelist lists, with its member name and
// element, at any depth.
func walkSchema(m map[string]any, s *schema, p string, f func(path, key string, e elem, v any)) {
	for k, v := range m {
		i, ok := s.index[k]
		if !ok {
			continue
		}
		e := s.fields[i].e
		vals, paths := []any{v}, []string{p + "." + k}
		if a, ok := v.([]any); ok && e.many {
			vals, paths = a, nil
			for j := range a {
				paths = append(paths, p+"."+k+"["+itoa(j)+"]")
			}
		}
		for j, x := range vals {
			f(paths[j], k, e, x)
			if sub, ok := x.(map[string]any); ok && e.kind == kObject {
				walkSchema(sub, e.sub, paths[j], f)
			}
		}
	}
}

// patientValues returns the name, telecom and address values (state and
// country excepted, Safe Harbor keeps them) of the Patients of a FHIR JSON
// input, as they are and trimmed, when 4 characters or longer.
func patientValues(in []byte) []string {
	var root map[string]any
	if !decodeInput(in, &root) {
		return nil
	}
	var patients []map[string]any
	switch root["resourceType"] {
	case "Patient":
		patients = append(patients, root)
	case "Bundle":
		entries, _ := root["entry"].([]any)
		for _, e := range entries {
			if r, ok := get(e, "resource").(map[string]any); ok && r["resourceType"] == "Patient" {
				patients = append(patients, r)
			}
		}
	}
	var out []string
	collect := func(v any) { out = appendLongStrings(out, v) }
	members := func(v any, keys ...string) {
		objs, ok := v.([]any)
		if !ok {
			objs = []any{v}
		}
		for _, o := range objs {
			if m, ok := o.(map[string]any); ok {
				for _, k := range keys {
					collect(m[k])
				}
			}
		}
	}
	for _, p := range patients {
		members(p["name"], "text", "family", "given", "prefix", "suffix")
		members(p["telecom"], "value")
		members(p["address"], "text", "line", "city", "district", "postalCode")
	}
	return out
}

var writeSeeds = flag.Bool("write-seeds", false, "rewrite testdata/fuzz/FuzzDeidentify from fuzzSeeds")

// fuzzSeeds are the inputs of the seed corpus.
func fuzzSeeds(t *testing.T) map[string][]byte {
	old := func(member string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[
{"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Abernathy","given":["Eldon"]}],
 "birthDate":"1929-01-30",` + member + `"telecom":[{"system":"phone","value":"555-201-7788"}],
 "address":[{"line":["1 Old Mill Rd"],"city":"Pittsfield","state":"MA","postalCode":"01201"}]}},
{"fullUrl":"urn:uuid:o1","resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"30525-0","display":"Age"}]},
 "subject":{"reference":"urn:uuid:p1"},"effectiveDateTime":"2020-05-05","valueQuantity":{"value":91,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}},
{"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"49436004","display":"Atrial fibrillation"}]},
 "subject":{"reference":"urn:uuid:p1"},"onsetAge":{"value":1090,"unit":"months","system":"http://unitsofmeasure.org","code":"mo"},
 "onsetRange":{"low":{"value":88,"code":"a"},"high":{"value":93,"code":"a"}}}}]}`
	}
	// The linked ages of ages_linked_test.go, small: a Bundle of entries,
	// each a resource with the fullUrl urn:uuid:name; an age of 80 years
	// that an event of 2000 dates (105 in 2025), linked in each way that
	// dates it; ages in years under a code not known as an age.
	entry := func(name, res string) string {
		return `{"fullUrl":"urn:uuid:` + name + `","resource":{` + res + `}}`
	}
	bundle := func(entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",\n") + `]}`)
	}
	const (
		patient = `"resourceType":"Patient","gender":"female"`
		subject = `"subject":{"reference":"urn:uuid:p"}`
		age80   = `"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},` +
			subject + `,"valueQuantity":{"value":80,"unit":"years","code":"a"}`
		onset80 = `"resourceType":"Condition",` + subject + `,"onsetAge":{"value":80,"unit":"years","code":"a"}`
		enc2000 = `"resourceType":"Encounter",` + subject + `,"period":{"start":"2000-05-01"}`
	)
	return map[string][]byte{
		"linked_encounter": bundle(entry("p", patient), entry("e", enc2000),
			entry("c", onset80+`,"encounter":{"reference":"urn:uuid:e"}`)),
		"linked_two_hop_report": bundle(entry("p", patient),
			entry("r", `"resourceType":"DiagnosticReport",`+subject+`,"effectiveDateTime":"2000","result":[{"reference":"urn:uuid:g"}]`),
			entry("g", `"resourceType":"Observation",`+subject+`,"hasMember":[{"reference":"urn:uuid:a"}]`),
			entry("a", age80)),
		"linked_two_hop_encounter": bundle(entry("p", patient), entry("e", enc2000),
			entry("s", `"resourceType":"Encounter",`+subject+`,"partOf":{"reference":"urn:uuid:e"}`),
			entry("c", onset80+`,"encounter":{"reference":"urn:uuid:s"}`)),
		// The Encounter's period and the age's date are lost (+0000).
		"linked_sibling": bundle(entry("p", patient),
			entry("e", `"resourceType":"Encounter",`+subject+`,"period":{"start":"2000-05-01T10:00:00+0000"}`),
			entry("a", age80+`,"encounter":{"reference":"urn:uuid:e"},"effectiveDateTime":"2000-05-01T10:05:00+0000"`),
			entry("c", `"resourceType":"Condition",`+subject+`,"encounter":{"reference":"urn:uuid:e"},"recordedDate":"2000"`)),
		"linked_lists_it_diagnosis": bundle(entry("p", patient), entry("e", enc2000),
			entry("s", `"resourceType":"Encounter",`+subject+`,"partOf":{"reference":"urn:uuid:e"},"diagnosis":[{"condition":{"reference":"urn:uuid:c"}}]`),
			entry("c", onset80)),
		"linked_lists_it_report": bundle(entry("p", patient),
			entry("x", `"resourceType":"Procedure",`+subject+`,"performedDateTime":"2000","report":[{"reference":"urn:uuid:r"}]`),
			entry("r", `"resourceType":"DiagnosticReport",`+subject+`,"result":[{"reference":"urn:uuid:a"}]`),
			entry("a", age80)),
		// A mother's age beside the patient's kept birth year.
		"uncoded_beside_birth_year": bundle(entry("p", patient+`,"birthDate":"1985"`),
			entry("o", `"resourceType":"Observation","code":{"coding":[{"code":"mother-age"}]},`+subject+
				`,"effectiveDateTime":"2000","valueQuantity":{"value":80,"unit":"years","code":"a"}`)),
		// An age at onset beside a masked year of birth: 2015 - 85 = 1930.
		"uncoded_masked_birth_year": bundle(entry("p", patient+`,"birthDate":"1930"`),
			entry("o", `"resourceType":"Observation","code":{"coding":[{"code":"onset-age"}]},`+subject+
				`,"effectiveDateTime":"2015","valueQuantity":{"value":85,"unit":"years"}`)),
		// A duration of a patient who keeps a birth year, dated by its
		// onset (49 + 2025 - 1975): it goes alone, the patient's age stays.
		"uncoded_duration_younger": bundle(entry("p", patient+`,"birthDate":"1955"`),
			entry("d", `"resourceType":"Condition",`+subject+`,"onsetDateTime":"1975","evidence":[{"detail":[{"reference":"urn:uuid:o"}]}]`),
			entry("o", `"resourceType":"Observation","code":{"coding":[{"code":"duration"}]},`+subject+
				`,"effectiveDateTime":"2024","valueQuantity":{"value":49,"unit":"a"}`),
			entry("c", `"resourceType":"Condition",`+subject+`,"recordedDate":"2015","onsetAge":{"value":58,"code":"a"}`)),
		// A death the output loses (+0000) reads as a living patient of 95.
		"lost_death": bundle(entry("p", patient+`,"birthDate":"1930","deceasedDateTime":"2023-02-05T10:00:00+0000"`),
			entry("e", `"resourceType":"Encounter",`+subject+`,"period":{"start":"2015"}`)),
		// Two values on one Observation (FHIR allows one): an age in each.
		"two_values_coded": []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","birthDate":"1930"}},
{"resource":{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2015","valueInteger":85,"valueQuantity":{"value":85,"unit":"a"}}}]}`),
		"two_values_uncoded": []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","birthDate":"1930"}},
{"resource":{"resourceType":"Observation","code":{"coding":[{"code":"x"}]},"subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2015","valueQuantity":{"value":3,"unit":"kg"},"valueRange":{"low":{"value":85,"unit":"a"}}}}]}`),
		// The input's own 90-or-older marker, and an age with its year.
		"input_marker": []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","extension":[{"url":"urn:emrchain:fhir:StructureDefinition:age-90-or-older","valueBoolean":true}]}},
{"resource":{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2024","valueInteger":88}}]}`),
		"input_marker_false": []byte(`{"resourceType":"Patient","birthDate":"1920","extension":[{"url":"urn:emrchain:fhir:StructureDefinition:age-90-or-older","valueBoolean":false}]}`),
		// A death 90 years before the record's last event.
		"death_before_events": []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","deceasedDateTime":"1920"}},
{"resource":{"resourceType":"Encounter","subject":{"reference":"urn:uuid:p"},"period":{"start":"1935","end":"2010"}}}]}`),
		// A panel dated only by a component that does not reach the output.
		"dropped_year": []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient"}},
{"fullUrl":"urn:uuid:g","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:p"},"hasMember":[{"reference":"urn:uuid:a"},{"reference":"urn:uuid:s"}],"component":[{"valuePeriod":{"start":"2020"}}]}},
{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"subject":{"reference":"urn:uuid:p"},"valueInteger":80}},
{"fullUrl":"urn:uuid:s","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2000"}}]}`),
		// Components after one dropped for want of a code: their sites are
		// named by their input position.
		"component_after_a_dropped_one": []byte(`{"resourceType":"Observation","status":"final",
	  "code":{"coding":[{"system":"http://loinc.org","code":"11111-1"}]},
	  "component":[
	    {"valueBoolean":true},
	    {"code":{"coding":[{"system":"http://loinc.org","code":"22222-2"}]},"valuePeriod":{"start":"1920"}},
	    {"code":{"coding":[{"system":"http://loinc.org","code":"33333-3"}]},"valuePeriod":{"start":"2000"},"valueBoolean":true}
	  ]}`),
		"component_after_a_dropped_one_dates_nothing": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
	{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient"}},
	{"fullUrl":"urn:uuid:g","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:p"},
	  "hasMember":[{"reference":"urn:uuid:a"},{"reference":"urn:uuid:s"}],
	  "component":[
	    {"valueBoolean":true},
	    {"code":{"coding":[{"system":"http://loinc.org","code":"22222-2"}]},"valuePeriod":{"start":"2020"},"valueBoolean":true}
	  ]}},
	{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"subject":{"reference":"urn:uuid:p"},"valueInteger":80}},
	{"fullUrl":"urn:uuid:s","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2000"}}]}`),
		// A death whose year goes (0000, or beside a living patient) reads as
		// alive.
		"death_0000": []byte(`{"resourceType":"Patient","birthDate":"1930","deceasedDateTime":"0000"}`),
		"death_beside_a_living_patient": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
	{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient","gender":"female"}},
	{"fullUrl":"urn:uuid:b","resource":{"resourceType":"Patient","birthDate":"1934","deceasedDateTime":"1935"}},
	{"resource":{"resourceType":"Encounter","subject":{"reference":"urn:uuid:a"},"period":{"start":"2020"}}}]}`),
		"death_0000_before_events": []byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","deceasedDateTime":"0000"}},{"resource":{"resourceType":"Encounter","period":{"end":"1000"}}}]}`),
		// A number past a float64's range, which no reader holds.
		"number_past_float64": []byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","component":[{"code":{"coding":[{"code":"0"}]},"valueQuantity":{"value":1e700}}]}}]}`),
		// A year 0000 (no FHIR year) as a birthDate, which stays.
		"birth_year_0000":  []byte(`{"resourceType":"Patient","birthDate":"0000"}`),
		"synthetic_bundle": readBundle(t),
		"patient": []byte(`{"resourceType":"Patient","id":"p","identifier":[{"value":"MRN-1"}],
 "name":[{"text":"Ana Lucia Souza","family":"Souza","given":["Ana","Lucia"]}],
 "telecom":[{"system":"email","value":"ana@example.org"},{"system":"phone","value":"+55 11 5555-0101"}],
 "gender":"female","birthDate":"1990-02-03","address":[{"line":["Rua Augusta 1500"],"city":"Sao Paulo","state":"SP","country":"BR","postalCode":"01304-001"}],
 "maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"S","display":"Never Married"}]}}`),
		"old_patient":          []byte(old("")),
		"old_patient_deceased": []byte(old(`"deceasedDateTime":"2010-01-01",`)),
		// Names that collide with the strings the output would contain.
		"colliding_names": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:x","resource":{"resourceType":"Patient","id":"x","gender":"male",
 "name":[{"family":"Patient","given":["final","male","collection","masked","years","2019"],"prefix":["http"],"suffix":["urn:uuid:"]}],
 "telecom":[{"system":"phone","value":"2106-3"},{"value":"unitsofmeasure"}],
 "address":[{"city":"Observation","district":"loinc","line":["Body Weight","de1d0c5e"],"state":"Massachusetts","postalCode":"ombCategory"}],
 "birthDate":"2019-01-01","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
 "extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},{"url":"text","valueString":"White"}]}]}},
{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body Weight"}]},
 "subject":{"reference":"Patient/x"},"effectiveDateTime":"2019-04-04","valueQuantity":{"value":70,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}}]}`),
		// Malformed shapes: objects for arrays and back, strings for numbers, nulls.
		"malformed": []byte(`{"resourceType":"Bundle","type":7,"entry":[
{"resource":{"resourceType":"Patient","name":{"family":"Kowalczyk","given":"Zofia"},"telecom":{"value":"555-0199"},
 "address":{"line":"12 Quay St","city":["Cork"]},"birthDate":19800101,"gender":null,"active":"true",
 "extension":{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"F"}}},
{"resource":{"resourceType":"Observation","status":["final"],"code":{"coding":{"code":"x"}},"valueQuantity":{"value":"98","unit":7},
 "subject":{"reference":null},"effectiveDateTime":"yesterday","component":[null,{"code":null},{"code":{"coding":[{"code":"8480-6"}]},"valueQuantity":{"value":1e400,"code":"a"}}]}},
{"resource":null},{"resource":{"resourceType":"Encounter","period":{"start":"2019-13-45T99:99"},"class":"AMB"}},
null,[],{"fullUrl":7,"resource":{"resourceType":"Condition","subject":"Patient/1","onsetAge":{"value":-5,"unit":"a"}}}]}`),
		"unicode": []byte("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\u017b\u00f3\u0142\u0107\",\"given\":[\"\u0141ukasz\",\"\u738b\u82b3\"],\"text\":\"\xff\xfeBad UTF-8 name\"}]," +
			"\"address\":[{\"city\":\"\u0130STANBUL\",\"country\":\"TR\"}],\"telecom\":[{\"value\":\"\\u0000\\ud800tel\"}]," +
			"\"maritalStatus\":{\"coding\":[{\"code\":\"M\",\"display\":\"istanbul \u017c\u00f3\u0142\u0107 \u738b\u82b3\"}]}}"),
		"references": []byte(`{"resourceType":"Bundle","type":"searchset","entry":[
{"fullUrl":"https://ehr.example.org/fhir/Practitioner/d1","resource":{"resourceType":"Practitioner","id":"d1","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}],"name":[{"family":"Osei"}]}},
{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","contained":[{"resourceType":"RelatedPerson","id":"r"}],
 "generalPractitioner":[{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi%7C1234567893"},{"reference":"#r"},{"reference":"Practitioner/d1/_history/2"}],
 "managingOrganization":{"reference":"Organization/nowhere","display":"Nowhere Clinic"}}},
{"resource":{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Hidden"}]}}]}},
{"resource":{"resourceType":"Encounter","status":"finished","subject":{"reference":"urn:uuid:p"},"participant":[{"individual":{"reference":"Practitioner?identifier=1234567893"}}],
 "modifierExtension":[]}}]}`),
		// A date of birth as an Observation, for a patient over 89.
		"dob_observation": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","birthDate":"1920-05-01"}},
{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"21112-8"}]},
 "subject":{"reference":"urn:uuid:p"},"valueDateTime":"1920-05-01",
 "component":[{"code":{"coding":[{"system":"http://snomed.info/sct","code":"184099003"}]},"valueDateTime":"1920-05-01"}]}}]}`),
		// An estimated age as a range without a unit, over 89.
		"age_range": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","birthDate":"1920-05-01"}},
{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"21611-9"}]},
 "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2015","valueRange":{"low":{"value":95},"high":{"value":99}},
 "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"valueRange":{"low":{"value":85,"unit":"a"},"high":{"value":86}}}]}}]}`),
		// Identifiers below the top level, repeated in a coding.
		"nested_identifiers": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"8867-4","display":"MRN-7734120 / GRP-7781"}]},
 "subject":{"identifier":{"value":"MRN-7734120"}}}},
{"resource":{"resourceType":"MedicationRequest","status":"active","intent":"order","groupIdentifier":{"value":"GRP-7781"}}}]}`),
		// People inside resources, repeated in a coding.
		"nested_people": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"resource":{"resourceType":"Patient","contained":[{"resourceType":"RelatedPerson","name":[{"family":"Quigley"}]}]}},
{"resource":{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Oberbrunner"}]}}]}},
{"resource":{"resourceType":"Condition","code":{"coding":[{"code":"x1","display":"Quigley, Oberbrunner"}]}}}]}`),
		// Dates in codings, in notations other than ISO.
		"date_notations": []byte(`{"resourceType":"Condition","code":{"coding":[{"code":"20190304091500","display":"collected 04-Mar-2019"},
 {"code":"x2","display":"since March 2019, seen 2019/3/4 and 04MAR2019"}]}}`),
		// A name in capitals, in mixed case in a coding (Greek final sigma).
		"case_folding": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"resource":{"resourceType":"Patient","name":[{"family":"ΟΔΥΣΣΕΑΣ"}]}},
{"resource":{"resourceType":"Condition","code":{"coding":[{"code":"x1","display":"Οδυσσεας"}]}}}]}`),
		// URLs and an IP address outside code systems.
		"uris": []byte(`{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","version":"http://snomed.info/sct/731000124108/version/20190301",
 "code":"44054006","display":"results at https://portal.hospital.example.org/p/77341"},{"code":"urn:hospital:p:77341","display":"from 192.0.2.44"}]}}`),
		// Events 90 years ago or more: a year after a masked birth, an
		// encounter of a patient without birthDate, in the year 999.
		"old_years": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","birthDate":"1920-05-01"}},
{"resource":{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","version":"1920","code":"44054006"}]},
 "subject":{"reference":"urn:uuid:p"},"onsetDateTime":"1921-03-03","abatementDateTime":"0999","recordedDate":"2001-02-02"}},
{"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:p"},
 "period":{"start":"1930-01-02","end":"1935-12-31"},"statusHistory":[{"status":"finished","period":{"start":"1930"}}],
 "participant":[{"period":{"end":"1931"}}]}}]}`),
		// Ages under 90 that, with a year of their resource, show a person
		// 90 or older; and one without a year that goes with them.
		"age_with_year": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"female"}},
{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},
 "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2005-06-01","valueInteger":85,
 "component":[{"code":{"coding":[{"system":"http://snomed.info/sct","code":"397659008"}]},"valueQuantity":{"value":85}}]}},
{"resource":{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"subject":{"reference":"urn:uuid:p"},
 "onsetRange":{"low":{"value":80,"unit":"a"},"high":{"value":86,"unit":"a"}},"recordedDate":"2005"}},
{"resource":{"resourceType":"AllergyIntolerance","code":{"coding":[{"system":"http://snomed.info/sct","code":"91935009"}]},"patient":{"reference":"urn:uuid:p"},
 "onsetAge":{"value":40,"unit":"a"}}}]}`),
		// Numbers that are a date or an identifier of the input.
		"numbers": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","identifier":[{"value":"999417352"}],"multipleBirthInteger":999417352}},
{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},
 "valueInteger":20190304,"component":[{"code":{"coding":[{"code":"x"}]},"valueQuantity":{"value":1999417352.5,"unit":"kg"}}]}},
{"resource":{"resourceType":"MedicationRequest","status":"active","intent":"order",
 "dosageInstruction":[{"sequence":20190304091500,"timing":{"repeat":{"count":1,"frequency":2,"period":1,"periodUnit":"d"}}}]}}]}`),
		// A city and a ZIP code in state and country, and nowhere else.
		"free_address": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","address":[{"state":"Springfield, MA 01109","country":"US 01109"},{"state":"MA"}]}},
{"resource":{"resourceType":"Organization","address":[{"state":"01103","country":"Chicopee\nUS"}]}}]}`),
		// Ids of resources, fullUrls and references typed into codings.
		"ids": []byte(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"https://ehr.example.org/fhir/Patient/mrn-7734120","resource":{"resourceType":"Patient","id":"mrn-7734120",
 "contained":[{"resourceType":"RelatedPerson","id":"rp-44120"}]}},
{"fullUrl":"urn:uuid:3f1c9a52-7d4e-4b8a-9c21-5e6f7a8b9c0d","resource":{"resourceType":"Observation","id":"obs-5520019","status":"final",
 "code":{"coding":[{"system":"http://loinc.org","code":"2339-0","display":"Glucose"}]},"subject":{"reference":"Patient/mrn-7734120"},
 "performer":[{"reference":"https://ehr.example.org/fhir/Practitioner/pr-88121/_history/3"},{"reference":"Practitioner/7734121"}],
 "valueInteger":7734121}},
{"resource":{"resourceType":"Condition","id":"2339","code":{"coding":[{"code":"mrn-7734120","display":"rp-44120 obs-5520019"},
 {"code":"x1","display":"pr-88121, 3f1c9a52-7d4e-4b8a-9c21-5e6f7a8b9c0d"},{"code":"x2","display":"NPI-55X20"}]},
 "asserter":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi%7CNPI-55X20"}}}]}`),
		// An age over 89 coded with SNOMED CT, no unit.
		"snomed_age": []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"424144002"}]},
 "effectiveDateTime":"2024","valueInteger":97}`),
		"unsupported":         []byte(`{"resourceType":"Claim","patient":{"reference":"Patient/1"}}`),
		"modifier_extension":  []byte(`{"resourceType":"Patient","modifierExtension":[{"url":"x"}]}`),
		"not_fhir_empty":      []byte(``),
		"not_fhir_object":     []byte(`{"name":"Karina"}`),
		"not_fhir_array":      []byte(`[{"resourceType":"Patient"}]`),
		"not_fhir_xml":        []byte(`<Patient xmlns="http://hl7.org/fhir"/>`),
		"not_fhir_trailing":   []byte(`{"resourceType":"Patient"}x`),
		"not_fhir_bad_type":   []byte(`{"resourceType":"not a type"}`),
		"bom_single_resource": []byte("\xef\xbb\xbf{\"resourceType\":\"Immunization\",\"vaccineCode\":{\"coding\":[{\"code\":\"140\"}]},\"occurrenceDateTime\":\"2021-10-01\",\"lotNumber\":\"L1\"}"),
	}
}

func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDeidentify")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, in := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFuzzSeeds runs the checks of FuzzDeidentify on the seeds, with the
// expected outcome of each (the corpus files may be stale; these are not).
func TestFuzzSeeds(t *testing.T) {
	for name, in := range fuzzSeeds(t) {
		out, _, err := Deidentify(in, Options{Now: testNow})
		switch {
		case strings.HasPrefix(name, "not_fhir"):
			if !errors.Is(err, ErrNotFHIR) {
				t.Errorf("%s: err = %v, want ErrNotFHIR", name, err)
			}
		case name == "unsupported" || name == "modifier_extension":
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		default:
			t.Run(name, func(t *testing.T) { checkOutput(t, in, out) })
		}
	}
}
