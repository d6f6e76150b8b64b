package deid

import (
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// fields applies schema s to the JSON object in, at path p. Members not in s
// are removed (and reported). For a resource (isResource), resourceType and
// id are left to the caller.
func (d *deidentifier) fields(p string, in map[string]any, s *schema, isResource bool) *object {
	kept := make(map[string]any)
	for _, k := range sortedKeys(in) {
		if isResource && (k == "resourceType" || k == "id") {
			continue
		}
		i, ok := s.index[k]
		if !ok {
			d.removed(p + "." + k)
			continue
		}
		if in[k] == nil { // JSON null: absent
			continue
		}
		if v := d.elem(p+"."+k, in[k], s.fields[i].e); v != nil {
			kept[k] = v
		}
	}
	out := &object{}
	for _, f := range s.fields {
		if v, ok := kept[f.name]; ok {
			out.set(f.name, v)
		}
	}
	return out
}

// elem transforms one element (a single value or an array of them). It
// returns nil when nothing is kept.
func (d *deidentifier) elem(p string, v any, e elem) any {
	arr, isArr := v.([]any)
	if isArr != e.many {
		d.removed(p) // wrong cardinality: malformed
		return nil
	}
	if !e.many {
		return d.one(p, v, e)
	}
	var out []any
	for i, x := range arr {
		if x == nil {
			continue
		}
		if r := d.one(p+"["+strconv.Itoa(i)+"]", x, e); r != nil {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (d *deidentifier) one(p string, v any, e elem) any {
	switch e.kind {
	case kString, kSystem:
		s, ok := v.(string)
		if !ok || e.kind == kString && uriLike.MatchString(s) {
			d.removed(p)
			return nil
		}
		if s, ok = d.text(p, s); ok {
			return s
		}
	case kBool:
		if b, ok := v.(bool); ok {
			return b
		}
		d.removed(p)
	case kNumber:
		n, ok := v.(json.Number)
		if !ok {
			d.removed(p)
			return nil
		}
		if d.number(p, n) {
			return n
		}
	case kDate:
		return d.date(p, v)
	case kReference:
		if o := d.reference(p, v); o != nil {
			return o
		}
	case kExtension:
		if o := d.extension(p, v); o != nil {
			return o
		}
	case kObject:
		m, ok := v.(map[string]any)
		if !ok {
			d.removed(p)
			return nil
		}
		if hasModifierExtension(m) {
			// The element's meaning depends on an extension we cannot
			// vouch for: drop the element rather than change its meaning.
			d.removed(p)
			return nil
		}
		out := d.fields(p, m, e.sub, false)
		if e.sub.requires != "" && !out.has(e.sub.requires) {
			if !out.empty() {
				d.removed(p)
			}
			d.forgetSites(p)
			return nil
		}
		if out.empty() {
			return nil
		}
		d.noteYears(p, e.sub, out)
		if e.sub.post != nil {
			out = e.sub.post(d, p, m, out)
		}
		if out != nil {
			return out
		}
		d.forgetSites(p)
	}
	return nil
}

// forgetSites forgets the years and ages noted under path p, an element of
// the resource being de-identified that does not reach the output: a year
// that is not there must not date the resource (and so keep its linked
// events' years from dating its ages). Only the current resource's sites
// are looked at: they are the last noted.
func (d *deidentifier) forgetSites(p string) {
	under := func(q string) bool {
		return q == p || strings.HasPrefix(q, p+".") || strings.HasPrefix(q, p+"[")
	}
	i := len(d.years)
	for i > 0 && d.years[i-1].n == d.cur {
		i--
	}
	d.years = append(d.years[:i], slices.DeleteFunc(d.years[i:], func(y yearSite) bool { return under(y.path) })...)
	j := len(d.ages)
	for j > 0 && d.ages[j-1].n == d.cur {
		j--
	}
	d.ages = append(d.ages[:j], slices.DeleteFunc(d.ages[j:], func(a ageSite) bool { return under(a.path) })...)
}

// text passes a string that is about to be copied into the output through
// the sweep: it is removed if it contains (case-insensitively) an identifying
// string of the input (a name, a telecom value, an address part, an
// identifier value, ...) or looks like a full date or an e-mail address.
// This is defence in depth behind the whitelist: a patient's name typed into
// a coding's display, or a date into a code, does not get through.
func (d *deidentifier) text(p, s string) (string, bool) {
	if s == "" || strings.ContainsRune(s, '@') || mayHoldDate(s) && dateLike.MatchString(s) {
		d.removed(p)
		return "", false
	}
	if d.needles.in(fold(s)) {
		d.removed(p)
		return "", false
	}
	return s, true
}

// number passes a number's literal, which is copied as it is, through the
// sweep as text does a string: it is removed if it contains an identifying
// string of the input (an SSN given as an Identifier, typed into
// valueInteger) or holds a compact date (20190304; the other notations of
// dateLike cannot be JSON numbers). Only literals of 8 digits or more can
// hold one, so lab values never reach the regular expression.
// A literal past a float64's range (1e700) is removed: no reader of the
// output holds it, and no age in it could be judged.
func (d *deidentifier) number(p string, n json.Number) bool {
	s := string(n)
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		d.removed(p) // past a float64 (1e700): no reader holds it, nor judges it
		return false
	}
	if digits(s) >= 8 && dateLike.MatchString(s) || d.needles.in(fold(s)) {
		d.removed(p)
		return false
	}
	return true
}

// digits counts the ASCII digits of s.
func digits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			n++
		}
	}
	return n
}

