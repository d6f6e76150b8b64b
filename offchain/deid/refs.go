package deid

import (
	"net/url"
	"strings"
	"unicode"
)

// References. Every kept resource gets a position token (see token); a
// reference is rewritten to the token of its target when the target is a
// kept resource of the same input, and removed otherwise (a dangling
// reference would carry the source system's identifier for nothing). A
// target is found by, in order:
//
//   - the entry's fullUrl ("urn:uuid:…" or "https://ehr.example/fhir/Patient/123");
//   - "Type/id" (relative), or the trailing "Type/id" of an absolute URL,
//     matched against the resources' type and id ("/_history/v" is ignored);
//   - a conditional reference "Type?identifier=[system|]value" with exactly
//     one matching resource in the input (Synthea writes these).
//
// A key that two resources share is ambiguous and resolves to nothing.

// index assigns the tokens and builds the reference index.
func (d *deidentifier) index() {
	d.refs = make(map[string]int)
	add := func(k string, n int) {
		if k == "" {
			return
		}
		if old, ok := d.refs[k]; ok && old != n {
			d.refs[k] = -1
			return
		}
		d.refs[k] = n
	}
	for i, r := range d.entries {
		r.n = i + 1
		add(r.fullURL, r.n)
		if id, ok := r.res["id"].(string); ok && id != "" {
			add(r.typ+"/"+id, r.n)
		}
		if tid := trailingTypeID(r.fullURL); tid != "" && strings.HasPrefix(tid, r.typ+"/") {
			add(tid, r.n)
		}
	}
}

// resolve returns the position of the resource a reference points to.
func (d *deidentifier) resolve(ref string) (int, bool) {
	if ref == "" || strings.HasPrefix(ref, "#") {
		return 0, false // contained resources are removed
	}
	ref = withoutHistory(ref)
	if n, ok := d.refs[ref]; ok {
		return n, n > 0
	}
	if typ, query, ok := strings.Cut(ref, "?"); ok {
		return d.resolveConditional(typ, query)
	}
	if tid := trailingTypeID(ref); tid != "" && tid != ref {
		if n, ok := d.refs[tid]; ok {
			return n, n > 0
		}
	}
	return 0, false
}

// trailingTypeID returns the last two path segments of u ("Patient/123" of
// "https://ehr.example/fhir/Patient/123"), "" if they are not a type and an
// id.
func trailingTypeID(u string) string {
	parts := strings.Split(withoutHistory(u), "/")
	if len(parts) < 2 {
		return ""
	}
	typ, id := parts[len(parts)-2], parts[len(parts)-1]
	if !typeName.MatchString(typ) || id == "" {
		return ""
	}
	return typ + "/" + id
}

// withoutHistory returns ref without its version ("/_history/v" and what
// follows).
func withoutHistory(ref string) string {
	ref, _, _ = strings.Cut(ref, "/_history/")
	return ref
}

func (d *deidentifier) resolveConditional(typ, query string) (int, bool) {
	q, err := url.ParseQuery(query)
	if err != nil || len(q) != 1 || len(q["identifier"]) != 1 {
		return 0, false
	}
	system, value, hasSystem := strings.Cut(q["identifier"][0], "|")
	if !hasSystem {
		system, value = "", system
	}
	found := 0
	for _, r := range d.entries {
		if r.typ != typ || !hasIdentifier(r.res, system, value, hasSystem) {
			continue
		}
		if found != 0 {
			return 0, false // ambiguous
		}
		found = r.n
	}
	return found, found != 0
}

func hasIdentifier(res map[string]any, system, value string, hasSystem bool) bool {
	ids, _ := res["identifier"].([]any)
	for _, x := range ids {
		m, _ := x.(map[string]any)
		s, _ := m["system"].(string)
		v, _ := m["value"].(string)
		if v == value && v != "" && (!hasSystem || s == system) {
			return true
		}
	}
	return false
}

