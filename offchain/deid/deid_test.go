package deid

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func readBundle(t testing.TB) []byte {
	t.Helper()
	in, err := os.ReadFile("testdata/synthetic-bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func mustDeidentify(t testing.TB, in []byte, opts Options) ([]byte, *Report) {
	t.Helper()
	out, rep, err := Deidentify(in, opts)
	if err != nil {
		t.Fatalf("Deidentify: %v", err)
	}
	if !json.Valid(out) {
		t.Fatalf("output is not valid JSON:\n%s", out)
	}
	return out, rep
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// leaf is a string of the output, with the member it is the value of.
type leaf struct {
	path, key, val string
}

func stringLeaves(v any, path, key string, out *[]leaf) {
	switch x := v.(type) {
	case string:
		*out = append(*out, leaf{path, key, x})
	case []any:
		for i, e := range x {
			stringLeaves(e, path+"["+itoa(i)+"]", key, out)
		}
	case map[string]any:
		for k, e := range x {
			stringLeaves(e, path+"."+k, k, out)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// resourcesByType returns the resources of a de-identified Bundle.
func resourcesByType(t testing.TB, bundle map[string]any) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		r := e.(map[string]any)["resource"].(map[string]any)
		rt := r["resourceType"].(string)
		out[rt] = append(out[rt], r)
	}
	return out
}

func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// Every identifying value planted in testdata/synthetic-bundle.json.
var planted = []string{
	// names (patient, maiden name, mother's maiden name, next of kin, practitioner, organization)
	"Karina", "Oberbrunner", "Lavinia", "Quigley", "Wilhelmina", "Harold", "Gregory", "House", "Ratched",
	"Springfield General Hospital", "Evergreen Pharmacy",
	// telecom
	"555-283-4417", "555-283-4499", "555-610-9921", "413-555-0100",
	"karina.oberbrunner@example.com", "gregory.house@springfield-general.example.org",
	// geography below the state
	"742 Evergreen Terrace", "Apt 5B", "Springfield", "Hampden", "01109", "9 Elm Street", "Chicopee", "01020",
	"100 Main Street", "01103", "Fall River", "Massachusetts", "42.1015", "72.5898",
	// identifiers
	"MRN-7734120", "999-41-7352", "S99948706", "X41225687X", "HPB-5520019-01", "9999934017", "MD-MA-228811",
	"V-7731-0012", "PRE-ADM-99812", "RX-55512-A", "GRP-7781", "LAB-REP-881", "LOT-88231Z", "CLM-2019-004417",
	"SN-443-992-1187", "09504000059118", "7654321D", "88-1120-7734", "SPEC-8841", "EXPORT-20190305-17",
	"org-3c5e7a", "prac-77f1", "loc-445", "bundle-karina-0304", "pharmacy-1",
	// the input's resource ids / fullUrls
	"3f1c9a52-7d4e-4b8a-9c21-5e6f7a8b9c0d", "8a2b4c6d-1e3f-4a5b-8c7d-9e0f1a2b3c4d", "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
	"0a1b2c3d-4e5f-4607-8192-a3b4c5d6e7f8", "60718293-a4b5-4c6d-a7f8-091a2b3c4d5e",
	// URLs and IP addresses
	"ehr.example.org", "karina-oberbrunner.example.net", "192.0.2.44", "hospital.example.org", "smarthealthit",
	// photo and attached report (base64 prefixes)
	"/9j/4", "TGFiIHJlcG9ydC", "image/jpeg", "text/plain",
	// narrative, notes and other free text
	"xhtml", "Exam Room", "fasting", "dinner", "refill", "take with food", "picnic", "follow up",
	"Health plan beneficiary", "portrait",
	// a fixed birth time and a server-side version
	"03:25", "versionId",
	// unknown resources
	"Claim", "Device", "129.16", "glucose meters",
}

func TestSyntheticBundle(t *testing.T) {
	in := readBundle(t)
	out, rep := mustDeidentify(t, in, Options{Now: testNow})
	lower := bytes.ToLower(out)

	t.Run("no planted identifier remains", func(t *testing.T) {
		for _, s := range planted {
			if bytes.Contains(lower, []byte(strings.ToLower(s))) {
				t.Errorf("output contains %q", s)
			}
		}
	})

	t.Run("no date finer than a year", func(t *testing.T) {
		for _, re := range []*regexp.Regexp{
			regexp.MustCompile(`[0-9]{4}-[0-9]{2}`),      // YYYY-MM and YYYY-MM-DD
			regexp.MustCompile(`[0-9]{1,2}/[0-9]{1,2}/`), // US dates
			regexp.MustCompile(`T[0-9]{2}:[0-9]{2}`),     // times of day
		} {
			if m := re.Find(out); m != nil {
				t.Errorf("output contains %q (%v)", m, re)
			}
		}
	})

	doc := decode(t, out)
	var leaves []leaf
	stringLeaves(doc, "$", "", &leaves)

	t.Run("URIs only as code systems, extension URLs and tokens", func(t *testing.T) {
		uri := regexp.MustCompile(`^(https?|urn|ftp|file):|://`)
		token := regexp.MustCompile(`^urn:uuid:de1d0c5e-de1d-8de1-ade1-[0-9]{12}$`)
		for _, l := range leaves {
			if !uri.MatchString(l.val) {
				continue
			}
			switch {
			case l.key == "system" || l.key == "url":
			case (l.key == "reference" || l.key == "fullUrl") && token.MatchString(l.val):
			default:
				t.Errorf("%s = %q: a URI outside a code system, extension URL or token", l.path, l.val)
			}
		}
	})

	t.Run("clinical content kept", func(t *testing.T) {
		for _, s := range []string{
			`"2339-0"`, `"4548-4"`, `"85354-9"`, `"8480-6"`, `"8462-4"`, `"29463-7"`, `"51990-0"`, // LOINC
			`"value": 98.4`, `"value": 7.20`, `"value": 128`, `"value": 82`, `"value": 72.5`,
			`"mg/dL"`, `"mm[Hg]"`, `"kg"`, `"%"`,
			`"44054006"`, `"185349003"`, `"430193006"`, `"91935009"`, `"247472004"`, // SNOMED CT
			`"860975"`, `"140"`, // RxNorm, CVX
			`"birthDate": "1968"`, `"gender": "female"`, `"state": "MA"`, `"2106-3"`, `"2186-5"`,
			`"onsetDateTime": "2015"`, `"effectiveDateTime": "2019"`, `"recordedDate": "2012"`,
			`"Diabetes mellitus type 2 (disorder)"`, `"Glucose [Mass/volume] in Blood"`,
		} {
			if !bytes.Contains(out, []byte(s)) {
				t.Errorf("output lacks %s", s)
			}
		}
		rs := resourcesByType(t, doc)
		counts := map[string]int{"Patient": 1, "Practitioner": 1, "Organization": 1, "Encounter": 1, "Observation": 4,
			"Condition": 1, "MedicationRequest": 1, "DiagnosticReport": 1, "Procedure": 1, "AllergyIntolerance": 1, "Immunization": 1}
		for typ, n := range counts {
			if len(rs[typ]) != n {
				t.Errorf("%d %s in the output, want %d", len(rs[typ]), typ, n)
			}
		}
		if got := get(rs["Observation"][2], "component", 0, "valueQuantity", "value"); got != 128.0 {
			t.Errorf("systolic = %v", got)
		}
		if got := get(rs["Encounter"][0], "period", "start"); got != "2019" {
			t.Errorf("Encounter.period.start = %v", got)
		}
		if got := get(rs["MedicationRequest"][0], "dosageInstruction", 0, "timing", "repeat", "periodUnit"); got != "d" {
			t.Errorf("dosage timing = %v", got)
		}
	})

	t.Run("references consistent", func(t *testing.T) {
		fullURLs := map[string]string{} // fullUrl → resourceType
		for _, e := range doc["entry"].([]any) {
			em := e.(map[string]any)
			fu, r := em["fullUrl"].(string), em["resource"].(map[string]any)
			if _, dup := fullURLs[fu]; dup {
				t.Errorf("duplicate fullUrl %s", fu)
			}
			fullURLs[fu] = r["resourceType"].(string)
			if fu != "urn:uuid:"+r["id"].(string) {
				t.Errorf("fullUrl %s does not match id %s", fu, r["id"])
			}
		}
		n := 0
		for _, l := range leaves {
			if l.key == "reference" {
				n++
				if _, ok := fullURLs[l.val]; !ok {
					t.Errorf("%s = %s resolves to nothing in the output", l.path, l.val)
				}
			}
		}
		if n < 25 {
			t.Errorf("only %d references kept", n)
		}
		rs := resourcesByType(t, doc)
		target := func(r map[string]any, path ...any) string {
			s, _ := get(r, append(path, "reference")...).(string)
			return fullURLs[s]
		}
		for _, c := range []struct {
			res  map[string]any
			path []any
			want string
		}{
			{rs["Patient"][0], []any{"generalPractitioner", 0}, "Practitioner"}, // conditional reference
			{rs["Patient"][0], []any{"managingOrganization"}, "Organization"},   // relative vs RESTful fullUrl
			{rs["Observation"][0], []any{"subject"}, "Patient"},                 // urn:uuid
			{rs["Observation"][0], []any{"encounter"}, "Encounter"},
			{rs["Encounter"][0], []any{"participant", 0, "individual"}, "Practitioner"},
			{rs["DiagnosticReport"][0], []any{"result", 0}, "Observation"},
			{rs["DiagnosticReport"][0], []any{"result", 1}, "Observation"},
			{rs["MedicationRequest"][0], []any{"reasonReference", 0}, "Condition"},
		} {
			if got := target(c.res, c.path...); got != c.want {
				t.Errorf("%s.%v → %q, want %s", c.res["resourceType"], c.path, got, c.want)
			}
		}
		// References to what is not in the output are removed.
		if get(rs["Encounter"][0], "location") != nil || get(rs["Observation"][0], "specimen") != nil {
			t.Error("a reference to a resource absent from the output was kept")
		}
	})

	t.Run("report", func(t *testing.T) {
		if len(rep.DroppedResources) != 2 ||
			rep.DroppedResources[0] != "$.entry[14] (Claim): resource type not supported" ||
			rep.DroppedResources[1] != "$.entry[15] (Device): resource type not supported" {
			t.Errorf("DroppedResources = %q", rep.DroppedResources)
		}
		for _, p := range []string{
			"$.entry[14]", "$.entry[15]", "$.identifier", "$.timestamp",
			"$.entry[0].resource.name", "$.entry[0].resource.telecom", "$.entry[0].resource.identifier",
			"$.entry[0].resource.photo", "$.entry[0].resource.contact", "$.entry[0].resource.text",
			"$.entry[0].resource.address[0].line", "$.entry[0].resource.address[0].postalCode",
			"$.entry[0].resource.extension[2]", // mothersMaidenName
			"$.entry[0].resource.extension[4]", // birthPlace
			"$.entry[0].resource._birthDate",   // birthTime
			"$.entry[3].resource.location",
			"$.entry[4].resource.note", "$.entry[4].resource.issued", "$.entry[4].resource.subject.display",
			"$.entry[9].resource.note", "$.entry[9].resource.dosageInstruction[0].text",
			"$.entry[10].resource.presentedForm", "$.entry[10].resource.conclusion",
			"$.entry[13].resource.lotNumber",
		} {
			if !slices.Contains(rep.Removed, p) {
				t.Errorf("Removed lacks %s", p)
			}
		}
		for _, p := range []string{
			"$.type", "$.entry[0].resource.birthDate", "$.entry[3].resource.period.start",
			"$.entry[4].resource.effectiveDateTime", "$.entry[8].resource.onsetDateTime",
			"$.entry[9].resource.authoredOn", "$.entry[11].resource.performedPeriod.end",
		} {
			if !slices.Contains(rep.Generalized, p) {
				t.Errorf("Generalized lacks %s", p)
			}
		}
		// The report names paths, never values.
		all := strings.ToLower(strings.Join(slices.Concat(rep.Removed, rep.Generalized, rep.DroppedResources), "\n"))
		for _, s := range []string{"karina", "oberbrunner", "555-", "mrn-", "springfield", "1968", "2019"} {
			if strings.Contains(all, s) {
				t.Errorf("report contains %q", s)
			}
		}
	})

	t.Run("idempotent", func(t *testing.T) {
		again, _ := mustDeidentify(t, out, Options{Now: testNow})
		if !bytes.Equal(again, out) {
			t.Errorf("de-identifying the output changes it:\n%s", again)
		}
	})
}

func TestDeterministic(t *testing.T) {
	in := readBundle(t)
	for _, opts := range []Options{{Now: testNow}, {}} {
		a, ra := mustDeidentify(t, in, opts)
		b, rb := mustDeidentify(t, in, opts)
		if !bytes.Equal(a, b) {
			t.Fatal("two runs gave different bytes")
		}
		if !slices.Equal(ra.Removed, rb.Removed) || !slices.Equal(ra.Generalized, rb.Generalized) {
			t.Fatal("two runs gave different reports")
		}
	}
	// The order of members in the input does not matter: re-encode it with
	// Go's sorted map keys (numbers kept as literals).
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	sorted, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := mustDeidentify(t, in, Options{Now: testNow})
	b, _ := mustDeidentify(t, sorted, Options{Now: testNow})
	if !bytes.Equal(a, b) {
		t.Error("output depends on the member order of the input")
	}
}

func TestNotFHIR(t *testing.T) {
	for name, in := range map[string]string{
		"empty":                 "",
		"white space":           " \n\t",
		"text":                  "Patient Karina Oberbrunner, DOB 1968-04-12",
		"PDF":                   "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
		"HL7 v2":                "MSH|^~\\&|EPIC|HOSP|||20190304||ADT^A01|1|P|2.5\rPID|||MRN-7734120||Oberbrunner^Karina",
		"FHIR XML":              `<Patient xmlns="http://hl7.org/fhir"><id value="1"/></Patient>`,
		"DICOM":                 strings.Repeat("\x00", 128) + "DICM",
		"JSON array":            `[{"resourceType":"Patient"}]`,
		"JSON string":           `"Patient"`,
		"JSON number":           `42`,
		"JSON null":             `null`,
		"no resourceType":       `{"name":[{"family":"Oberbrunner"}],"birthDate":"1968-04-12"}`,
		"numeric resourceType":  `{"resourceType":7}`,
		"empty resourceType":    `{"resourceType":""}`,
		"non-type resourceType": `{"resourceType":"patient record"}`,
		"trailing data":         `{"resourceType":"Patient"} {"resourceType":"Patient"}`,
		"truncated":             `{"resourceType":"Patient","name":[{"family":"Ober`,
	} {
		out, rep, err := Deidentify([]byte(in), Options{Now: testNow})
		if !errors.Is(err, ErrNotFHIR) {
			t.Errorf("%s: err = %v, want ErrNotFHIR", name, err)
		}
		if out != nil || rep != nil {
			t.Errorf("%s: output with an error", name)
		}
		if err != nil && (strings.Contains(err.Error(), "Oberbrunner") || strings.Contains(err.Error(), "MRN")) {
			t.Errorf("%s: error %q repeats the input", name, err)
		}
	}
	// A byte order mark is tolerated.
	if _, _, err := Deidentify([]byte("\xef\xbb\xbf{\"resourceType\":\"Patient\"}"), Options{Now: testNow}); err != nil {
		t.Errorf("BOM: %v", err)
	}
}

func TestUnsupported(t *testing.T) {
	for name, in := range map[string]string{
		"Claim":             `{"resourceType":"Claim","id":"c1","patient":{"reference":"Patient/p1"}}`,
		"DocumentReference": `{"resourceType":"DocumentReference","content":[{"attachment":{"data":"S2FyaW5h"}}]}`,
		"modifierExtension": `{"resourceType":"Patient","modifierExtension":[{"url":"http://example.org/x","valueBoolean":true}],"name":[{"family":"Oberbrunner"}]}`,
	} {
		_, _, err := Deidentify([]byte(in), Options{Now: testNow})
		if !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNotFHIR) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
}

func TestSingleResource(t *testing.T) {
	in := `{"resourceType":"Observation","id":"obs-1","meta":{"lastUpdated":"2020-01-01T00:00:00Z"},
	  "status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"HR"},
	  "subject":{"reference":"Patient/mrn-7734120","display":"Karina Oberbrunner"},
	  "effectiveDateTime":"2020-02-29T23:59:59+14:00",
	  "valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`
	out, rep := mustDeidentify(t, []byte(in), Options{Now: testNow})
	want := `{
  "resourceType": "Observation",
  "id": "de1d0c5e-de1d-8de1-ade1-000000000001",
  "status": "final",
  "code": {
    "coding": [
      {
        "system": "http://loinc.org",
        "code": "8867-4",
        "display": "Heart rate"
      }
    ]
  },
  "effectiveDateTime": "2020",
  "valueQuantity": {
    "value": 72,
    "unit": "/min",
    "system": "http://unitsofmeasure.org",
    "code": "/min"
  }
}
`
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	wantRemoved := []string{"$.code.text", "$.meta", "$.subject.display", "$.subject.reference"}
	if !slices.Equal(rep.Removed, wantRemoved) {
		t.Errorf("Removed = %q, want %q", rep.Removed, wantRemoved)
	}
	if !slices.Equal(rep.Generalized, []string{"$.effectiveDateTime"}) {
		t.Errorf("Generalized = %q", rep.Generalized)
	}
}

// patientBundle is a Bundle of one Patient (with the given members) and the
// extra resources.
func patientBundle(patient string, extra ...string) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p"`)
	if patient != "" {
		b.WriteString("," + patient)
	}
	b.WriteString("}}")
	for _, r := range extra {
		b.WriteString(`,{"resource":` + r + "}")
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func TestAgeOver89(t *testing.T) {
	masked := map[string]any{"extension": []any{map[string]any{"url": URLDataAbsentReason, "valueCode": "masked"}}}
	marker := map[string]any{"url": URLAge90OrOlder, "valueBoolean": true}
	for _, c := range []struct {
		name      string
		in        []byte
		now       time.Time
		birthDate any // want; nil: removed and marked
	}{
		{"alive, 93", patientBundle(`"birthDate":"1931-07-20"`), testNow, nil},
		{"alive, 89", patientBundle(`"birthDate":"1936-06-01"`), testNow, "1936"},
		{"alive, turns 90 this calendar year", patientBundle(`"birthDate":"1936-06-01"`), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"year-only birthDate", patientBundle(`"birthDate":"1930"`), testNow, nil},
		{"died at 83", patientBundle(`"birthDate":"1931-07-20","deceasedDateTime":"2015-02-01"`), testNow, "1931"},
		{"died at 90", patientBundle(`"birthDate":"1931-07-20","deceasedDateTime":"2021-02-01T10:00:00Z"`), testNow, nil},
		{"deceased, last seen at 91", patientBundle(`"birthDate":"1931-07-20","deceasedBoolean":true`,
			`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:p"},"period":{"start":"2022-05-01"}}`),
			testNow, nil},
		{"deceased, last seen at 71", patientBundle(`"birthDate":"1931-07-20","deceasedBoolean":true`,
			`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":"2002-05-01"}}`),
			testNow, "1931"},
		{"already marked", patientBundle(`"birthDate":"1930","extension":[{"url":"` + URLAge90OrOlder + `","valueBoolean":true}]`), testNow, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, rep := mustDeidentify(t, c.in, Options{Now: c.now})
			p := resourcesByType(t, decode(t, out))["Patient"][0]
			if c.birthDate != nil {
				if p["birthDate"] != c.birthDate || p["_birthDate"] != nil || p["extension"] != nil {
					t.Errorf("birthDate = %v, _birthDate = %v, extension = %v; want %v", p["birthDate"], p["_birthDate"], p["extension"], c.birthDate)
				}
				return
			}
			if _, ok := p["birthDate"]; ok {
				t.Errorf("birthDate %v kept for a patient 90 or older", p["birthDate"])
			}
			if b, _ := json.Marshal(p["_birthDate"]); !bytes.Equal(b, mustMarshal(masked)) {
				t.Errorf("_birthDate = %s", b)
			}
			if b, _ := json.Marshal(p["extension"]); !bytes.Equal(b, mustMarshal([]any{marker})) {
				t.Errorf("extension = %s", b)
			}
			if !slices.Contains(rep.Removed, "$.entry[0].resource.birthDate") || slices.Contains(rep.Generalized, "$.entry[0].resource.birthDate") {
				t.Errorf("report: Removed %q, Generalized %q", rep.Removed, rep.Generalized)
			}
			if regexp.MustCompile(`"19[0-3][0-9]"`).Match(out) {
				t.Errorf("a birth year remains:\n%s", out)
			}
		})
	}
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestAgeQuantities(t *testing.T) {
	q := func(v, unit, code string) string {
		s := `{"value":` + v
		if unit != "" {
			s += `,"unit":"` + unit + `"`
		}
		if code != "" {
			s += `,"system":"http://unitsofmeasure.org","code":"` + code + `"`
		}
		return s + "}"
	}
	cond := func(member string) string {
		return `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"53741008"}]},` + member + `}`
	}
	obs := func(loinc, member string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` + loinc + `"}]},` + member + `}`
	}
	over := `{"value":90,"comparator":">=","unit":"years","system":"http://unitsofmeasure.org","code":"a"}`
	for _, c := range []struct {
		name, res, path, want string // want "": removed
	}{
		{"onsetAge 45 a kept", cond(`"onsetAge":` + q("45", "years", "a")), "onsetAge", q("45", "years", "a")},
		{"onsetAge 93 a", cond(`"onsetAge":` + q("93", "years", "a")), "onsetAge", over},
		{"onsetAge 90 a", cond(`"onsetAge":` + q("90", "yr", "")), "onsetAge", over},
		{"onsetAge 89.9 a kept", cond(`"onsetAge":` + q("89.9", "", "a")), "onsetAge", q("89.9", "", "a")},
		{"onsetAge 1100 mo", cond(`"onsetAge":` + q("1100", "months", "mo")), "onsetAge", over},
		{"onsetAge 34000 d", cond(`"onsetAge":` + q("34000", "", "d")), "onsetAge", over},
		{"onsetAge < 95 a", cond(`"onsetAge":{"value":95,"comparator":"<","unit":"a"}`), "onsetAge", ""},
		{"onsetAge not in time", cond(`"onsetAge":` + q("93", "kg", "kg")), "onsetAge", ""},
		{"onsetAge ampere is not annum", cond(`"onsetAge":` + q("93", "", "A")), "onsetAge", ""},
		{"onsetRange 85-95 a", cond(`"onsetRange":{"low":` + q("85", "", "a") + `,"high":` + q("95", "", "a") + `}`),
			"onsetRange", `{"low":` + q("85", "", "a") + `}`},
		{"onsetRange 92-95 a", cond(`"onsetRange":{"low":` + q("92", "", "a") + `,"high":` + q("95", "", "a") + `}`),
			"onsetRange", `{"low":{"value":90,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`},
		{"age observation 94 a", obs("30525-0", `"valueQuantity":`+q("94", "", "a")), "valueQuantity", over},
		{"age observation 94, no unit", obs("30525-0", `"valueQuantity":{"value":94}`), "valueQuantity", over},
		{"age observation valueInteger 97", obs("21612-7", `"valueInteger":97`), "valueQuantity", over},
		{"age observation 61 kept", obs("30525-0", `"valueInteger":61`), "valueInteger", "61"},
		{"age observation range 95-99, no unit", obs("30525-0", `"valueRange":{"low":{"value":95},"high":{"value":99}}`),
			"valueRange", `{"low":{"value":90,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`},
		{"age observation range 85-95, no unit", obs("21611-9", `"valueRange":{"low":{"value":85},"high":{"value":95}}`),
			"valueRange", `{"low":{"value":85}}`},
		{"age observation range up to 95, no unit", obs("21611-9", `"valueRange":{"high":{"value":95}}`), "valueRange", ""},
		{"age observation range 60-70 kept", obs("21611-9", `"valueRange":{"low":{"value":60},"high":{"value":70}}`),
			"valueRange", `{"low":{"value":60},"high":{"value":70}}`},
		{"other observation 94 kept", obs("2339-0", `"valueQuantity":`+q("94", "mg/dL", "mg/dL")), "valueQuantity", q("94", "mg/dL", "mg/dL")},
		{"time quantity 95 a in any observation", obs("11369-6", `"valueQuantity":`+q("95", "", "a")), "valueQuantity", over},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _ := mustDeidentify(t, patientBundle("", c.res), Options{Now: testNow})
			res, _ := get(decode(t, out), "entry", 1, "resource").(map[string]any)
			checkMember(t, res, c.path, c.want)
		})
	}
	// Reference ranges: an age bound of 90 or more is aggregated too.
	out, _ := mustDeidentify(t, patientBundle("", obs("2339-0",
		`"referenceRange":[{"low":{"value":70},"high":{"value":99},"age":{"low":`+q("18", "", "a")+`,"high":`+q("120", "", "a")+`}}]`)),
		Options{Now: testNow})
	age := get(resourcesByType(t, decode(t, out))["Observation"][0], "referenceRange", 0, "age")
	if got, want := string(mustMarshal(age)), `{"low":{"code":"a","system":"http://unitsofmeasure.org","value":18}}`; got != want {
		t.Errorf("referenceRange.age = %s, want %s", got, want)
	}
}

func TestSweep(t *testing.T) {
	// A patient whose names collide with kept coded strings: the strings
	// that contain them go, the codes stay.
	in := patientBundle(
		`"name":[{"family":"White","given":["Peanut"]}],"telecom":[{"system":"phone","value":"8302"}],"gender":"female",
		 "extension":[{"url":"`+URLRace+`","extension":[
		   {"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},
		   {"url":"text","valueString":"White"}]}]`,
		`{"resourceType":"AllergyIntolerance","code":{"coding":[{"system":"http://snomed.info/sct","code":"91935009","display":"Allergy to peanuts"}]},"patient":{"reference":"urn:uuid:p"}}`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body height"}]},
		  "valueCodeableConcept":{"coding":[{"system":"http://example.org/local","code":"2019-03-04","display":"mail karina@example.com"}]}}`,
	)
	out, rep := mustDeidentify(t, in, Options{Now: testNow})
	for _, s := range []string{"White", "white", "Peanut", "peanut", "8302", "2019-03-04", "@"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output contains %q:\n%s", s, out)
		}
	}
	for _, s := range []string{`"2106-3"`, `"91935009"`, `"female"`} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("output lacks %s", s)
		}
	}
	for _, p := range []string{
		"$.entry[0].resource.extension[0].extension[0].valueCoding.display",
		"$.entry[0].resource.extension[0].extension[1]", // the race text: free text, not kept
		"$.entry[1].resource.code.coding[0].display",
		"$.entry[2].resource.code.coding[0].code",                    // "8302-2" contains the phone number "8302": the coding goes
		"$.entry[2].resource.valueCodeableConcept.coding[0].code",    // a date
		"$.entry[2].resource.valueCodeableConcept.coding[0].display", // an e-mail address
	} {
		if !slices.Contains(rep.Removed, p) {
			t.Errorf("Removed lacks %s", p)
		}
	}
}

func TestDropYears(t *testing.T) {
	out, _ := mustDeidentify(t, readBundle(t), Options{Now: testNow, DropYears: true})
	if m := regexp.MustCompile(`"(19|20)[0-9]{2}"`).Find(out); m != nil {
		t.Errorf("DropYears: output contains %s", m)
	}
	if bytes.Contains(out, []byte("birthDate")) || bytes.Contains(out, []byte("effectiveDateTime")) || bytes.Contains(out, []byte(`"period": {`)) {
		t.Error("DropYears: a date element remains")
	}
}

func TestBundleEdgeCases(t *testing.T) {
	in := `{"resourceType":"Bundle","type":"searchset","total":3,"link":[{"relation":"self","url":"https://ehr.example.org/fhir/Patient?name=karina"}],
	"entry":[
	  {"fullUrl":"https://ehr.example.org/fhir/Patient/a","resource":{"resourceType":"Patient","id":"a","gender":"female",
	     "contained":[{"resourceType":"Practitioner","id":"c1","name":[{"family":"Contained"}]}],
	     "generalPractitioner":[{"reference":"#c1"}]},"search":{"mode":"match","score":1}},
	  {"fullUrl":"https://other.example.org/fhir/Patient/a","resource":{"resourceType":"Patient","id":"a","gender":"male"}},
	  {"request":{"method":"DELETE","url":"Patient/zz"}},
	  "not an object",
	  {"resource":{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Nested"}]}}]}},
	  {"resource":{"name":"no resourceType"}},
	  {"resource":{"resourceType":"Condition","modifierExtension":[{"url":"http://example.org/negated","valueBoolean":true}],
	     "code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]}}},
	  {"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},
	     "subject":{"reference":"Patient/a"},
	     "participant":[{"individual":{"reference":"Practitioner/x"},"modifierExtension":[{"url":"http://example.org/m"}]}],
	     "episodeOfCare":[{"reference":"EpisodeOfCare/e"}],
	     "reasonReference":[{"reference":"https://ehr.example.org/fhir/Patient/a/_history/3"}]}},
	  {"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
	     "subject":{"reference":"https://other.example.org/fhir/Patient/a"},
	     "valueString":"Karina says fine","effectiveInstant":"2019-03-04T09:30:00.000Z",
	     "category":{"coding":[{"code":"not-an-array"}]},
	     "status_":"x","valueBoolean":"true"}}
	]}`
	out, rep := mustDeidentify(t, []byte(in), Options{Now: testNow})
	doc := decode(t, out)
	if doc["type"] != "collection" || doc["total"] != nil || doc["link"] != nil {
		t.Errorf("bundle header: %v", doc)
	}
	rs := resourcesByType(t, doc)
	if len(rs["Patient"]) != 2 || len(rs["Encounter"]) != 1 || len(rs["Observation"]) != 1 || len(rs["Condition"]) != 0 || len(rs["Bundle"]) != 0 {
		t.Fatalf("resources: %v", rs)
	}
	for _, s := range []string{"Contained", "Nested", "karina", "Karina", "searchset", "ehr.example.org", "other.example.org", "episode", "not-an-array"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output contains %q", s)
		}
	}
	enc := rs["Encounter"][0]
	// "Patient/a" is ambiguous (two servers): removed. The absolute URLs
	// resolve through fullUrl.
	if enc["subject"] != nil || enc["participant"] != nil || enc["episodeOfCare"] != nil {
		t.Errorf("Encounter = %v", enc)
	}
	if got := get(enc, "reasonReference", 0, "reference"); got != "urn:uuid:"+token(1) {
		t.Errorf("versioned absolute reference → %v", got)
	}
	if got := get(rs["Observation"][0], "subject", "reference"); got != "urn:uuid:"+token(2) {
		t.Errorf("absolute reference → %v", got)
	}
	if rs["Patient"][0]["generalPractitioner"] != nil {
		t.Error("a reference to a contained resource was kept")
	}
	want := []string{
		"$.entry[2]: entry without a resource",
		"$.entry[4] (Bundle): nested Bundle not supported",
		"$.entry[5]: no resourceType",
		"$.entry[6] (Condition): modifierExtension present",
	}
	if !slices.Equal(rep.DroppedResources, want) {
		t.Errorf("DroppedResources = %q, want %q", rep.DroppedResources, want)
	}
	for _, p := range []string{"$.entry[3]", "$.entry[0].search", "$.link", "$.total",
		"$.entry[7].resource.participant[0]", "$.entry[8].resource.category", "$.entry[8].resource.valueBoolean",
		"$.entry[8].resource.valueString", "$.entry[8].resource.effectiveInstant", "$.entry[8].resource.status_"} {
		if !slices.Contains(rep.Removed, p) {
			t.Errorf("Removed lacks %s", p)
		}
	}
}

// TestTaintEveryField puts identifying text, then a full date, into every
// string of the synthetic bundle in turn (a patient's name typed into a
// coding's display, an MRN into a unit, a date into a code, ...) and checks
// that none of it reaches the output, whichever field carried it.
func TestTaintEveryField(t *testing.T) {
	dec := json.NewDecoder(bytes.NewReader(readBundle(t)))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	// Setters for every string of the document.
	var setters []func(string) (restore func())
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok {
					setters = append(setters, func(n string) func() { x[k] = n; return func() { x[k] = s } })
				} else {
					walk(e)
				}
			}
		case []any:
			for i, e := range x {
				if s, ok := e.(string); ok {
					setters = append(setters, func(n string) func() { x[i] = n; return func() { x[i] = s } })
				} else {
					walk(e)
				}
			}
		}
	}
	walk(doc)
	if len(setters) < 500 {
		t.Fatalf("only %d strings", len(setters))
	}
	dateRE := regexp.MustCompile(`[0-9]{4}-[0-9]{2}`)
	for _, taint := range []string{"Dr Oberbrunner298 (MRN-7734120) rang 555-283-4417", "2019-03-04"} {
		for i, set := range setters {
			restore := set(taint)
			in := mustMarshal(doc)
			restore()
			out, _, err := Deidentify(in, Options{Now: testNow})
			if err != nil {
				if errors.Is(err, ErrNotFHIR) { // the root resourceType
					continue
				}
				t.Fatalf("string %d: %v", i, err)
			}
			for _, bad := range []string{"oberbrunner", "7734120", "4417"} {
				if bytes.Contains(bytes.ToLower(out), []byte(bad)) {
					t.Fatalf("string %d = %q: output contains %q", i, taint, bad)
				}
			}
			if m := dateRE.Find(out); m != nil {
				t.Fatalf("string %d = %q: output contains %q", i, taint, m)
			}
		}
	}
}

// TestRaceTextIsFreeText: the race and ethnicity extensions keep their
// codes; their "text" sub-extension is free text and goes, whatever it
// says (a review found it carrying anything a clerk typed).
func TestRaceTextIsFreeText(t *testing.T) {
	in := patientBundle(`"name":[{"family":"Doe"}],"extension":[{"url":"` + URLRace + `","extension":[
	  {"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},
	  {"url":"text","valueString":"White; SSN 123-45-6789, lives 14 Elm St Springfield, dx 4 March 2019"}]}]`)
	out, _ := mustDeidentify(t, in, Options{Now: testNow})
	for _, s := range []string{"123-45-6789", "Elm St", "March 2019", `"text"`} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output contains %q:\n%s", s, out)
		}
	}
	if !bytes.Contains(out, []byte(`"2106-3"`)) {
		t.Errorf("the race code went too:\n%s", out)
	}
}

// aggregated90 matches an age aggregated to "90 or older" in the output.
var aggregated90 = regexp.MustCompile(`"value": 90,\s*"comparator": ">="`)

// TestAgeOver89Anywhere: an age of 90 or more is aggregated also in an
// Observation component coded as an age, and when LOINC is named by its
// OID.
func TestAgeOver89Anywhere(t *testing.T) {
	for name, obs := range map[string]string{
		"component": `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85353-1"}]},
		  "subject":{"reference":"urn:uuid:p"},
		  "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"30525-0","display":"Age"}]},"valueInteger":97}]}`,
		"LOINC OID": `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.1","code":"30525-0"}]},
		  "subject":{"reference":"urn:uuid:p"},"valueInteger":97}`,
		"SNOMED CT Age": `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"397659008"}]},
		  "subject":{"reference":"urn:uuid:p"},"valueInteger":97}`,
		"SNOMED CT Current chronological age": `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"424144002"}]},
		  "subject":{"reference":"urn:uuid:p"},"valueQuantity":{"value":97}}`,
	} {
		out, _ := mustDeidentify(t, patientBundle(`"gender":"female"`, obs), Options{Now: testNow})
		if bytes.Contains(out, []byte(": 97")) || !aggregated90.Match(out) {
			t.Errorf("%s: age 97 not aggregated to >= 90:\n%s", name, out)
		}
	}
}

// TestAgeInUnitsAsWritten: a Quantity of 90 years or more is aggregated
// whatever the spelling of its unit of years, under any code.
func TestAgeInUnitsAsWritten(t *testing.T) {
	for _, unit := range []string{"yo", "y/o", "Y.O.", "years old", "Years Old", "year-old", "yrs of age", "{years}", " yr "} {
		obs := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://example.org/local","code":"x1"}]},
		  "subject":{"reference":"urn:uuid:p"},"valueQuantity":{"value":97,"unit":"` + unit + `"}}`
		out, _ := mustDeidentify(t, patientBundle(`"gender":"female"`, obs), Options{Now: testNow})
		if bytes.Contains(out, []byte(": 97")) || !aggregated90.Match(out) {
			t.Errorf("unit %q: age 97 not aggregated to >= 90:\n%s", unit, out)
		}
	}
	for _, unit := range []string{"mg", "mmol/L", "old"} {
		obs := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://example.org/local","code":"x1"}]},
		  "subject":{"reference":"urn:uuid:p"},"valueQuantity":{"value":97,"unit":"` + unit + `"}}`
		if out, _ := mustDeidentify(t, patientBundle(`"gender":"female"`, obs), Options{Now: testNow}); !bytes.Contains(out, []byte(": 97")) {
			t.Errorf("unit %q: 97 of it is no age, and went:\n%s", unit, out)
		}
	}
}

// TestDatesInOtherNotations: the sweep removes a string holding a date in
// compact, dotted or worded form, and keeps numeric codes that are not
// dates.
func TestDatesInOtherNotations(t *testing.T) {
	in := patientBundle(`"gender":"female"`,
		`{"resourceType":"Condition","code":{"coding":[{"system":"http://example.org/local","code":"20190304","display":"onset 04.03.2019 / March 4, 2019"}]},"subject":{"reference":"urn:uuid:p"}}`,
		`{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"19829001","display":"Disorder of lung"}]},"subject":{"reference":"urn:uuid:p"}}`,
		`{"resourceType":"Condition","code":{"coding":[{"system":"http://example.org/local","code":"20190304091500","display":"collected 04-Mar-2019"},
		  {"system":"http://example.org/local","code":"x2","display":"since March 2019"},{"system":"http://example.org/local","code":"x3","display":"seen 2019/3/4"}]},
		  "subject":{"reference":"urn:uuid:p"}}`)
	out, _ := mustDeidentify(t, in, Options{Now: testNow})
	for _, s := range []string{"20190304", "04.03.2019", "March 4, 2019", "04-Mar-2019", "March 2019", "2019/3/4"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output contains %q", s)
		}
	}
	if !bytes.Contains(out, []byte(`"19829001"`)) {
		t.Errorf("a SNOMED code that is no date went:\n%s", out)
	}
	for _, s := range []string{"3 Mar 2019", "Sept. 30, 2018", "25-03-2019", "03-25-2019", "1.2.2019",
		"04-Mar-2019", "4-mar-19", "04MAR2019", "2019-Mar-04", "March 2019", "Mar. 2019", "4th of March 2019",
		"03/2019", "2019/03", "2019/3/4", "2019-3-4", "2019.03.04",
		"20190304091500", "201903040915", "20190304T0915", "20190304T091500.123-0500"} {
		if !dateLike.MatchString(s) || !mayHoldDate(s) {
			t.Errorf("dateLike (%v) or its pre-check (%v) misses %q", dateLike.MatchString(s), mayHoldDate(s), s)
		}
	}
	for _, s := range []string{"urn:oid:2.16.840.1.113883.6.1", "8302-2", "7.20", "19829001", "v1.2.3",
		"120/80 mm[Hg]", "1:1000", "10*3/uL", "1991011000000102", "Decreased 2 units", "marked 12", "may 20 mg"} {
		if dateLike.MatchString(s) {
			t.Errorf("dateLike takes %q for a date", s)
		}
	}
}

// TestMaskedBirthYearStaysMasked: for a patient whose year of birth is
// masked (105 years old), an age under 90 kept with the year it was
// recorded would give it back (2005 − 85 = 1920): every such age goes.
// A patient under 90 keeps hers.
func TestMaskedBirthYearStaysMasked(t *testing.T) {
	ages := []string{
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},
		  "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2005-06-01","valueQuantity":{"value":85,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}}`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"21612-7"}]},
		  "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2001-06-01","valueInteger":81}`,
		`{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"subject":{"reference":"urn:uuid:p"},
		  "onsetAge":{"value":60,"unit":"a","system":"http://unitsofmeasure.org","code":"a"},"recordedDate":"1980-02-02"}`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"21611-9"}]},
		  "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2003-06-01","valueRange":{"low":{"value":83,"unit":"a"},"high":{"value":84}}}`,
	}
	out, rep := mustDeidentify(t, patientBundle(`"gender":"female","birthDate":"1920-05-01"`, ages...), Options{Now: testNow})
	for _, s := range []string{`"1920"`, `"value": 85`, `"valueInteger": 81`, `"value": 60`, `"value": 83`, `"value": 84`} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output contains %s:\n%s", s, out)
		}
	}
	if !bytes.Contains(out, []byte(URLAge90OrOlder)) || !slices.Contains(rep.Removed, "$.entry[3].resource.onsetAge") {
		t.Errorf("the patient is not marked 90+, or the onset age not reported removed (%v):\n%s", rep.Removed, out)
	}
	// The same ages for a patient born in 1960 would contradict the
	// birthDate, and show, with their years, a person of 105: they go too
	// (TestAgeWithYear). Ages that fit the birthDate stay.
	r := strings.NewReplacer(`"value":85`, `"value":45`, `"valueInteger":81`, `"valueInteger":41`,
		`"value":60`, `"value":20`, `"value":83`, `"value":43`, `"value":84`, `"value":44`)
	var youngAges []string
	for _, a := range ages {
		youngAges = append(youngAges, r.Replace(a))
	}
	young, _ := mustDeidentify(t, patientBundle(`"gender":"female","birthDate":"1960-05-01"`, youngAges...), Options{Now: testNow})
	for _, s := range []string{`"value": 45`, `"valueInteger": 41`, `"value": 20`, `"value": 43`, `"value": 44`} {
		if !bytes.Contains(young, []byte(s)) {
			t.Errorf("a patient under 90 lost %s:\n%s", s, young)
		}
	}
}

// TestBirthDateObservationOfTheLiving: a date of birth Observation is
// judged as of a person who may be alive today (its subject may not be the
// bundle's patient), even in a bundle whose only patient died long ago and
// whose own birth year therefore stays: 1925 is removed from the
// Observation as of the year of Options.Now.
func TestBirthDateObservationOfTheLiving(t *testing.T) {
	in := patientBundle(`"birthDate":"1925-05-01","deceasedDateTime":"2010-01-01"`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"21112-8"}]},
		  "effectiveDateTime":"2009-02-02","valueDateTime":"1925-05-01"}`)
	out, rep := mustDeidentify(t, in, Options{Now: testNow})
	if !slices.Contains(rep.Removed, "$.entry[1].resource.valueDateTime") {
		t.Errorf("the Observation's date of birth was kept (Removed %q):\n%s", rep.Removed, out)
	}
	if !bytes.Contains(out, []byte(`"birthDate": "1925"`)) {
		t.Errorf("the deceased patient's birth year (85 at death) went:\n%s", out)
	}
}