// digitsOf is the ASCII digits of s, in order.
func digitsOf(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// mayHoldDate is dateLike's cheap pre-check: every date it matches has at
// least three digits ("4 Mar 19"), and most strings of a record (displays,
// short codes) have fewer, so the regular expression, most of the
// de-identification's time, runs on few of them.
func mayHoldDate(s string) bool { return digits(s) >= 3 }

// uriLike matches a URL, a URN or another URI with a common scheme, a host
// name starting with www., or an IPv4 address anywhere in a string: the
// only URIs of the output are code systems (kSystem).
var uriLike = regexp.MustCompile(`(?i)[a-z][a-z0-9+.-]*://|\b(urn|mailto|tel|fax|data):|\bwww\.|\b([0-9]{1,3}\.){3}[0-9]{1,3}\b`)

// dateLike matches dates anywhere in a string: ISO (2019-03, 2019-03-04),
// compact (20190304, with a valid month and day, so that numeric codes
// such as SNOMED's 19829001 stay, and with a time as HL7 v2 writes it,
// 20190304091500), slashed (3/4/2019, 03/04/19), dotted or dashed day and
// month in either order (04.03.2019, 03-25-2019), year first with any of
// these separators (2019/3/4, 2019.03.04), month and year (03/2019,
// 2019/03), and with an English month name (March 4, 2019; 4 Mar 2019;
// 04-Mar-2019; 04MAR2019; 2019-Mar-04; March 2019).
var dateLike = regexp.MustCompile(`[0-9]{4}-[0-9]{2}` +
	`|[0-9]{1,2}/[0-9]{1,2}/[0-9]{2}` +
	`|\b(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])(T?([01][0-9]|2[0-3])[0-5][0-9]([0-5][0-9](\.[0-9]+)?)?([+-][0-9]{4}|Z)?)?\b` +
	`|\b(0?[1-9]|[12][0-9]|3[01])[.-](0?[1-9]|1[0-2])[.-]([0-9]{4}|[0-9]{2})\b` +
	`|\b(0?[1-9]|1[0-2])[.-](0?[1-9]|[12][0-9]|3[01])[.-]([0-9]{4}|[0-9]{2})\b` +
	`|\b[0-9]{4}[/.-](0?[1-9]|1[0-2])[/.-](0?[1-9]|[12][0-9]|3[01])\b` +
	`|\b(19|20)[0-9]{2}/(0?[1-9]|1[0-2])\b|\b(0?[1-9]|1[0-2])/(19|20)[0-9]{2}\b` +
	`|(?i)\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+[0-9]{1,2}(st|nd|rd|th)?,?\s+[0-9]{4}\b` +
	`|(?i)\b[0-9]{1,2}(st|nd|rd|th)?\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?,?\s+[0-9]{4}\b` +
	`|(?i)\b` + month + `\.?,?[\s/-]*(19|20)[0-9]{2}\b` +
	`|(?i)\b[0-9]{1,2}[\s/-]*` + month + `[\s/-]*([0-9]{4}|[0-9]{2})\b` +
	`|(?i)\b[0-9]{4}[\s/-]*` + month + `[\s/-]*[0-9]{1,2}\b`)

// month is an English month name or its abbreviation, as a whole word (so
// that "decreased" or "marked" is none).
const month = `(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sep(t(ember)?)?|oct(ober)?|nov(ember)?|dec(ember)?)`

// fhirDate matches FHIR date and dateTime values (and instants), leniently
// about missing seconds and time zones, strictly about the ranges of months,
// days, hours and minutes; group 1 is the year.
var fhirDate = regexp.MustCompile(`^([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])` +
	`(T([01][0-9]|2[0-3]):[0-5][0-9](:([0-5][0-9]|60)(\.[0-9]+)?)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?)?)?)?$`)

// date reduces a date or dateTime to its year ("2019-03-04T10:00:00Z" →
// "2019"); a value that does not parse is removed.
func (d *deidentifier) date(p string, v any) any {
	s, ok := v.(string)
	if !ok || d.opts.DropYears {
		d.removed(p)
		return nil
	}
	m := fhirDate.FindStringSubmatch(s)
	if m == nil {
		d.removed(p)
		return nil
	}
	year, ok := d.text(p, m[1])
	if !ok {
		return nil
	}
	if len(s) > 4 {
		d.generalized(p)
	}
	if y, _ := strconv.Atoi(year); y > d.maxYear {
		d.maxYear = y
	}
	return year
}

// noteYears notes the years of the date elements of out, the output of
// schema s at path p, for patchAges.
func (d *deidentifier) noteYears(p string, s *schema, out *object) {
	for _, i := range s.dates {
		k := s.fields[i].name
		if v, ok := out.get(k); ok {
			y, _ := strconv.Atoi(v.(string))
			d.years = append(d.years, yearSite{obj: out, key: k, path: p + "." + k, year: y, n: d.cur})
		}
	}
}

// addressPost removes an Address's state or country that is not shaped like
// a name or code of one (see placeName): a free-form "Springfield, MA
// 01109" holds a city and a ZIP code that no other element may name, so
// that the sweep would not know them.
func addressPost(d *deidentifier, p string, _ map[string]any, out *object) *object {
	for _, k := range []string{"state", "country"} {
		if v, ok := out.get(k); ok && !placeName(v.(string)) {
			d.removed(p + "." + k)
			out.del(k)
		}
	}
	if out.empty() {
		return nil
	}
	return out
}

// maxPlaceName is the longest state or country name kept, in bytes.
const maxPlaceName = 40

// placeName reports whether s can only be the name or code of a state or a
// country: letters (and combining marks), spaces, '.', apostrophes and '-',
// at most maxPlaceName bytes; no digit, comma or line break.
func placeName(s string) bool {
	if len(s) > maxPlaceName {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsMark(r) && !strings.ContainsRune(" .-'’", r) {
			return false
		}
	}
	return true
}

// reference rewrites a Reference to {"reference": "urn:uuid:TOKEN"} of its
// target, when the target is a resource of the output; otherwise it is
// removed. display, identifier, type and the rest are always removed.
func (d *deidentifier) reference(p string, v any) *object {
	m, ok := v.(map[string]any)
	if !ok {
		d.removed(p)
		return nil
	}
	for _, k := range sortedKeys(m) {
		if k != "reference" {
			d.removed(p + "." + k)
		}
	}
	s, ok := m["reference"].(string)
	if !ok {
		if _, present := m["reference"]; present {
			d.removed(p + ".reference")
		}
		return nil
	}
	n, ok := d.resolve(s)
	if !ok {
		d.removed(p + ".reference")
		return nil
	}
	d.links = append(d.links, link{from: d.cur, to: n, field: fieldName(p)})
	out := &object{}
	out.set("reference", "urn:uuid:"+token(n))
	return out
}

// link is a reference kept in the output: from the from-th kept resource's
// member field to the to-th (see agedByYear).
type link struct {
	from, to int
	field    string
}

// fieldName is the member name at the end of path p ("encounter" of
// "$.entry[2].resource.encounter", "result" of "….result[0]").
func fieldName(p string) string {
	p = p[strings.LastIndexByte(p, '.')+1:]
	name, _, _ := strings.Cut(p, "[")
	return name
}

// datingField reports whether a reference in member field places its
// resource within its target's time (Observation.encounter, Encounter.partOf:
// the target dates it) or its target within its own
// (DiagnosticReport.result, Observation.hasMember: it dates its target).
func datingField(field string) (datedByTarget, datesTarget bool) {
	switch field {
	case "encounter", "partOf":
		return true, false
	case "result", "hasMember":
		return false, true
	}
	return false, false
}

// extension keeps the whitelisted extensions of a Patient.
func (d *deidentifier) extension(p string, v any) *object {
	m, ok := v.(map[string]any)
	if !ok {
		d.removed(p)
		return nil
	}
	url, _ := m["url"].(string)
	spec := patientExtensions[url]
	if spec == nil {
		d.removed(p)
		return nil
	}
	return d.extensionOf(p, m, spec)
}

func (d *deidentifier) extensionOf(p string, m map[string]any, spec *extSpec) *object {
	out := &object{}
	out.set("url", spec.url) // the whitelist's constant, not the input's string
	allowed := map[string]elem{}
	for _, f := range spec.values {
		allowed[f.name] = f.e
	}
	var subs []any
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch e, isValue := allowed[k]; {
		case k == "url":
		case isValue && v != nil:
			if r := d.elem(p+"."+k, v, e); r != nil {
				out.set(k, r)
			}
		case k == "extension" && spec.subs != nil:
			arr, ok := v.([]any)
			if !ok {
				d.removed(p + "." + k)
				continue
			}
			for i, x := range arr {
				sp := p + ".extension[" + strconv.Itoa(i) + "]"
				sm, ok := x.(map[string]any)
				if !ok {
					d.removed(sp)
					continue
				}
				surl, _ := sm["url"].(string)
				sub := spec.subs[surl]
				if sub == nil {
					d.removed(sp)
					continue
				}
				if r := d.extensionOf(sp, sm, sub); r != nil {
					subs = append(subs, r)
				}
			}
		default:
			d.removed(p + "." + k)
		}
	}
	if len(subs) > 0 {
		out.set("extension", subs)
	}
	if len(out.keys) == 1 { // url alone: nothing left
		return nil
	}
	return out
}