// Needles: the identifying strings of the input that the sweep (text) keeps
// out of the output wherever they would appear. They are, from every resource
// of the input (kept or dropped, and those inside it: contained resources,
// the entries of a nested Bundle, ...):
//
//   - the value of every Identifier element, at any depth (identifier,
//     Reference.identifier, groupIdentifier, preAdmissionIdentifier,
//     qualification.identifier, valueIdentifier, ...);
//   - the id of every resource (contained ones included), and the id in
//     every fullUrl and reference ("mrn-7734120" of "Patient/mrn-7734120",
//     of ".../Patient/mrn-7734120/_history/2", of "urn:uuid:mrn-7734120"),
//     when idNeedle holds; and the identifier value of a conditional
//     reference ("Patient?identifier=system|value");
//   - of a Patient, Practitioner, RelatedPerson or Person: name (text,
//     family, given, prefix, suffix), telecom value, address (text, line,
//     city, district, postalCode), photo url;
//   - of a Patient: the same in contact[], and the values (string, address,
//     name, contact point, identifier) of its extensions that are not
//     whitelisted (mothersMaidenName, birthPlace, ...).
//
// Each is taken as it is and trimmed of white space, case-folded, if it is at
// least 4 bytes long: shorter strings ("Li", "Al", a state code) would remove
// too much, and do not identify on their own. One with 6 digits or more is
// also looked for by its digits alone (needles.numeric).
func (d *deidentifier) collectNeedles(res map[string]any) {
	add := func(s string) {
		for _, c := range []string{s, strings.TrimSpace(s)} {
			if len(c) >= 4 {
				d.needles.add(fold(c))
			}
		}
	}
	addID := func(id string) {
		if idNeedle(id) {
			add(id)
		}
	}
	// One walk of the input: every object for its Identifier elements and
	// references, every resource for its id and people.
	eachObject(res, func(res map[string]any) {
		identifierNeedles(res, add, addID)
		rt, ok := res["resourceType"].(string)
		if !ok {
			return
		}
		if id, ok := res["id"].(string); ok {
			addID(id)
		}
		switch rt {
		case "Patient", "Practitioner", "RelatedPerson", "Person":
			personNeedles(res, add)
		}
		if rt == "Patient" {
			each(res["contact"], func(c map[string]any) { personNeedles(c, add) })
			each(res["extension"], func(e map[string]any) {
				if u, _ := e["url"].(string); patientExtensions[u] != nil {
					return
				}
				leaves(e["valueString"], add)
				addressNeedles(e["valueAddress"], add)
				nameNeedles(e["valueHumanName"], add)
				eachMember(e["valueContactPoint"], add, "value")
			})
		}
	})
}

// eachObject calls f with every JSON object in v, at any depth.
func eachObject(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			eachObject(e, f)
		}
	case map[string]any:
		f(x)
		for _, e := range x {
			eachObject(e, f)
		}
	}
}

// needles is a set of case-folded strings, indexed by their first 4 bytes so
// that finding which of thousands (a long record has an identifier per
// encounter and claim) occur in a string costs about the length of the
// string, not the number of needles.
type needles struct {
	list []string
	seen map[string]bool
	// match finds the needles of list; nil when one was added since.
	match *matcher
	// numeric holds the digits of every needle with at least minNumeric of
	// them ("123456789" of "123-45-6789"), which in also looks for among
	// the digits of the string, so that an SSN, a phone number or an MRN
	// typed with other separators than its source's (or none) is found.
	numeric *needles
}

// minNumeric is the fewest digits of a needle whose digits are also looked
// for on their own: an SSN has 9, a phone number 10, and at 6 a run of
// digits is rare enough outside identifiers not to sweep clinical values.
const minNumeric = 6

// fold case-folds s: each letter becomes the least of the letters that
// simple case folding equates with it (Σ for σ and ς, K for k and the Kelvin
// sign, S for s and ſ), so that two strings that strings.EqualFold holds
// equal fold to the same bytes. Lower-casing is not enough: "ΟΔΥΣΣΕΑΣ"
// lower-cases to "οδυσσεασ", "Οδυσσεας" to "οδυσσεας".
func fold(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}

func (n *needles) add(s string) {
	if digits(s) >= minNumeric {
		if n.numeric == nil {
			n.numeric = &needles{}
		}
		n.numeric.addExact(digitsOf(s))
	}
	n.addExact(s)
}

// addExact adds s alone, without its digits.
func (n *needles) addExact(s string) {
	if n.seen[s] {
		return
	}
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	n.seen[s] = true
	n.list = append(n.list, s)
	n.match = nil
}