// TestBirthDateObservationRemovedOnce: the year of a date of birth
// Observation of 1920 is removed as a year of birth of 90 or more and is
// also a year 90 or more years old; Report.Removed lists it once.
func TestBirthDateObservationRemovedOnce(t *testing.T) {
	in := patientBundle(`"gender":"male"`, `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"21112-8"}]},
	  "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2024-02-02","valueDateTime":"1920-05-01"}`)
	out, rep := mustDeidentify(t, in, Options{Now: testNow})
	const p = "$.entry[1].resource.valueDateTime"
	if n := len(slices.DeleteFunc(slices.Clone(rep.Removed), func(r string) bool { return r != p })); n != 1 {
		t.Errorf("Removed lists %s %d times, want once: %q\n%s", p, n, rep.Removed, out)
	}
}

// TestBirthDateObservationMasked: an Observation of the date of birth
// (LOINC 21112-8, SNOMED CT 184099003) is the birthDate in another place:
// for a patient 90 or older its year goes as the Patient's does (and the
// ages under 90 with it), also in a record that is that Observation alone,
// and in a component.
func TestBirthDateObservationMasked(t *testing.T) {
	dob := func(system, code, year string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"` + system + `","code":"` + code + `"}]},
		  "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2024-02-02","valueDateTime":"` + year + `-05-01"}`
	}
	component := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"76689-9"}]},
	  "effectiveDateTime":"2024-02-02","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"21112-8"}]},"valueDateTime":"1920-05-01"}]}`
	age85 := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},
	  "effectiveDateTime":"2005-06-01","valueInteger":85}`
	for _, c := range []struct {
		name   string
		in     []byte
		year   string
		masked bool
	}{
		{"LOINC, with the patient", patientBundle(`"birthDate":"1920-05-01"`, dob("http://loinc.org", "21112-8", "1920")), "1920", true},
		{"LOINC, no birthDate", patientBundle(`"gender":"male"`, dob("http://loinc.org", "21112-8", "1920"), age85), "1920", true},
		{"SNOMED CT", patientBundle(`"gender":"male"`, dob("http://snomed.info/sct", "184099003", "1931")), "1931", true},
		{"the Observation alone", []byte(dob("urn:oid:2.16.840.1.113883.6.1", "21112-8", "1930")), "1930", true},
		{"component", patientBundle(`"gender":"male"`, component), "1920", true},
		// An age that fits the birthDate (85 in 2005 would show a person of
		// 105: TestAgeWithYear).
		{"under 90 kept", patientBundle(`"birthDate":"1960-05-01"`, dob("http://loinc.org", "21112-8", "1960"),
			strings.Replace(age85, "85", "45", 1)), "1960", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _ := mustDeidentify(t, c.in, Options{Now: testNow})
			if c.masked {
				for _, s := range []string{`"` + c.year + `"`, `"valueInteger": 85`} {
					if bytes.Contains(out, []byte(s)) {
						t.Errorf("output contains %s:\n%s", s, out)
					}
				}
				if !bytes.Contains(out, []byte(`"2024"`)) {
					t.Errorf("the year of the Observation went:\n%s", out)
				}
				return
			}
			for _, s := range []string{`"valueDateTime": "` + c.year + `"`, `"valueInteger": 45`} {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("output lacks %s:\n%s", s, out)
				}
			}
		})
	}
}

// TestSweepIdentifiersAtAnyDepth: the sweep takes the value of every
// Identifier element of the input as identifying, not only the resources'
// own identifier: an MRN given as Reference.identifier, a prescription
// group number or a licence number typed into a kept coding goes too.
func TestSweepIdentifiersAtAnyDepth(t *testing.T) {
	coded := func(display string) string {
		return `{"resourceType":"Condition","code":{"coding":[{"system":"http://example.org/local","code":"x1","display":"` + display + `"}]}}`
	}
	for _, c := range []struct {
		name, res, id string
	}{
		{"Reference.identifier", `{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"8867-4"}]},
		  "subject":{"identifier":{"system":"http://hospital.example.org/mrn","value":"MRN-7734120"}}}`, "MRN-7734120"},
		{"groupIdentifier", `{"resourceType":"MedicationRequest","status":"active","intent":"order","groupIdentifier":{"value":"GRP-7781"}}`, "GRP-7781"},
		{"preAdmissionIdentifier", `{"resourceType":"Encounter","status":"finished","hospitalization":{"preAdmissionIdentifier":{"value":"PRE-ADM-99812"}}}`, "PRE-ADM-99812"},
		{"qualification.identifier", `{"resourceType":"Practitioner","qualification":[{"identifier":[{"value":"MD-MA-228811"}],"code":{"coding":[{"code":"MD"}]}}]}`, "MD-MA-228811"},
		{"Patient.link.other.identifier", `{"resourceType":"Patient","link":[{"other":{"identifier":{"value":"999-41-7352"}},"type":"seealso"}]}`, "999-41-7352"},
		{"dropped resource", `{"resourceType":"Claim","insurance":[{"coverage":{"identifier":{"value":"HPB-55X2001"}}}]}`, "HPB-55X2001"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, rep := mustDeidentify(t, patientBundle(`"gender":"female"`, c.res, coded("seen for "+c.id)), Options{Now: testNow})
			if bytes.Contains(out, []byte(c.id)) {
				t.Errorf("output contains %q:\n%s", c.id, out)
			}
			if !slices.Contains(rep.Removed, "$.entry[2].resource.code.coding[0].display") {
				t.Errorf("Removed lacks the display: %q", rep.Removed)
			}
		})
	}
}

// TestSweepNestedResources: the people of resources inside resources (a
// contained RelatedPerson or Practitioner, the Patient of a nested Bundle
// or of a dropped resource) are identifying too: their names, telecom and
// address parts typed into a kept coding go.
func TestSweepNestedResources(t *testing.T) {
	coded := func(display string) string {
		return `{"resourceType":"Condition","code":{"coding":[{"system":"http://example.org/local","code":"x1","display":"` + display + `"}]}}`
	}
	for _, c := range []struct {
		name, patient, res, leak string
	}{
		{"contained RelatedPerson", `"contained":[{"resourceType":"RelatedPerson","id":"nok","name":[{"family":"Quigley","given":["Lavinia"]}],
		  "telecom":[{"value":"555-610-9921"}]}],"contact":[{"relationship":[{"coding":[{"code":"N"}]}]}]`, "", "Quigley"},
		{"contained telecom", `"contained":[{"resourceType":"RelatedPerson","id":"nok","telecom":[{"value":"555-610-9921"}]}]`, "", "555-610-9921"},
		{"contained Practitioner", `"gender":"female"`, `{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"8867-4"}]},
		  "contained":[{"resourceType":"Practitioner","id":"pr","name":[{"family":"Ratched"}]}],"performer":[{"reference":"#pr"}]}`, "Ratched"},
		{"nested Bundle", `"gender":"female"`, `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient",
		  "name":[{"family":"Oberbrunner"}]}}]}`, "Oberbrunner"},
		{"dropped resource", `"gender":"female"`, `{"resourceType":"DocumentReference","contained":[{"resourceType":"Patient",
		  "address":[{"line":["742 Evergreen Terrace"]}]}]}`, "742 Evergreen Terrace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			extra := []string{coded("history: " + c.leak)}
			if c.res != "" {
				extra = append([]string{c.res}, extra...)
			}
			out, _ := mustDeidentify(t, patientBundle(c.patient, extra...), Options{Now: testNow})
			if bytes.Contains(out, []byte(c.leak)) {
				t.Errorf("output contains %q:\n%s", c.leak, out)
			}
			if !bytes.Contains(out, []byte(`"x1"`)) {
				t.Errorf("the coding went whole:\n%s", out)
			}
		})
	}
}

// TestSweepCaseFolding: the sweep compares case-insensitively by Unicode
// case folding, not by lower-casing alone: a Greek name written in
// capitals (final Σ) is found in a display in mixed case (final ς), and
// the other way round.
func TestSweepCaseFolding(t *testing.T) {
	for _, c := range []struct{ name, display string }{
		{"ΟΔΥΣΣΕΑΣ", "Οδυσσεας"},
		{"Παπαδοπουλος", "ΠΑΠΑΔΟΠΟΥΛΟΣ"},
		{"Kowalczyk", "\u212Aowalczyk"}, // the Kelvin sign
		{"Samuelson", "\u017Famuelson"}, // the long s
	} {
		in := patientBundle(`"name":[{"family":"`+c.name+`"}]`,
			`{"resourceType":"Condition","code":{"coding":[{"system":"http://example.org/local","code":"x1","display":"`+c.display+`"}]}}`)
		out, _ := mustDeidentify(t, in, Options{Now: testNow})
		if bytes.Contains(out, []byte(c.display)) {
			t.Errorf("name %q: output contains %q", c.name, c.display)
		}
	}
}

// TestURIsOnlyAsCodeSystems: a URL, URN or IP address outside a code
// system (in a code, a display, a unit, a version) goes, as the doc
// promises that code systems are the only URIs left; the code systems
// stay.
func TestURIsOnlyAsCodeSystems(t *testing.T) {
	for _, s := range []string{
		"results at https://portal.hospital.example.org/p/77341",
		"HTTP://PORTAL.HOSPITAL.EXAMPLE.ORG",
		"urn:hospital:patient:77341",
		"www.karina-oberbrunner.example.net",
		"uploaded from 192.0.2.44",
		"mailto:registrar",
		"data:image/jpeg;base64,/9j/4AAQ",
	} {
		for _, res := range []string{
			`{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"` + s + `"}]}}`,
			`{"resourceType":"Condition","code":{"coding":[{"system":"http://example.org/local","code":"` + s + `"}]}}`,
			`{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","version":"` + s + `","code":"44054006"}]}}`,
			`{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"29463-7"}]},"valueQuantity":{"value":70,"unit":"` + s + `"}}`,
		} {
			out, _ := mustDeidentify(t, patientBundle(`"gender":"female"`, res), Options{Now: testNow})
			if bytes.Contains(bytes.ToLower(out), bytes.ToLower([]byte(s))) {
				t.Errorf("output contains %q:\n%s", s, out)
			}
		}
	}
	out, _ := mustDeidentify(t, patientBundle(`"gender":"female","extension":[{"url":"`+URLRace+`","extension":[
	  {"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3"}}]}]`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},
		  "valueQuantity":{"value":70,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`), Options{Now: testNow})
	for _, s := range []string{`"urn:oid:2.16.840.1.113883.6.238"`, `"http://loinc.org"`, `"system": "http://unitsofmeasure.org"`} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("output lacks the code system %s:\n%s", s, out)
		}
	}
}

// TestOldYearsRemoved: a record that holds an event in year Y shows that
// its patient was alive in Y; a patient who may still be alive is then at
// least now − Y years old. Every year 90 or more years before Options.Now
// goes (2025 − 1935 = 90), whoever the patient is, with or without a
// birthDate; a period left empty goes with it. Dates that are no part of a
// life (a Coding.version "1920") are no date elements and stay. For a record
// whose patients are all deceased the reference is the latest year of the
// record instead (a patient who died in 1960 keeps an event of 1930); beside
// a patient who may be alive, a deceased one's old events go, but not the
// birth year, judged with the patient (born 1930, died at 70). A year removed
// takes every age under 90 of the output with it (an onset age of 40 without
// a year), as a masked year of birth does.
func TestOldYearsRemoved(t *testing.T) {
	enc := func(start string) string {
		return `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:p"},"period":{"start":"` + start + `"}}`
	}
	onset := `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","version":"1920","code":"44054006"}]},
	  "subject":{"reference":"urn:uuid:p"},"onsetDateTime":"1921-03-03","recordedDate":"2001-02-02"}`
	onsetAge := `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003"}]},
	  "onsetAge":{"value":40,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}}`
	living := `{"resourceType":"Patient","gender":"female"}`
	for _, c := range []struct {
		name      string
		in        []byte
		gone      []string
		kept      []string
		removed   string // a path of Report.Removed
		noPeriods bool   // the Encounter's period went whole
	}{
		{"masked patient, onset a year after birth", patientBundle(`"birthDate":"1920-05-01"`, onset),
			[]string{`"1920-05-01"`, `"1921"`}, []string{`"recordedDate": "2001"`, `"version": "1920"`}, "$.entry[1].resource.onsetDateTime", false},
		{"no birthDate, encounter in 1930", patientBundle(`"gender":"male"`, enc("1930-01-02")),
			[]string{`"1930"`}, nil, "$.entry[1].resource.period.start", true},
		{"no patient at all", []byte(enc("1935-12-31")), []string{`"1935"`}, nil, "$.period.start", true},
		{"89 years ago kept", patientBundle(`"gender":"male"`, enc("1936-01-01")), nil, []string{`"start": "1936"`}, "", false},
		{"a year removed, an age without a year goes", patientBundle(`"gender":"male"`, enc("1930-01-02"), onsetAge),
			[]string{`"1930"`, `"value": 40`}, []string{`"38341003"`}, "$.entry[2].resource.onsetAge", true},
		{"89 years ago, an age without a year kept", patientBundle(`"gender":"male"`, enc("1936-01-01"), onsetAge),
			nil, []string{`"start": "1936"`, `"value": 40`}, "", false},
		{"deceased beside a living patient, birth year kept", patientBundle(`"birthDate":"1930-05-01","deceasedDateTime":"2000-03-03"`, living, enc("1934-01-02")),
			[]string{`"1934"`}, []string{`"birthDate": "1930"`, `"deceasedDateTime": "2000"`}, "$.entry[2].resource.period.start", true},
		{"deceased in 1960, event in 1930", patientBundle(`"deceasedDateTime":"1960-03-03"`, enc("1930-01-02")),
			nil, []string{`"start": "1930"`, `"deceasedDateTime": "1960"`}, "", false},
		{"deceased, last seen 2020, event in 1930", patientBundle(`"deceasedBoolean":true`, enc("1930-01-02"), enc("2020-01-02")),
			[]string{`"1930"`}, []string{`"start": "2020"`}, "$.entry[1].resource.period.start", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, rep := mustDeidentify(t, c.in, Options{Now: testNow})
			for _, s := range c.gone {
				if bytes.Contains(out, []byte(s)) {
					t.Errorf("output contains %s:\n%s", s, out)
				}
			}
			for _, s := range c.kept {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("output lacks %s:\n%s", s, out)
				}
			}
			if c.removed != "" && (!slices.Contains(rep.Removed, c.removed) || slices.Contains(rep.Generalized, c.removed)) {
				t.Errorf("report: Removed %q, Generalized %q", rep.Removed, rep.Generalized)
			}
			if c.noPeriods && bytes.Contains(out, []byte(`"period"`)) {
				t.Errorf("an emptied period was kept:\n%s", out)
			}
		})
	}
}