// Ages. Safe Harbor: "all ages over 89 and all elements of dates (including
// year) indicative of such age ... may be aggregated into a single category of
// age 90 or older".

type qmode uint8

const (
	qAny     qmode = iota // Quantity: an age of 90 years or more becomes ">= 90 a"
	qAge                  // Age: the same, and a value not in a unit of time is removed
	qLow                  // SimpleQuantity, a Range's low: 90 years or more becomes 90 a
	qHigh                 // a Range's high: 90 years or more is removed
	qAgeLow               // qLow of an Age range (not in a unit of time: removed)
	qAgeHigh              // qHigh of an Age range (not in a unit of time: removed)
)

// UCUM codes of units of time, case-sensitive ("A" is the ampere), and the
// common spellings found in Quantity.unit, compared in lower case; in years.
var (
	ucumTime = map[string]float64{
		"a": 1, "a_j": 1, "a_g": 1, "mo": 1.0 / 12, "mo_j": 1.0 / 12, "mo_g": 1.0 / 12,
		"wk": 7 / 365.25, "d": 1 / 365.25, "h": 1 / 8766.0, "min": 1 / 525960.0, "s": 1 / 31557600.0,
	}
	textTime = map[string]float64{
		"y": 1, "yr": 1, "yrs": 1, "year": 1, "years": 1,
		"month": 1.0 / 12, "months": 1.0 / 12,
		"wk": 7 / 365.25, "wks": 7 / 365.25, "week": 7 / 365.25, "weeks": 7 / 365.25,
		"day": 1 / 365.25, "days": 1 / 365.25,
		"hr": 1 / 8766.0, "hrs": 1 / 8766.0, "hour": 1 / 8766.0, "hours": 1 / 8766.0,
		"yo": 1, "y/o": 1, "y.o.": 1, "y.o": 1, "a.": 1,
	}
)

