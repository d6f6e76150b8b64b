package deid

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// Sentinel errors; test with errors.Is (they are wrapped with detail). No
// error message repeats a value of the input.
var (
	// ErrNotFHIR reports input that is not a FHIR JSON resource: not JSON,
	// not a JSON object, or an object without a resourceType. Other content
	// (PDF, DICOM, HL7 v2, C-CDA XML, ...) cannot be de-identified by this
	// package and must not be shared as anonymised.
	ErrNotFHIR = errors.New("deid: not a FHIR R4 JSON resource; only FHIR JSON can be de-identified")

	// ErrUnsupported reports a FHIR resource (not a Bundle) of a type this
	// package does not de-identify, or one carrying a modifierExtension
	// (whose meaning cannot be kept without it).
	ErrUnsupported = errors.New("deid: FHIR resource cannot be de-identified")
)

// Options tunes Deidentify. The zero value is the Safe Harbor default.
type Options struct {
	// Now is the date at which the current age of living patients is
	// judged (a patient who is, or may be, 90 or older at that date loses
	// the year of birth). Zero means time.Now(). The output depends on Now
	// only through that decision; pass a fixed value for reproducible
	// output.
	Now time.Time

	// DropYears removes every date element entirely instead of keeping its
	// year (Safe Harbor permits the year; a stricter sharing policy may not).
	DropYears bool
}

// Report tells the sharer what was done. Paths name locations of the input
// ("$.entry[3].resource.name"); they contain the input's member names and
// array indices but never a value. The report is meant for the sharer and
// is not part of the de-identified output.
type Report struct {
	// Removed lists every element removed: not whitelisted, malformed,
	// identifying, a reference whose target is not in the output, or a value
	// swept because it contains an identifying string of the input.
	Removed []string
	// Generalized lists every element that was kept in a coarser form: a
	// date reduced to its year, an age over 89 aggregated into "90 or
	// older", a Bundle's type turned into "collection".
	Generalized []string
	// DroppedResources lists the resources dropped whole, as "PATH (TYPE):
	// reason" (TYPE only when it looks like a FHIR type name).
	DroppedResources []string
}

// Deidentify returns a Safe Harbor de-identified copy of a FHIR R4 JSON
// resource: a single resource or a Bundle of them. See the package
// documentation for the rules. The output is indented JSON and deterministic:
// the same input and options give the same bytes.
//
// Errors: ErrNotFHIR when in is not a FHIR JSON resource; ErrUnsupported when
// it is a single resource of an unsupported type. A Bundle is always
// accepted; its unsupported entries are dropped and reported.
func Deidentify(in []byte, opts Options) ([]byte, *Report, error) {
	root, err := parse(in)
	if err != nil {
		return nil, nil, err
	}
	rt := root["resourceType"].(string) // checked by parse
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	d := &deidentifier{opts: opts, nowYear: now.UTC().Year(), report: &Report{}}

	var out *object
	if rt == "Bundle" {
		out = d.bundle(root)
	} else {
		r := d.classify("$", root)
		if r.schema == nil {
			return nil, nil, fmt.Errorf("%w: %s: %s", ErrUnsupported, r.typ, r.why)
		}
		d.entries = []*resourceEntry{r}
		d.collectNeedles(root)
		d.index()
		out = d.resource(r)
	}
	if d.patchAges() {
		prune(out)
	}

	var buf bytes.Buffer
	if err := encode(&buf, out); err != nil {
		return nil, nil, err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, buf.Bytes(), "", "  "); err != nil {
		return nil, nil, fmt.Errorf("deid: internal error: %v", err)
	}
	pretty.WriteByte('\n')
	return pretty.Bytes(), d.report, nil
}

// parse decodes a FHIR JSON resource, numbers kept as literals.
func parse(in []byte) (map[string]any, error) {
	in = bytes.TrimPrefix(in, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: not JSON", ErrNotFHIR)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON value", ErrNotFHIR)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: the JSON value is not an object", ErrNotFHIR)
	}
	rt, ok := m["resourceType"].(string)
	if !ok {
		return nil, fmt.Errorf("%w: no resourceType", ErrNotFHIR)
	}
	if !typeName.MatchString(rt) {
		return nil, fmt.Errorf("%w: resourceType is not a FHIR type name", ErrNotFHIR)
	}
	return m, nil
}

var typeName = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)

// resourceEntry is one resource of the input.
type resourceEntry struct {
	path   string // of the resource in the input: "$" or "$.entry[i].resource"
	res    map[string]any
	typ    string
	schema *resourceSchema // nil: dropped
	why    string          // why it is dropped
	n      int             // 1-based position among the kept resources
	// fullURL is the entry's fullUrl in the input, if any.
	fullURL string
}

type patientInfo struct {
	path      string
	out       *object
	birthYear int // 0: no usable birthDate in the output
	alive     bool
	deathYear int  // of the output's deceasedDateTime, when hasDeath
	hasDeath  bool // the output has a deceasedDateTime
	marked    bool // the output says 90 or older (an input's URLAge90OrOlder)
}

type deidentifier struct {
	opts     Options
	nowYear  int
	report   *Report
	entries  []*resourceEntry // the kept ones
	needles  needles          // the identifying strings of the input
	refs     map[string]int   // reference key → entry position; -1 when ambiguous
	maxYear  int              // the latest year of any date in the output
	patients []patientInfo
	ages     []ageSite  // ages under 90 in the output (see maskAges)
	births   []ageSite  // years of date of birth observations in the output (see patchAges)
	years    []yearSite // every year of a date element in the output (see patchAges)
	links    []link     // the references kept (see agedByYear)
	cur      int        // the position (resourceEntry.n) of the resource being de-identified
}