// TestAgeWithYear: an age A kept with a year Y of the same resource gives
// the year of birth (about Y − A) back; when A + (2025 − Y) ≥ 90 it shows a
// person 90 or older, whether or not the record holds a birthDate. Such an
// age is removed, and, as for a masked birth year, every other age under
// 90 of the output with it (an onset age without a year, linked through
// its encounter, would give it back too); the years stay. An age that
// shows no one 90 or older (60 in 2005, an upper bound, a patient who
// died in 2006) stays.
func TestAgeWithYear(t *testing.T) {
	age := func(loinc, effective, value string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` + loinc + `"}]},
		  "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"` + effective + `",` + value + `}`
	}
	onset := func(member, recorded string) string {
		return `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},
		  "subject":{"reference":"urn:uuid:p"},` + member + `,"recordedDate":"` + recorded + `"}`
	}
	a := func(v string) string {
		return `{"value":` + v + `,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}`
	}
	// An onset age of 40 with no year: it goes with the others.
	other := `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003"}]},"onsetAge":` + a("40") + `}`
	for _, c := range []struct {
		name    string
		patient string
		res     string
		gone    []string // with `"value": 40`: the other age
		kept    []string
	}{
		{"age observation 85 in 2005", `"gender":"male"`, age("30525-0", "2005-06-01", `"valueInteger":85`),
			[]string{`"valueInteger": 85`}, []string{`"2005"`}},
		{"age observation 85 a in 2005", `"gender":"male"`, age("21612-7", "2005", `"valueQuantity":`+a("85")),
			[]string{`"value": 85`}, []string{`"2005"`}},
		{"age observation 70 in 2005 (90 now)", `"gender":"male"`, age("30525-0", "2005", `"valueInteger":70`),
			[]string{`"valueInteger": 70`}, nil},
		{"age component 85 in 2005", `"gender":"male"`, `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"76689-9"}]},
		  "effectiveDateTime":"2005","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"valueInteger":85}]}`,
			[]string{`"valueInteger": 85`}, nil},
		{"onsetAge 85 recorded 2005", `"gender":"male"`, onset(`"onsetAge":`+a("85"), "2005-02-02"),
			[]string{`"value": 85`}, []string{`"recordedDate": "2005"`}},
		{"onsetRange 80-86 recorded 2005", `"gender":"male"`, onset(`"onsetRange":{"low":`+a("80")+`,"high":`+a("86")+`}`, "2005"),
			[]string{`"value": 80`, `"value": 86`}, nil},
		{"onsetAge 1020 months recorded 2005", `"gender":"male"`, onset(`"onsetAge":{"value":1020,"unit":"mo","system":"http://unitsofmeasure.org","code":"mo"}`, "2005"),
			[]string{`"value": 1020`}, nil},
		{"allergy onsetAge 85 recorded 2005", `"gender":"male"`, `{"resourceType":"AllergyIntolerance","code":{"coding":[{"system":"http://snomed.info/sct","code":"91935009"}]},
		  "patient":{"reference":"urn:uuid:p"},"onsetAge":` + a("85") + `,"recordedDate":"2005"}`,
			[]string{`"value": 85`}, nil},
		{"age observation 60 in 2005 kept", `"gender":"male"`, age("30525-0", "2005", `"valueInteger":60`),
			nil, []string{`"valueInteger": 60`, `"value": 40`}},
		{"age observation 69 in 2005 kept", `"gender":"male"`, age("30525-0", "2005", `"valueInteger":69`),
			nil, []string{`"valueInteger": 69`, `"value": 40`}},
		{"onsetRange up to 86 recorded 2005 kept", `"gender":"male"`, onset(`"onsetRange":{"high":`+a("86")+`}`, "2005"),
			nil, []string{`"value": 86`, `"value": 40`}},
		{"age observation range 85-88 a in 2005", `"gender":"male"`, age("21611-9", "2005", `"valueRange":{"low":`+a("85")+`,"high":`+a("88")+`}`),
			[]string{`"value": 85`, `"value": 88`}, []string{`"2005"`}},
		{"age observation range 85-88 without a unit in 2005", `"gender":"male"`, age("21611-9", "2005", `"valueRange":{"low":{"value":85},"high":{"value":88}}`),
			[]string{`"value": 85`, `"value": 88`}, nil},
		{"age observation range up to 86 in 2005 kept", `"gender":"male"`, age("21611-9", "2005", `"valueRange":{"high":{"value":86}}`),
			nil, []string{`"value": 86`, `"value": 40`}},
		{"died 2006 at 86 kept", `"deceasedDateTime":"2006"`, age("30525-0", "2005", `"valueInteger":85`),
			nil, []string{`"valueInteger": 85`, `"value": 40`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _ := mustDeidentify(t, patientBundle(c.patient, c.res, other), Options{Now: testNow})
			gone := c.gone
			if len(gone) > 0 {
				gone = append(gone, `"value": 40`)
			}
			for _, s := range gone {
				if bytes.Contains(out, []byte(s)) {
					t.Errorf("output contains %s:\n%s", s, out)
				}
			}
			for _, s := range c.kept {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("output lacks %s:\n%s", s, out)
				}
			}
		})
	}
}