// textUnit is a Quantity.unit's time unit in years, read as people write
// it: any case, in UCUM's annotation braces ("{years}"), with "old" or
// "of age" after it ("years old", "year-old", "yrs of age"), with "(s)"
// ("year(s)") or a period ("yrs.") at its end.
func textUnit(s string) (float64, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}"))
	s = strings.NewReplacer("-", " ", "_", " ").Replace(s)
	for {
		if y, ok := textTime[s]; ok {
			return y, true
		}
		t := s
		for _, tail := range []string{".", " old", " of age", "(s)"} { // "year(s) old."
			t = strings.TrimSpace(strings.TrimSuffix(t, tail))
		}
		if t == s {
			return 0, false
		}
		s = t
	}
}

// years returns a Quantity's value in years, when its unit is one of time.
func years(q *object) (float64, bool) {
	n, _ := q.get("value")
	f, err := strconv.ParseFloat(string(n.(json.Number)), 64)
	if err != nil && !math.IsInf(f, 0) {
		return 0, false
	}
	for _, k := range []string{"code", "unit"} {
		u, _ := q.get(k)
		s, _ := u.(string)
		if y, ok := ucumTime[s]; ok {
			return f * y, true
		}
		if y, ok := textUnit(s); ok {
			return f * y, true
		}
	}
	return 0, false
}

// age90 is the aggregated category: 90 years or more. Its strings go through
// the sweep like copied ones (so that the only unswept strings of the output
// are resource types, tokens and extension URLs).
func (d *deidentifier) age90(p string, comparator bool) *object {
	q := &object{}
	q.set("value", json.Number("90"))
	add := func(k, v string) {
		if s, ok := d.text(p+"."+k, v); ok {
			q.set(k, s)
		}
	}
	if comparator {
		add("comparator", ">=")
	}
	add("unit", "years")
	add("system", "http://unitsofmeasure.org")
	add("code", "a")
	return q
}

func quantityPost(m qmode) func(d *deidentifier, p string, in map[string]any, out *object) *object {
	return func(d *deidentifier, p string, in map[string]any, out *object) *object {
		y, isTime := years(out)
		if !isTime {
			if m == qAge || m == qAgeLow || m == qAgeHigh {
				d.removed(p) // an age we cannot read cannot be judged
				return nil
			}
			return out
		}
		if y < 90 {
			if m == qAge || m == qAgeLow || m == qAgeHigh {
				d.ages = append(d.ages, ageSite{obj: out, path: p, n: d.cur, low: y, hasLow: m != qAgeHigh})
			}
			return out
		}
		switch m {
		case qAny, qAge:
			if c, _ := out.get("comparator"); c == nil || c == ">" || c == ">=" {
				d.generalized(p)
				return d.age90(p, true)
			}
			d.removed(p) // "< 95 years": no faithful 90+ form
			return nil
		case qLow, qAgeLow:
			d.generalized(p)
			return d.age90(p, false)
		default: // qHigh, qAgeHigh: open the range upwards
			d.removed(p)
			return nil
		}
	}
}

// observationPost aggregates the value of an age observation (LOINC 30525-0
// Age, 21612-7 Age - Reported, 29553-5 Age calculated, 21611-9 Age -
// Estimated; LOINC named by URL or by its OID; SNOMED CT 397659008 Age,
// 424144002 Current chronological age) of 90 or more, whatever its
// unit (years assumed when none); and so the value of every component
// coded as an age. The year of a date of birth observation (see
// isBirthDateCoding) is noted for patchAges.
func observationPost(d *deidentifier, r *resourceEntry, out *object) {
	d.oneValue(r.path, out)
	valuePost(d, r.path, out, hasAgeCode(r.res["code"]))
	if hasCoding(r.res["code"], isBirthDateCoding) {
		d.birthValue(r.path, out)
	}
}

// componentPost judges an Observation component's value (co, at path p,
// the component's in the input, as its sites are noted) as observationPost
// does the Observation's.
func componentPost(d *deidentifier, p string, _ map[string]any, co *object) *object {
	code, _ := co.get("code")
	d.oneValue(p, co)
	valuePost(d, p, co, hasAgeCode(code))
	if hasCoding(code, isBirthDateCoding) {
		d.birthValue(p, co)
	}
	return co
}