// yearSite is the year of a date element in the output: member key of obj,
// in the n-th kept resource.
type yearSite struct {
	obj  *object
	key  string
	path string
	year int
	n    int
}

// ageSite is an age under 90 in the output: member key of obj, or, when
// key is empty, obj itself (an Age quantity).
type ageSite struct {
	obj  *object
	key  string
	path string
	// n is the position of the resource; low, when hasLow, the age's
	// lower bound in years (a Range's low; a Range's high has none).
	n      int
	low    float64
	hasLow bool
	// uncoded: a value in a unit of time of an Observation not coded as an
	// age (timeValuePost).
	uncoded bool
}

func (d *deidentifier) removed(p string)     { d.report.Removed = append(d.report.Removed, p) }
func (d *deidentifier) generalized(p string) { d.report.Generalized = append(d.report.Generalized, p) }

// classify decides whether a resource is kept.
func (d *deidentifier) classify(path string, res map[string]any) *resourceEntry {
	r := &resourceEntry{path: path, res: res}
	rt, ok := res["resourceType"].(string)
	switch {
	case !ok:
		r.why = "no resourceType"
	case rt == "Bundle" && path != "$":
		r.typ, r.why = rt, "nested Bundle not supported"
	case resources[rt] == nil:
		r.typ, r.why = rt, "resource type not supported"
	case hasModifierExtension(res):
		r.typ, r.why = rt, "modifierExtension present"
	default:
		r.typ, r.schema = rt, resources[rt]
	}
	return r
}

func hasModifierExtension(m map[string]any) bool {
	me, ok := m["modifierExtension"]
	if !ok || me == nil {
		return false
	}
	if a, isArr := me.([]any); isArr && len(a) == 0 {
		return false
	}
	return true
}

func (d *deidentifier) dropResource(p, typ, why string) {
	if typeName.MatchString(typ) {
		d.report.DroppedResources = append(d.report.DroppedResources, p+" ("+typ+"): "+why)
	} else {
		d.report.DroppedResources = append(d.report.DroppedResources, p+": "+why)
	}
	d.removed(p)
}

// bundle de-identifies a Bundle: its entries' resources, in order, as a
// "collection" (transaction requests, search data, links, signatures and the
// Bundle's own identifier and timestamp are removed).
func (d *deidentifier) bundle(root map[string]any) *object {
	for _, k := range sortedKeys(root) {
		switch k {
		case "resourceType", "entry":
		case "type":
			if t, _ := root[k].(string); t != "collection" {
				d.generalized("$.type")
			}
		default:
			d.removed("$." + k)
		}
	}
	// One walk of the whole Bundle: its own identifier, and every entry's
	// resource (and what is inside it), kept or dropped.
	d.collectNeedles(root)
	if ev, ok := root["entry"]; ok && ev != nil {
		arr, ok := ev.([]any)
		if !ok {
			d.removed("$.entry")
		}
		for i, e := range arr {
			ep := "$.entry[" + strconv.Itoa(i) + "]"
			em, ok := e.(map[string]any)
			if !ok {
				d.removed(ep)
				continue
			}
			res, ok := em["resource"].(map[string]any)
			if !ok {
				d.dropResource(ep, "", "entry without a resource")
				continue
			}
			r := d.classify(ep+".resource", res)
			if r.schema == nil {
				d.dropResource(ep, r.typ, r.why)
				continue
			}
			for _, k := range sortedKeys(em) {
				if k != "resource" && k != "fullUrl" {
					d.removed(ep + "." + k)
				}
			}
			if fu, ok := em["fullUrl"]; ok {
				if r.fullURL, ok = fu.(string); !ok && fu != nil {
					d.removed(ep + ".fullUrl")
				}
			}
			d.entries = append(d.entries, r)
		}
	}
	d.index()

	out := &object{}
	out.set("resourceType", "Bundle")
	out.set("type", "collection")
	var entries []any
	for _, r := range d.entries {
		e := &object{}
		e.set("fullUrl", "urn:uuid:"+token(r.n))
		e.set("resource", d.resource(r))
		entries = append(entries, e)
	}
	if len(entries) > 0 {
		out.set("entry", entries)
	}
	return out
}

// token is the neutral identifier of the n-th kept resource: its id, and,
// prefixed with "urn:uuid:", its fullUrl and the value of every reference to
// it. It is a syntactically valid UUID (version 8, "custom") made of a fixed
// prefix and the position in decimal, so it carries nothing of the input but
// the order of the resources, and contains no date-like digit pattern.
func token(n int) string {
	return fmt.Sprintf("de1d0c5e-de1d-8de1-ade1-%012d", n)
}

// resource de-identifies one kept resource.
func (d *deidentifier) resource(r *resourceEntry) *object {
	d.cur = r.n
	out := d.fields(r.path, r.res, r.schema.schema, true)
	d.noteYears(r.path, r.schema.schema, out)
	// resourceType and id first; out itself is kept, as yearSites point to it.
	out.keys = append([]string{"resourceType", "id"}, out.keys...)
	out.vals = append([]any{r.typ, token(r.n)}, out.vals...)
	if r.schema.post != nil {
		r.schema.post(d, r, out)
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