// TestAgeWithEarliestYearOfItsResource: an age A is judged with the
// earliest year Y of its own resource (an onset age is of a time at or
// before the recordedDate): an onset age of 70 in a Condition whose years
// are 2000 and 2020 shows a person of 95 in 2025, though 75 with 2020
// alone, whichever member holds the earlier year and in whichever order it
// comes; the ages go and the years stay. The years of other resources do
// not count: an onset age of 70 recorded in 2020 stays beside an encounter
// of 1990.
func TestAgeWithEarliestYearOfItsResource(t *testing.T) {
	cond := func(years string) string {
		return `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},
		  "subject":{"reference":"urn:uuid:p"},"onsetAge":{"value":70,"unit":"a","system":"http://unitsofmeasure.org","code":"a"},` + years + `}`
	}
	enc := `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:p"},"period":{"start":"1990-01-02"}}`
	for _, c := range []struct {
		name  string
		res   []string
		years []string // kept either way
		gone  bool     // the onset age shows a person 90 or older
	}{
		{"recorded 2000, abated 2020", []string{cond(`"recordedDate":"2000-02-02","abatementDateTime":"2020-03-03"`)},
			[]string{`"recordedDate": "2000"`, `"abatementDateTime": "2020"`}, true},
		{"abated 2000, recorded 2020", []string{cond(`"abatementDateTime":"2000-03-03","recordedDate":"2020-02-02"`)},
			[]string{`"abatementDateTime": "2000"`, `"recordedDate": "2020"`}, true},
		{"abatement period 2000 to 2010, recorded 2020", []string{cond(`"abatementPeriod":{"start":"2000","end":"2010"},"recordedDate":"2020"`)},
			[]string{`"start": "2000"`, `"end": "2010"`, `"recordedDate": "2020"`}, true},
		{"recorded 2020 kept", []string{cond(`"recordedDate":"2020-02-02"`)}, []string{`"recordedDate": "2020"`}, false},
		{"recorded 2020 beside an encounter of 1990 kept", []string{cond(`"recordedDate":"2020-02-02"`), enc},
			[]string{`"recordedDate": "2020"`, `"start": "1990"`}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, rep := mustDeidentify(t, patientBundle(`"gender":"male"`, c.res...), Options{Now: testNow})
			if got := bytes.Contains(out, []byte(`"value": 70`)); got == c.gone {
				t.Errorf("onset age of 70 kept = %v, want %v:\n%s", got, !c.gone, out)
			}
			if c.gone && !slices.Contains(rep.Removed, "$.entry[1].resource.onsetAge") {
				t.Errorf("Removed lacks the onset age: %q", rep.Removed)
			}
			for _, s := range c.years {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("output lacks %s:\n%s", s, out)
				}
			}
		})
	}
}