// oneValue removes every value[x] of out (an Observation's or a
// component's, at path p) when it holds more than one: FHIR allows one, and
// an age in valueInteger and again in valueQuantity would be judged, and
// masked, once.
func (d *deidentifier) oneValue(p string, out *object) {
	var values []string
	for _, k := range out.keys {
		if strings.HasPrefix(k, "value") {
			values = append(values, k)
		}
	}
	if len(values) < 2 {
		return
	}
	for _, k := range values {
		d.removed(p + "." + k)
		d.forgetSites(p + "." + k)
		out.del(k)
	}
}

// birthValue notes the valueDateTime of out (an Observation's or a
// component's, at path p), a date of birth, for patchAges.
func (d *deidentifier) birthValue(p string, out *object) {
	if out.has("valueDateTime") {
		d.births = append(d.births, ageSite{obj: out, key: "valueDateTime", path: p + ".valueDateTime"})
	}
}

func asArray(v any) []any {
	a, _ := v.([]any)
	return a
}

// valuePost judges out's value (an Observation's or a component's, at path
// p): as an age whatever its unit when coded as one (ageValuePost);
// otherwise, a value in a unit of time under 90 years is noted as an age
// all the same (timeValuePost).
func valuePost(d *deidentifier, p string, out *object, codedAsAge bool) {
	if codedAsAge {
		ageValuePost(d, p, out)
	} else {
		timeValuePost(d, p, out)
	}
}

// timeValuePost notes out's valueQuantity, or valueRange, in a unit of time
// and under 90 years as an age (values of 90 years or more were aggregated
// by quantityPost). Whatever the code says, such a value may be one: an
// "age at onset" of 85 years kept with its year 2015 gives the masked year
// of birth 1930 back as surely as a value coded Age does. A duration (hours
// of sleep, years of smoking) is masked with the ages, erring towards
// generalizing; but it is not judged with a year when the patients' birth
// years are kept (see agedByYear).
func timeValuePost(d *deidentifier, p string, out *object) {
	if v, ok := out.get("valueQuantity"); ok {
		if y, isTime := years(v.(*object)); isTime && y < 90 {
			d.ages = append(d.ages, ageSite{obj: out, key: "valueQuantity", path: p + ".valueQuantity", n: d.cur, low: y, hasLow: true, uncoded: true})
		}
		return
	}
	v, ok := out.get("valueRange")
	if !ok {
		return
	}
	r, under90 := v.(*object), false
	low, hasLow := 0.0, false
	for _, k := range []string{"low", "high"} {
		if b, ok := r.get(k); ok {
			if y, isTime := years(b.(*object)); isTime {
				under90 = under90 || y < 90
				if k == "low" {
					low, hasLow = y, true
				}
			}
		}
	}
	if under90 {
		d.ages = append(d.ages, ageSite{obj: out, key: "valueRange", path: p + ".valueRange", n: d.cur, low: low, hasLow: hasLow, uncoded: true})
	}
}

// ageValuePost aggregates out's value (an Observation's or a component's,
// at path p: valueInteger, valueQuantity, or the bounds of valueRange) when
// it is an age of 90 or more.
func ageValuePost(d *deidentifier, p string, out *object) {
	site := func(key string, low float64, hasLow bool) {
		d.ages = append(d.ages, ageSite{obj: out, key: key, path: p + "." + key, n: d.cur, low: low, hasLow: hasLow})
	}
	if v, ok := out.get("valueInteger"); ok {
		if f, err := strconv.ParseFloat(string(v.(json.Number)), 64); err != nil || f >= 90 {
			d.generalized(p + ".valueInteger")
			out.replace("valueInteger", "valueQuantity", d.age90(p+".valueInteger", true))
		} else {
			site("valueInteger", f, true)
		}
		return
	}
	if v, ok := out.get("valueQuantity"); ok {
		q := v.(*object)
		if y, isTime := years(q); isTime {
			if y < 90 { // 90 and over: already judged by quantityPost
				site("valueQuantity", y, true)
			}
			return
		}
		n, _ := q.get("value")
		if f, err := strconv.ParseFloat(string(n.(json.Number)), 64); err != nil || f >= 90 {
			d.generalized(p + ".valueQuantity")
			out.set("valueQuantity", d.age90(p+".valueQuantity", true))
		} else {
			site("valueQuantity", f, true)
		}
		return
	}
	if v, ok := out.get("valueRange"); ok {
		// Bounds of 90 or more: as in a Range of Age (the low one becomes
		// 90, the high one goes), whatever their unit.
		r, under90 := v.(*object), false
		low, hasLow := 0.0, false // the low bound kept, in years
		for _, k := range []string{"low", "high"} {
			b, ok := r.get(k)
			if !ok {
				continue
			}
			bp := p + ".valueRange." + k
			q := b.(*object)
			y, isTime := years(q) // 90 and over: already judged by quantityPost
			if !isTime {
				n, _ := q.get("value")
				switch f, err := strconv.ParseFloat(string(n.(json.Number)), 64); {
				case err == nil && f < 90:
					y = f
				case k == "low":
					d.generalized(bp)
					r.set(k, d.age90(bp, false))
					y = 90
				default:
					d.removed(bp)
					r.del(k)
					continue
				}
			}
			under90 = under90 || y < 90
			if k == "low" {
				low, hasLow = y, true
			}
		}
		switch {
		case r.empty():
			out.del("valueRange")
		case under90:
			site("valueRange", low, hasLow)
		}
	}
}