// in reports whether one of the needles occurs in s (already case-folded),
// or the digits of one among the digits of s.
func (n *needles) in(s string) bool {
	if n.numeric != nil && digits(s) >= minNumeric && n.numeric.inExact(digitsOf(s)) {
		return true
	}
	return n.inExact(s)
}

// inExact reports whether one of the needles occurs in s as it is.
func (n *needles) inExact(s string) bool {
	if len(n.list) == 0 {
		return false
	}
	if n.match == nil {
		n.match = newMatcher(n.list)
	}
	return n.match.in(s)
}

// identifierNeedles calls add with the value of every Identifier element
// of the object m (its members named identifier or ending in Identifier)
// and with the identifier value of a conditional reference; and addID with
// the id of another fullUrl or reference.
func identifierNeedles(m map[string]any, add, addID func(string)) {
	for k, e := range m {
		switch {
		case k == "identifier" || strings.HasSuffix(k, "Identifier"):
			eachMember(e, add, "value")
		case k == "reference" || k == "fullUrl":
			if s, ok := e.(string); ok {
				referenceNeedles(s, add, addID)
			}
		}
	}
}

// referenceNeedles calls addID with the id a reference or fullUrl names
// (its last path segment, "/_history/v" ignored; the rest of
// "urn:uuid:"; a local "#id"), or, for a conditional reference, add with
// its identifier values (the part after "system|"). Other search
// parameters are not taken: "Encounter?status=finished" would make a
// status a needle.
func referenceNeedles(ref string, add, addID func(string)) {
	if base, query, ok := strings.Cut(ref, "?"); ok {
		q, _ := url.ParseQuery(query)
		for _, v := range q["identifier"] {
			add(v[strings.LastIndex(v, "|")+1:])
		}
		ref = base // "Patient": no id
	}
	ref = withoutHistory(ref)
	switch {
	case strings.HasPrefix(ref, "urn:uuid:"):
		addID(ref[len("urn:uuid:"):])
	case strings.HasPrefix(ref, "urn:"): // an OID names a system, not a record
	case strings.HasPrefix(ref, "#"):
		addID(ref[1:])
	default:
		addID(ref[strings.LastIndex(ref, "/")+1:])
	}
}

// idNeedle reports whether a resource id is taken as a needle: 4 bytes or
// more (as every needle), with a digit, and, if made of digits only, 6 of
// them or more. An id without a digit ("glucose", "example",
// "blood-pressure") is a word, not a number, and as a needle would take with
// it the displays of the codes it names ("Glucose [Mass/volume] in Blood")
// or a code system ("http://example.org/..."); a short number ("2339") is a
// server's sequence number, and would take codes that contain it (LOINC
// 2339-0, RxNorm, SNOMED CT). A UUID is one: it carries nothing, but it is
// the source system's key of the record.
func idNeedle(id string) bool {
	id = strings.TrimSpace(id)
	if len(id) < 4 {
		return false
	}
	n := digits(id)
	return n > 0 && (n < len(id) || n >= 6) // a digit, and another byte or six digits
}

func personNeedles(m map[string]any, add func(string)) {
	nameNeedles(m["name"], add)
	eachMember(m["telecom"], add, "value")
	addressNeedles(m["address"], add)
	eachMember(m["photo"], add, "url")
}

func nameNeedles(v any, add func(string)) {
	eachMember(v, add, "text", "family", "given", "prefix", "suffix")
}

func addressNeedles(v any, add func(string)) {
	eachMember(v, add, "text", "line", "city", "district", "postalCode")
}

// eachMember calls add with every string found, at any depth, under the
// given members of v (an object, or an array of objects).
func eachMember(v any, add func(string), members ...string) {
	each(v, func(m map[string]any) {
		for _, k := range members {
			leaves(m[k], add)
		}
	})
}

// each calls f with v, or with each object element of v.
func each(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(x)
	case []any:
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				f(m)
			}
		}
	}
}

// leaves calls add with every string in v, at any depth.
func leaves(v any, add func(string)) {
	switch x := v.(type) {
	case string:
		add(x)
	case []any:
		for _, e := range x {
			leaves(e, add)
		}
	case map[string]any:
		for _, e := range x {
			leaves(e, add)
		}
	}
}