// TestReferenceYearBoundedByNow: the year of Options.Now bounds the
// reference year. For the years of the record (TestOldYearsRemoved) it is
// the upper bound: a date after it (an encounter planned for 2030) proves
// nothing about being alive then, so an event of 1938 (87 years before
// 2025, 92 before 2030) stays, for a living patient, for patients all
// deceased, and in a record without a patient. For a year of birth it is
// the lower bound: the birth year 1938 of a living patient, or of a date
// of birth Observation, goes when the latest year of the output is 2030
// (90 or older then), though 87 in 2025.
func TestReferenceYearBoundedByNow(t *testing.T) {
	enc := func(status, start string) string {
		return `{"resourceType":"Encounter","status":"` + status + `","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:p"},"period":{"start":"` + start + `"}}`
	}
	past, planned := enc("finished", "1938-04-04"), enc("planned", "2030-01-15")
	dob := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"21112-8"}]},
	  "subject":{"reference":"urn:uuid:p"},"valueDateTime":"1938-04-04"}`
	for _, c := range []struct {
		name string
		in   []byte
		kept []string
		gone []string // paths of Report.Removed, and absent from the output
	}{
		{"living patient, event of 1938 kept", patientBundle(`"gender":"male"`, past, planned),
			[]string{`"start": "1938"`, `"start": "2030"`}, nil},
		{"deceased patient, event of 1938 kept", patientBundle(`"deceasedBoolean":true`, past, planned),
			[]string{`"start": "1938"`, `"start": "2030"`}, nil},
		{"no patient, event of 1938 kept",
			[]byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":` + past + `},{"resource":` + planned + `}]}`),
			[]string{`"start": "1938"`, `"start": "2030"`}, nil},
		{"living patient born 1938, 92 in 2030", patientBundle(`"birthDate":"1938-04-04"`, planned),
			[]string{`"start": "2030"`, URLAge90OrOlder}, []string{"$.entry[0].resource.birthDate"}},
		{"date of birth Observation 1938, 92 in 2030", patientBundle(`"gender":"male"`, dob, planned),
			[]string{`"start": "2030"`}, []string{"$.entry[1].resource.valueDateTime"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, rep := mustDeidentify(t, c.in, Options{Now: testNow})
			for _, s := range c.kept {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("output lacks %s:\n%s", s, out)
				}
			}
			for _, p := range c.gone {
				if !slices.Contains(rep.Removed, p) {
					t.Errorf("Removed lacks %s: %q", p, rep.Removed)
				}
			}
			if len(c.gone) > 0 && bytes.Contains(out, []byte(`"1938"`)) {
				t.Errorf("the birth year 1938 remains:\n%s", out)
			}
		})
	}
}