// ageCodesLOINC are LOINC's codes of an age: 30525-0 Age, 21612-7 Age -
// Reported, 29553-5 Age calculated, 21611-9 Age - Estimated, 39016-1 Age at
// death, 63900-5 Current age or age at death, 30972-4 Age at onset of
// adverse event, 35659-2 Age at specimen collection; ageCodesSNOMED SNOMED
// CT's: 397659008 Age, 424144002 Current chronological age, 445518008 Age
// at onset of clinical finding, 423493009 Age at diagnosis.
var (
	ageCodesLOINC = map[string]bool{"30525-0": true, "21612-7": true, "29553-5": true, "21611-9": true,
		"39016-1": true, "63900-5": true, "30972-4": true, "35659-2": true}
	ageCodesSNOMED = map[string]bool{"397659008": true, "424144002": true, "445518008": true, "423493009": true}
)

// isLOINC and isSNOMED name the code systems by their URL or their OID.
func isLOINC(system string) bool {
	return system == "http://loinc.org" || system == "urn:oid:2.16.840.1.113883.6.1"
}

func isSNOMED(system string) bool {
	return system == "http://snomed.info/sct" || system == "urn:oid:2.16.840.1.113883.6.96"
}

// isAgeCoding: LOINC or SNOMED CT and one of its age codes.
func isAgeCoding(system, code string) bool {
	return isLOINC(system) && ageCodesLOINC[code] || isSNOMED(system) && ageCodesSNOMED[code]
}

// isBirthDateCoding: LOINC 21112-8 Birth date, SNOMED CT 184099003 Date of
// birth.
func isBirthDateCoding(system, code string) bool {
	return isLOINC(system) && code == "21112-8" || isSNOMED(system) && code == "184099003"
}

// hasAgeCode reports whether a CodeableConcept, of the input or of the
// output, has an age coding.
func hasAgeCode(code any) bool { return hasCoding(code, isAgeCoding) }

// hasCoding reports whether a CodeableConcept, of the input or of the
// output, has a coding for which is returns true.
func hasCoding(code any, is func(system, code string) bool) bool {
	for _, c := range asArray(member(code, "coding")) {
		sys, _ := member(c, "system").(string)
		cd, _ := member(c, "code").(string)
		if is(sys, cd) {
			return true
		}
	}
	return false
}

// member is v's member k, for an input object (map) or an output one.
func member(v any, k string) any {
	switch o := v.(type) {
	case map[string]any:
		return o[k]
	case *object:
		x, _ := o.get(k)
		return x
	}
	return nil
}

// maxBirthOrder is the largest multipleBirthInteger kept.
const maxBirthOrder = 20

// patientPost records what patchAges needs, and keeps multipleBirthInteger
// only when it can be a birth order.
func patientPost(d *deidentifier, r *resourceEntry, out *object) {
	pi := patientInfo{path: r.path, out: out, alive: true}
	if by, ok := out.get("birthDate"); ok {
		pi.birthYear, _ = strconv.Atoi(by.(string))
	}
	// Deceased as the output shows it: a death whose date the output lost
	// (a malformed dateTime, a year the sweep took) leaves a record that
	// reads as a living patient's, so it is judged as one.
	if b, _ := out.get("deceasedBoolean"); b == true {
		pi.alive = false
	}
	if v, ok := out.get("deceasedDateTime"); ok {
		pi.alive = false
		pi.deathYear, _ = strconv.Atoi(v.(string))
		pi.hasDeath = true
	}
	if v, ok := out.get("extension"); ok {
		pi.marked = hasMarker(v.([]any))
	}
	// A birth order is small; anything else in multipleBirthInteger (an
	// identifier, a date typed as a number) is not one.
	if v, ok := out.get("multipleBirthInteger"); ok {
		if n, err := strconv.Atoi(string(v.(json.Number))); err != nil || n < 1 || n > maxBirthOrder {
			d.removed(r.path + ".multipleBirthInteger")
			out.del("multipleBirthInteger")
		}
	}
	d.patients = append(d.patients, pi)
}