// TestOldYearsPruneArrays: a year removed as 90 or more years old
// (TestOldYearsRemoved) can leave an element of an array empty (an
// Encounter.participant, an Immunization.reaction, a dosage whose only
// content was its bounds): the empty element goes from its array, the
// others stay in their order, and an array left empty goes whole.
func TestOldYearsPruneArrays(t *testing.T) {
	for _, c := range []struct {
		name, res, member string
		want              string // "": the member is removed
	}{
		{"participant emptied among others",
			`{"resourceType":"Encounter","status":"finished","participant":[{"period":{"start":"1930-01-02"}},
			  {"type":[{"coding":[{"code":"ATND"}]}],"period":{"start":"1930"}},{"period":{"start":"2001-01-01"}}]}`,
			"participant", `[{"type":[{"coding":[{"code":"ATND"}]}]},{"period":{"start":"2001"}}]`},
		{"every participant emptied",
			`{"resourceType":"Encounter","status":"finished","participant":[{"period":{"start":"1930-01-02"}},{"period":{"end":"1931"}}]}`,
			"participant", ""},
		{"reaction emptied",
			`{"resourceType":"Immunization","status":"completed","occurrenceDateTime":"2001","reaction":[{"date":"1930"},{"date":"2001","reported":true}]}`,
			"reaction", `[{"date":"2001","reported":true}]`},
		{"dosage emptied in depth",
			`{"resourceType":"MedicationRequest","status":"active","intent":"order","authoredOn":"2001",
			  "dosageInstruction":[{"timing":{"repeat":{"boundsPeriod":{"start":"1930"}}}},{"sequence":2}]}`,
			"dosageInstruction", `[{"sequence":2}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _ := mustDeidentify(t, patientBundle(`"gender":"male"`, c.res), Options{Now: testNow})
			res, _ := get(decode(t, out), "entry", 1, "resource").(map[string]any)
			checkMember(t, res, c.member, c.want)
		})
	}
}

// TestMaskedAgeWhoseReasonIsSwept: an Age element masked with the ages
// under 90 (maskAges) keeps only a data-absent-reason "masked" extension;
// when the sweep takes that code too (a patient named "Mask": "masked"
// contains it), the Age element goes whole, and so does a Range left
// without its bounds, rather than staying as an empty object, which FHIR
// JSON does not allow.
func TestMaskedAgeWhoseReasonIsSwept(t *testing.T) {
	a := func(v string) string {
		return `{"value":` + v + `,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}`
	}
	for _, c := range []struct{ name, member, value string }{
		{"onsetAge", "onsetAge", a("40")},
		{"onsetRange", "onsetRange", `{"low":` + a("40") + `,"high":` + a("45") + `}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := patientBundle(`"name":[{"family":"Mask"}],"birthDate":"1920-01-01"`,
				`{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"`+c.member+`":`+c.value+`}`)
			out, rep := mustDeidentify(t, in, Options{Now: testNow})
			if bytes.Contains(out, []byte(`"`+c.member+`"`)) || bytes.Contains(out, []byte("{}")) {
				t.Errorf("the masked %s was kept, or left empty:\n%s", c.member, out)
			}
			if !bytes.Contains(out, []byte(`"44054006"`)) || !bytes.Contains(out, []byte(URLAge90OrOlder)) {
				t.Errorf("the Condition's code went, or the patient is not marked 90+:\n%s", out)
			}
			if !slices.ContainsFunc(rep.Removed, func(p string) bool { return strings.HasPrefix(p, "$.entry[1].resource."+c.member) }) {
				t.Errorf("Removed lacks the %s: %q", c.member, rep.Removed)
			}
		})
	}
}

// TestSeparatorsSwept: an identifier or phone number typed with other
// separators than its source's, or none (an SSN "123-45-6789" as the
// number 123456789 or the text "123 45 6789", a phone "(555) 014-2368" as
// "555.014.2368"), is swept like the value itself, from 6 digits on (an MRN
// "MRN-123-456" as "123 456"); one of 5 digits is not, and unrelated
// numbers are kept.
func TestSeparatorsSwept(t *testing.T) {
	obs := func(code, value string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` + code + `"}]},
		  "subject":{"reference":"urn:uuid:p"},` + value + `}`
	}
	display := func(d string) string {
		return `"valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"38341003","display":"` + d + `"}]}`
	}
	in := patientBundle(`"identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"123-45-6789"},
	    {"system":"http://example.org/mrn","value":"MRN-123-456"},{"system":"http://example.org/ward","value":"WARD-24-680"}],
	    "telecom":[{"system":"phone","value":"(555) 014-2368"}]`,
		obs("29463-7", `"valueInteger":123456789`),
		obs("29463-8", display("SSN 123 45 6789 on file")),
		obs("29463-9", display("call 555.014.2368")),
		obs("8867-4", `"valueInteger":12345`),
		obs("8867-5", `"valueInteger":98765432`),
		obs("8867-6", display("Hypertension")),
		obs("8867-7", display("chart 123 456")),
		obs("8867-8", display("bed 24 680")),
	)
	out, rep := mustDeidentify(t, in, Options{Now: testNow})
	for _, s := range []string{"123456789", "123 45 6789", "555.014.2368", "6789", "2368"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output contains %s:\n%s", s, out)
		}
	}
	for _, s := range []string{`"valueInteger": 12345`, `"valueInteger": 98765432`, `"display": "Hypertension"`, `"code": "38341003"`, `"display": "bed 24 680"`} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("output lacks %s:\n%s", s, out)
		}
	}
	for _, p := range []string{"$.entry[1].resource.valueInteger", "$.entry[2].resource.valueCodeableConcept.coding[0].display",
		"$.entry[3].resource.valueCodeableConcept.coding[0].display", "$.entry[7].resource.valueCodeableConcept.coding[0].display"} {
		if !slices.Contains(rep.Removed, p) {
			t.Errorf("Removed lacks %s: %q", p, rep.Removed)
		}
	}
}