// patchAges removes the year of birth of every patient who is 90 or older, or
// was at the latest date of the output, or may be today (when alive). Then
// it removes every year of the output that shows a person alive 90 years or
// more before the reference year (see refYear). If either happened it
// removes every age under 90 of the output too (maskAges): an age kept
// with the year it was recorded (85 in 2005) would give the year of birth
// back. Ages
// are compared in calendar years (reference year − birth year ≥ 90), which
// errs on the side of generalizing: a patient born in December 1935 is
// generalized from January 2025. The birthDate is replaced by
// "_birthDate": {"extension": [data-absent-reason "masked"]} and the patient
// gets the URLAge90OrOlder extension. The value of a date of birth
// Observation is removed the same way (judged as of a living patient).
// What it removes is no longer listed in Report.Generalized (a year was).
// patchAges reports whether it removed a year or left an Age element empty,
// either of which may leave an object empty (see prune).
func (d *deidentifier) patchAges() bool {
	gone := map[string]bool{} // the paths removed here
	remove := func(p string) {
		d.removed(p)
		gone[p] = true
	}
	masked := false
	d.deathsThatGo()
	for _, pi := range d.patients {
		// The input said 90 or older, and the output says so: an age kept
		// with its year would tell the year of birth.
		masked = masked || pi.marked
	}
	// A date of birth observation: its patient is not known, so judged as
	// one who may be alive (the year of Options.Now).
	for _, b := range d.births {
		v, _ := b.obj.get(b.key)
		y, _ := strconv.Atoi(v.(string))
		if max(d.maxYear, d.nowYear)-y < 90 {
			continue
		}
		masked = true
		remove(b.path)
		b.obj.del(b.key)
	}
	for _, pi := range d.patients {
		if pi.birthYear == 0 {
			continue
		}
		ref := d.maxYear
		if pi.alive && d.nowYear > ref {
			ref = d.nowYear
		}
		if ref-pi.birthYear < 90 {
			continue
		}
		masked = true
		remove(pi.path + ".birthDate")
		if code, ok := d.text(pi.path+"._birthDate", "masked"); ok {
			dar := &object{}
			dar.set("url", URLDataAbsentReason)
			dar.set("valueCode", code)
			ext := &object{}
			ext.set("extension", []any{dar})
			pi.out.replace("birthDate", "_birthDate", ext)
		} else {
			pi.out.del("birthDate")
		}
		marker := &object{}
		marker.set("url", URLAge90OrOlder)
		marker.set("valueBoolean", true)
		if v, ok := pi.out.get("extension"); ok {
			// Any marker of the input (one that says false) gives way.
			exts := slices.DeleteFunc(v.([]any), func(e any) bool {
				u, _ := e.(*object).get("url")
				return u == URLAge90OrOlder
			})
			pi.out.set("extension", append(exts, marker))
		} else {
			pi.out.insertAfter("id", "extension", []any{marker})
		}
	}
	oldYears := d.removeOldYears(remove)
	emptied := false
	if masked || oldYears || d.agedByYear(remove) {
		emptied = d.maskAges(remove)
	}
	d.report.Generalized = slices.DeleteFunc(d.report.Generalized, func(p string) bool { return gone[p] })
	return oldYears || emptied
}

// deathsThatGo judges as alive every patient whose death year
// removeOldYears will remove (90 or more years before the reference year:
// a death before the record's last events by as much, a year "0000", or an
// old death beside a living patient): the record then reads as a living
// patient's. The reference year may move to Options.Now's with each, so it
// is judged again until nothing changes.
func (d *deidentifier) deathsThatGo() {
	for changed := true; changed; {
		changed = false
		ref := d.refYear()
		for i, pi := range d.patients {
			if pi.hasDeath && !pi.alive && ref-pi.deathYear >= 90 {
				d.patients[i].alive = true
				changed = true
			}
		}
	}
}

// agedByYear reports whether an age under 90 of the output, with a year of
// an event that dates it, shows a person 90 or older in the reference year:
// an age A (its lower bound) at an event whose earliest year is Y is A +
// (refYear − Y) or more then. Taking the earliest year errs towards
// generalizing (an onset age is of a time at or before the recordedDate).
// See datingYears for the events that date an age.
//
// An age only in a unit of time under another code (uncoded) that shows
// such a person while every patient of the output keeps a birth year is
// removed alone (to remove), and agedByYear does not report it: the
// patients' ages are known from their birth years, so the value is a
// duration or another person's age (a relative's, which Safe Harbor
// covers too), and the patients' own ages can stay.
func (d *deidentifier) agedByYear(remove func(path string)) bool {
	if len(d.ages) == 0 {
		return false
	}
	birthYears := len(d.patients) > 0
	for _, pi := range d.patients {
		birthYears = birthYears && pi.birthYear != 0
	}
	dating := d.datingYears()
	ref := d.refYear()
	aged := false
	kept := d.ages[:0]
	for _, a := range d.ages {
		y, ok := dating(a.n)
		if !a.hasLow || !ok || a.low+float64(ref-y) < 90 {
			kept = append(kept, a)
			continue
		}
		if a.uncoded && birthYears {
			remove(a.path)
			a.obj.del(a.key)
			continue
		}
		aged = true
		kept = append(kept, a)
	}
	d.ages = kept
	return aged
}