// TestNumbersSwept: a number is copied as its literal, and so goes
// through the sweep as a string does: a literal that holds a compact date
// (20190304) or an identifying string of the input (the SSN 999417352 of
// an Identifier) is removed, and multipleBirthInteger keeps only a birth
// order (1 to 20). Laboratory values, and numbers of 8 digits or more that
// are no date, stay as they are.
func TestNumbersSwept(t *testing.T) {
	obs := func(code, value string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` + code + `"}]},
		  "subject":{"reference":"urn:uuid:p"},` + value + `}`
	}
	q := func(v, unit string) string { return `"valueQuantity":{"value":` + v + `,"unit":"` + unit + `"}` }
	in := patientBundle(`"identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"999417352"}],"multipleBirthInteger":999417352`,
		obs("8302-2", `"valueInteger":20190304`),
		obs("8310-5", q("20190304091500", "s")),
		obs("29463-7", `"valueInteger":999417352`),
		obs("29463-8", `"valueInteger":1999417352`),
		obs("4548-4", q("7.2", "%")),
		obs("8867-4", q("120", "/min")),
		obs("8310-6", q("98.6", "[degF]")),
		obs("2339-0", q("7.20", "mg/dL")),
		obs("26515-7", q("19829001", "10*3/uL")),
		obs("26464-8", q("12345678", "/uL")),
		`{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"urn:uuid:p"},
		  "dosageInstruction":[{"sequence":1,"timing":{"repeat":{"count":20190304,"frequency":2,"period":1,"periodUnit":"d"}}}]}`,
	)
	out, rep := mustDeidentify(t, in, Options{Now: testNow})
	for _, s := range []string{"20190304", "999417352"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output contains %s:\n%s", s, out)
		}
	}
	for _, s := range []string{`"value": 7.2,`, `"value": 120,`, `"value": 98.6,`, `"value": 7.20,`, `"value": 19829001,`, `"value": 12345678,`,
		`"sequence": 1,`, `"frequency": 2,`, `"code": "8302-2"`, `"code": "8310-5"`} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("output lacks %s:\n%s", s, out)
		}
	}
	for _, p := range []string{"$.entry[0].resource.multipleBirthInteger", "$.entry[1].resource.valueInteger", "$.entry[2].resource.valueQuantity.value",
		"$.entry[11].resource.dosageInstruction[0].timing.repeat.count"} {
		if !slices.Contains(rep.Removed, p) {
			t.Errorf("Removed lacks %s: %q", p, rep.Removed)
		}
	}
	for _, c := range []struct {
		n    string
		kept bool
	}{{"1", true}, {"2", true}, {"20", true}, {"0", false}, {"21", false}, {"-1", false}, {"1.5", false}} {
		out, _ := mustDeidentify(t, patientBundle(`"multipleBirthInteger":`+c.n), Options{Now: testNow})
		if got := bytes.Contains(out, []byte(`"multipleBirthInteger": `+c.n+"\n")); got != c.kept {
			t.Errorf("multipleBirthInteger %s kept: %v, want %v", c.n, got, c.kept)
		}
	}
}

// TestAddressStateCountry: Address keeps state and country only when they
// can be nothing but a name or code (letters, spaces, dots, apostrophes,
// hyphens, at most 40 bytes): a free-form "Springfield, MA 01109" in state holds a city
// and a ZIP code that no other field of the input names, and goes, in a
// Patient's address as in an Organization's.
func TestAddressStateCountry(t *testing.T) {
	for _, c := range []struct {
		state, country string
		kept           bool
	}{
		{"MA", "US", true},
		{"Massachusetts", "United States", true},
		{"District of Columbia", "USA", true},
		{"Québec", "Canada", true},
		{"Rio Grande do Sul", "BR", true},
		{"Baden-Württemberg", "Deutschland", true},
		{"St. John's", "Côte d’Ivoire", true},
		{"Que\u0301bec", "Co\u0302te d'Ivoire", true}, // combining marks
		{"Springfield, MA 01109", "", false},
		{"MA 01109", "", false},
		{"01109", "", false},
		{"Springfield\nMA", "", false},
		{"", "US 01109", false},
		{"", "Springfield, Massachusetts, United States", false},
		{"", "United Kingdom of Great Britain and Northern Ireland", false},
	} {
		var members []string
		if c.state != "" {
			members = append(members, `"state":`+string(mustMarshal(c.state)))
		}
		if c.country != "" {
			members = append(members, `"country":`+string(mustMarshal(c.country)))
		}
		addr := `"address":[{` + strings.Join(members, ",") + `}]`
		in := patientBundle(addr, `{"resourceType":"Organization","active":true,`+addr+`}`)
		out, rep := mustDeidentify(t, in, Options{Now: testNow})
		for _, s := range []string{c.state, c.country} {
			if s == "" {
				continue
			}
			got := bytes.Count(out, mustMarshal(s))
			if c.kept && got != 2 || !c.kept && got != 0 {
				t.Errorf("%q in %d addresses, want it in %s:\n%s", s, got, map[bool]string{true: "both", false: "none"}[c.kept], out)
			}
		}
		if !c.kept {
			for _, p := range []string{"$.entry[0].resource.address[0]", "$.entry[1].resource.address[0]"} {
				k := p + ".state"
				if c.state == "" {
					k = p + ".country"
				}
				if !slices.Contains(rep.Removed, k) {
					t.Errorf("%q/%q: Removed lacks %s: %q", c.state, c.country, k, rep.Removed)
				}
			}
			if bytes.Contains(out, []byte(`"address"`)) {
				t.Errorf("an empty address was kept:\n%s", out)
			}
		}
	}
}

// TestSweepIds: the input's resource ids, and the ids in its fullUrls and
// references (dangling ones included, and the identifier of a conditional
// reference), are the source system's identifiers of the record: typed
// into a kept display or code, they go. Ids that cannot identify, or would
// take codes with them, are not needles: shorter than 4 bytes ("p1"),
// without a digit ("glucose", "example"), or of fewer than 6 digits only
// (a server's sequence number "2339", which the LOINC code 2339-0 holds).
func TestSweepIds(t *testing.T) {
	coded := func(code, display string) string {
		return `{"resourceType":"Condition","code":{"coding":[{"system":"http://example.org/local","code":"` + code + `","display":"` + display + `"}]}}`
	}
	for _, c := range []struct {
		name, patient, res, leak string
	}{
		{"resource id", `"gender":"female"`, `{"resourceType":"Observation","id":"obs-5520019","status":"final","code":{"coding":[{"code":"8867-4"}]}}`, "obs-5520019"},
		{"contained id", `"contained":[{"resourceType":"RelatedPerson","id":"rp-44120"}]`, "", "rp-44120"},
		{"dangling reference", `"gender":"female"`, `{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"8867-4"}]},
		  "subject":{"reference":"Patient/mrn-7734120"}}`, "mrn-7734120"},
		{"absolute reference with history", `"gender":"female"`, `{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"8867-4"}]},
		  "performer":[{"reference":"https://ehr.example.org/fhir/Practitioner/pr-88121/_history/3"}]}`, "pr-88121"},
		{"numeric reference id of 7 digits", `"gender":"female"`, `{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"8867-4"}]},
		  "subject":{"reference":"Patient/7734120"}}`, "7734120"},
		{"numeric id of exactly 6 digits", `"gender":"female"`, `{"resourceType":"Observation","id":"773412","status":"final","code":{"coding":[{"code":"8867-4"}]}}`, "773412"},
		{"dangling local reference", `"gender":"female"`, `{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"8867-4"}]},
		  "subject":{"reference":"#ct-55120"}}`, "ct-55120"},
		{"conditional reference", `"gender":"female"`, `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},
		  "participant":[{"individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi%7CNPI-55X20"}}]}`, "NPI-55X20"},
		{"fullUrl", `"gender":"female"`, `{"resourceType":"Bundle","entry":[{"fullUrl":"https://ehr.example.org/fhir/Patient/old-4471"}]}`, "old-4471"},
		{"uuid", `"gender":"female"`, `{"resourceType":"Observation","id":"3f1c9a52-7d4e-4b8a-9c21-5e6f7a8b9c0d","status":"final","code":{"coding":[{"code":"8867-4"}]}}`,
			"3f1c9a52-7d4e-4b8a-9c21-5e6f7a8b9c0d"},
	} {
		t.Run(c.name, func(t *testing.T) {
			extra := []string{coded("x1", "see "+c.leak)}
			if c.res != "" {
				extra = append([]string{c.res}, extra...)
			}
			out, _ := mustDeidentify(t, patientBundle(c.patient, extra...), Options{Now: testNow})
			if bytes.Contains(bytes.ToLower(out), bytes.ToLower([]byte(c.leak))) {
				t.Errorf("output contains %q:\n%s", c.leak, out)
			}
			if !bytes.Contains(out, []byte(`"x1"`)) {
				t.Errorf("the coding went whole:\n%s", out)
			}
		})
	}
	// The fullUrl of the bundle's own entry, as a code.
	in := []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:pt-5510x7","resource":{"resourceType":"Patient","gender":"female"}},
	  {"resource":` + coded("pt-5510x7", "Hypertension") + `}]}`)
	if out, _ := mustDeidentify(t, in, Options{Now: testNow}); bytes.Contains(out, []byte("pt-5510x7")) {
		t.Errorf("output contains the fullUrl's id:\n%s", out)
	}
	// Ids that are no needles: the codes and displays that hold them stay.
	keep := patientBundle(`"gender":"female"`,
		`{"resourceType":"Observation","id":"glucose","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2339-0","display":"Glucose [Mass/volume] in Blood"}]},
		  "subject":{"reference":"urn:uuid:p"},"valueQuantity":{"value":7.2,"unit":"mmol/L"}}`,
		`{"resourceType":"Observation","id":"2339","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},"hasMember":[{"reference":"Observation/8302"}]}`,
		`{"resourceType":"Observation","id":"29463","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]}}`,
		`{"resourceType":"Condition","id":"example","code":{"coding":[{"system":"http://example.org/local","code":"x1","display":"example"}]}}`,
		`{"resourceType":"Condition","id":"c1","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2 (c1)"}]}}`)
	out, _ := mustDeidentify(t, keep, Options{Now: testNow})
	for _, s := range []string{`"Glucose [Mass/volume] in Blood"`, `"code": "2339-0"`, `"code": "29463-7"`, `"system": "http://example.org/local"`, `"display": "example"`,
		`"Diabetes mellitus type 2 (c1)"`, `"value": 7.2`} {
		if bytes.Count(out, []byte(s)) == 0 {
			t.Errorf("output lacks %s:\n%s", s, out)
		}
	}
}

// checkMember: member of res (a resource of the output, which must be
// there) is the JSON want (compared as re-encoded), or absent when want
// is "".
func checkMember(t *testing.T, res map[string]any, member, want string) {
	t.Helper()
	if res == nil {
		t.Fatalf("no resource to look for %s in", member)
	}
	got, ok := res[member]
	if want == "" {
		if ok {
			t.Errorf("%s = %s, want it removed", member, mustMarshal(got))
		}
		return
	}
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if g, w := mustMarshal(got), mustMarshal(w); !bytes.Equal(g, w) {
		t.Errorf("%s = %s, want %s", member, g, w)
	}
}