// datingYears returns a function that gives the earliest year of the
// events that date the n-th kept resource's ages, if there is one. An age
// is dated by the years of:
//   - its own resource;
//   - the resources one reference away, either way, but not a Patient,
//     Practitioner or Organization (their years are a death or a period of
//     work);
//   - those that place either in their time, however far: an Encounter and
//     its partOf parent (encounter, partOf), the panel Observation and the
//     DiagnosticReport that list a result (hasMember, result);
//   - and, for any of these without a year of its own (an Encounter whose
//     period was lost), the resources one reference away from it: the
//     other records of that Encounter, the Procedure whose report it is.
//
// A birth year (a Patient's birthDate, a date of birth observation's
// value) dates no event. Following every reference transitively would
// date every age by the first Encounter of a chronic Condition that thirty
// years of Encounters name, and mask the ages of most patients over sixty.
func (d *deidentifier) datingYears() func(n int) (int, bool) {
	births := map[*object]bool{}
	for _, b := range d.births {
		births[b.obj] = true
	}
	first := map[int]int{} // resource position → earliest year of an event
	for _, y := range d.years {
		if y.key == "birthDate" || births[y.obj] && y.key == "valueDateTime" {
			continue // a birth year; judged by patchAges
		}
		if f, ok := first[y.n]; !ok || y.year < f {
			first[y.n] = y.year
		}
	}
	datedBy := map[int][]int{} // a resource → those that place it in their time
	neighbours := map[int][]int{}
	for _, l := range d.links {
		if d.isParty(l.from) || d.isParty(l.to) {
			continue
		}
		neighbours[l.from] = append(neighbours[l.from], l.to)
		neighbours[l.to] = append(neighbours[l.to], l.from)
		switch byTarget, ofTarget := datingField(l.field); {
		case byTarget:
			datedBy[l.from] = append(datedBy[l.from], l.to)
		case ofTarget:
			datedBy[l.to] = append(datedBy[l.to], l.from)
		}
	}
	return func(n int) (int, bool) {
		y, ok := 0, false
		note := func(m int) {
			if f, has := first[m]; has && (!ok || f < y) {
				y, ok = f, true
			}
		}
		seen := map[int]bool{n: true}
		stack := []int{n}
		for _, m := range neighbours[n] {
			if !seen[m] {
				seen[m] = true
				stack = append(stack, m)
			}
		}
		var reached []int
		for len(stack) > 0 {
			m := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			reached = append(reached, m)
			for _, up := range datedBy[m] {
				if !seen[up] {
					seen[up] = true
					stack = append(stack, up)
				}
			}
		}
		for _, m := range reached {
			note(m)
			if _, dated := first[m]; !dated {
				for _, o := range neighbours[m] {
					note(o)
				}
			}
		}
		return y, ok
	}
}

// isParty reports whether the n-th kept resource is a person or an
// organization (Patient, Practitioner, Organization) rather than an event:
// its years (a death, a period of work) do not date another resource's age.
func (d *deidentifier) isParty(n int) bool {
	switch d.entries[n-1].typ {
	case "Patient", "Practitioner", "Organization":
		return true
	}
	return false
}

// refYear is the year at which the people of the output are judged: the
// year of Options.Now, unless the output holds patients and all of them are
// known to be deceased; then the latest year of the output (when they were
// last known alive), or Options.Now's if that is earlier. A date in the
// future says nothing about being alive then.
func (d *deidentifier) refYear() int {
	if len(d.patients) == 0 {
		return d.nowYear
	}
	for _, pi := range d.patients {
		if pi.alive {
			return d.nowYear
		}
	}
	return min(d.maxYear, d.nowYear)
}

// removeOldYears removes every year of a date element that is 90 or more
// years before refYear: the record shows that its patient was alive then,
// so 90 or older at the reference year. A Patient's birthDate is judged by
// patchAges. It reports each path removed to remove, and whether there was
// one.
func (d *deidentifier) removeOldYears(remove func(path string)) bool {
	ref := d.refYear()
	found := false
	for _, y := range d.years {
		if ref-y.year < 90 || y.key == "birthDate" {
			continue
		}
		if !y.obj.has(y.key) {
			continue // removed already (a date of birth observation)
		}
		found = true
		remove(y.path)
		y.obj.del(y.key)
	}
	return found
}

// prune removes the objects and arrays that patchAges left empty (a period
// whose years went, an Age without its masked reason) from v, and returns
// v, or nil when v is empty.
func prune(v any) any {
	switch x := v.(type) {
	case *object:
		keys, vals := x.keys[:0], x.vals[:0]
		for i, k := range x.keys {
			if pv := prune(x.vals[i]); pv != nil {
				keys, vals = append(keys, k), append(vals, pv)
			}
		}
		x.keys, x.vals = keys, vals
		if len(keys) == 0 {
			return nil
		}
	case []any:
		out := x[:0]
		for _, e := range x {
			if pe := prune(e); pe != nil {
				out = append(out, pe)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return v
}

// maskAges removes every age under 90 of the output, once a patient's year
// of birth was masked: the Observation value goes, and an Age element keeps
// only a data-absent-reason "masked" extension. In a bundle of several
// patients, the others' ages go too (a share holds one patient's record).
// It reports each path removed to remove. An Age element whose reason the
// sweep takes (a patient named "Mask") is left empty, for prune to remove:
// maskAges reports whether it left one.
func (d *deidentifier) maskAges(remove func(path string)) (emptied bool) {
	for _, a := range d.ages {
		remove(a.path)
		if a.key != "" {
			a.obj.del(a.key)
			continue
		}
		a.obj.keys, a.obj.vals = nil, nil
		if code, ok := d.text(a.path, "masked"); ok {
			dar := &object{}
			dar.set("url", URLDataAbsentReason)
			dar.set("valueCode", code)
			a.obj.set("extension", []any{dar})
		} else {
			emptied = true
		}
	}
	return emptied
}

// hasMarker reports whether exts (a Patient's output extensions) say the
// patient is 90 or older (URLAge90OrOlder, true).
func hasMarker(exts []any) bool {
	for _, e := range exts {
		o := e.(*object)
		u, _ := o.get("url")
		v, _ := o.get("valueBoolean")
		if u == URLAge90OrOlder && v == true {
			return true
		}
	}
	return false
}
