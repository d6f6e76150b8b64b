package deid

// Ages that the reviews of session 54 found kept where Safe Harbor removes
// them: a value in years under any code, an age dated by its Encounter or
// further, a death the output lost, standard codes of an age, units of
// years; and ages masked that a younger patient keeps.

import (
	"regexp"
	"testing"
)

// resourcesOf returns the resources of type typ in a de-identified Bundle.
func resourcesOf(t *testing.T, out []byte, typ string) []map[string]any {
	t.Helper()
	return resourcesByType(t, decode(t, out))[typ]
}

// TestTimeValueUnder90IsAnAge: an Observation value in years is an age
// whatever its code. An "age at onset" of 85 years recorded in 2015 would
// give back a masked year of birth, 1930 (a patient of 95); one of 80 years
// in 2000 shows a patient of 105. Both go (before session 54, a value under
// 90 counted as an age only when coded as one).
func TestTimeValueUnder90IsAnAge(t *testing.T) {
	ageAtOnset := func(value, year string) string {
		return `{"resourceType":"Observation","status":"final",` +
			`"code":{"coding":[{"system":"http://snomed.info/sct","code":"445518008","display":"Age at onset of clinical finding"}]},` +
			`"subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"` + year + `-03-04",` +
			`"valueQuantity":{"value":` + value + `,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`
	}
	t.Run("year of birth masked", func(t *testing.T) {
		out, _ := mustDeidentify(t, patientBundle(`"gender":"female","birthDate":"1930-04-02"`, ageAtOnset("85", "2015")), Options{Now: testNow})
		p := resourcesOf(t, out, "Patient")[0]
		if _, kept := p["birthDate"]; kept {
			t.Fatalf("precondition: birthDate kept for a patient of 95:\n%s", out)
		}
		o := resourcesOf(t, out, "Observation")[0]
		if o["effectiveDateTime"] == "2015" && get(o, "valueQuantity", "value") == 85.0 {
			t.Errorf("birthDate masked, but the Observation keeps an age of 85 years in 2015: 2015 - 85 = 1930, the masked year of birth:\n%s", out)
		}
	})
	t.Run("age with its year shows 90 or older", func(t *testing.T) {
		out, _ := mustDeidentify(t, patientBundle(`"gender":"female"`, ageAtOnset("80", "2000")), Options{Now: testNow})
		o := resourcesOf(t, out, "Observation")[0]
		if o["effectiveDateTime"] == "2000" && get(o, "valueQuantity", "value") == 80.0 {
			t.Errorf("an age of 80 years kept with its year 2000: a person of 105 in 2025 (born about 1920):\n%s", out)
		}
	})
}

// TestAgeDatedByItsEncounter: an age is judged with the year of the
// Encounter its resource names. A Condition with an onsetAge of 80 years
// and no date of its own, at an Encounter of 2000, shows a patient born
// about 1920, 105 in 2025: the age goes.
func TestAgeDatedByItsEncounter(t *testing.T) {
	in := []byte(`{"resourceType":"Bundle","type":"collection","entry":[
	 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"female"}},
	 {"fullUrl":"urn:uuid:e","resource":{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"},
	   "subject":{"reference":"urn:uuid:p"},"period":{"start":"2000-05-01"}}},
	 {"fullUrl":"urn:uuid:c","resource":{"resourceType":"Condition","id":"c",
	   "code":{"coding":[{"system":"http://snomed.info/sct","code":"53741008"}]},
	   "subject":{"reference":"urn:uuid:p"},"encounter":{"reference":"urn:uuid:e"},
	   "onsetAge":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}}]}`)
	out, _ := mustDeidentify(t, in, Options{Now: testNow})
	e := resourcesOf(t, out, "Encounter")[0]
	c := resourcesOf(t, out, "Condition")[0]
	if get(e, "period", "start") == "2000" && get(c, "onsetAge", "value") == 80.0 && get(c, "encounter", "reference") != nil {
		t.Errorf("onsetAge 80 years kept on a Condition of the Encounter of 2000: a patient of about 105:\n%s", out)
	}
}

// TestLostDeathYearReadsAsAlive: a patient is deceased only if the output
// says so. A deceasedDateTime the output loses (a "+0000" offset, as many
// serializers write it; a year the sweep takes as the patient's postal
// code) leaves a record that reads as a living patient's, so the birth year
// of a patient who died in 2023 at 92 is judged as of today, and masked.
func TestLostDeathYearReadsAsAlive(t *testing.T) {
	enc := `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:p"},"period":{"start":"2015-05-01"}}`
	for name, patient := range map[string]string{
		"death dateTime with +0000 offset": `"gender":"female","birthDate":"1930-04-02","deceasedDateTime":"2023-02-05T10:00:00.000+0000"`,
		"death year swept (postal code)":   `"gender":"female","birthDate":"1930-04-02","deceasedDateTime":"2023-02-05","address":[{"city":"Bellevue Hill","state":"NSW","postalCode":"2023","country":"AU"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			out, _ := mustDeidentify(t, patientBundle(patient, enc), Options{Now: testNow})
			p := resourcesOf(t, out, "Patient")[0]
			if p["birthDate"] == "1930" {
				t.Errorf("birthDate 1930 kept for a patient who died in 2023 at 92 (deceasedDateTime %v in the output):\n%s", p["deceasedDateTime"], out)
			}
		})
	}
}

// TestAgeCodesOfDeathAndOnset: an age of 90 or more is aggregated under the
// standard codes of an age at death (LOINC 39016-1, VRDR's Decedent Age;
// 63900-5 Current age or age at death), and in the unit "yrs.".
func TestAgeCodesOfDeathAndOnset(t *testing.T) {
	const loinc = "http://loinc.org"
	for name, o := range map[string]string{
		"39016-1 Age at death, valueInteger":       observation(loinc, "39016-1", `"valueInteger":97`),
		"63900-5 Current age, valueInteger":        observation(loinc, "63900-5", `"valueInteger":97`),
		"39016-1 Age at death, valueQuantity yrs.": observation(loinc, "39016-1", `"valueQuantity":{"value":97,"unit":"yrs."}`),
	} {
		t.Run(name, func(t *testing.T) {
			out, _ := mustDeidentify(t, patientBundle(`"gender":"female","deceasedBoolean":true`, o), Options{Now: testNow})
			if kept97.Match(out) {
				t.Errorf("an age of 97 is kept:\n%s", out)
			}
		})
	}
}

// TestAgeDatedByItsEncounterUnder90IsKept: the link to an Encounter judges
// an age, it does not remove every age: an onsetAge of 30 years at an
// Encounter of 2000 is a person of about 55 in 2025, and stays, as does a
// duration in hours of a young patient's Observation.
func TestAgeDatedByItsEncounterUnder90IsKept(t *testing.T) {
	in := []byte(`{"resourceType":"Bundle","type":"collection","entry":[
	 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"female","birthDate":"1970-02-03"}},
	 {"fullUrl":"urn:uuid:e","resource":{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"},
	   "subject":{"reference":"urn:uuid:p"},"period":{"start":"2000-05-01"}}},
	 {"fullUrl":"urn:uuid:c","resource":{"resourceType":"Condition","id":"c",
	   "code":{"coding":[{"system":"http://snomed.info/sct","code":"53741008"}]},
	   "subject":{"reference":"urn:uuid:p"},"encounter":{"reference":"urn:uuid:e"},
	   "onsetAge":{"value":30,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}},
	 {"fullUrl":"urn:uuid:o","resource":{"resourceType":"Observation","id":"o","status":"final",
	   "code":{"coding":[{"system":"http://loinc.org","code":"93832-4"}]},
	   "subject":{"reference":"urn:uuid:p"},"encounter":{"reference":"urn:uuid:e"},"effectiveDateTime":"2000-05-01",
	   "valueQuantity":{"value":7,"unit":"h","system":"http://unitsofmeasure.org","code":"h"}}}]}`)
	out, _ := mustDeidentify(t, in, Options{Now: testNow})
	if got := get(resourcesOf(t, out, "Condition")[0], "onsetAge", "value"); got != 30.0 {
		t.Errorf("onsetAge of a patient of about 55: %v, want 30:\n%s", got, out)
	}
	if got := get(resourcesOf(t, out, "Observation")[0], "valueQuantity", "value"); got != 7.0 {
		t.Errorf("hours of sleep of a patient of 55: %v, want 7:\n%s", got, out)
	}
	if got := resourcesOf(t, out, "Patient")[0]["birthDate"]; got != "1970" {
		t.Errorf("birthDate %v, want 1970:\n%s", got, out)
	}
}

var kept97 = regexp.MustCompile(`"value(Integer)?": 97\b`)

// observation is an Observation of patientBundle's patient coded code of
// system, with members (its value, its date).
func observation(system, code, members string) string {
	return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"` + system + `","code":"` + code + `"}]},` +
		`"subject":{"reference":"urn:uuid:p"},` + members + `}`
}

// TestMoreAgeCodesAndSNOMEDByOID: a unitless age (valueInteger, or a
// valueQuantity with no unit) is known by its code: LOINC 30972-4 "Age at
// onset of adverse event" (in HL7's value set
// v3-LOINCObservationActContextAgeType), SNOMED CT 423493009 "Age at
// diagnosis", and SNOMED CT named by its OID
// (urn:oid:2.16.840.1.113883.6.96) as LOINC may be. An age of 97 under
// them is aggregated.
func TestMoreAgeCodesAndSNOMEDByOID(t *testing.T) {
	obs := observation
	for name, o := range map[string]string{
		"LOINC 30972-4 Age at onset of adverse event, valueInteger": obs("http://loinc.org", "30972-4", `"valueInteger":97`),
		"SNOMED 423493009 Age at diagnosis, valueInteger":           obs("http://snomed.info/sct", "423493009", `"valueInteger":97`),
		"SNOMED by OID, 397659008 Age, valueInteger":                obs("urn:oid:2.16.840.1.113883.6.96", "397659008", `"valueInteger":97`),
		"SNOMED by OID, 445518008 Age at onset, unitless quantity":  obs("urn:oid:2.16.840.1.113883.6.96", "445518008", `"valueQuantity":{"value":97}`),
	} {
		t.Run(name, func(t *testing.T) {
			out, _ := mustDeidentify(t, patientBundle(`"gender":"female"`, o), Options{Now: testNow})
			if kept97.Match(out) {
				t.Errorf("an age of 97 is kept verbatim:\n%s", out)
			}
		})
	}
	// Under 90, under such a code: an age, masked once the year of birth is
	// (85 kept with 2015 would give 1930 back).
	t.Run("under 90 beside a masked year of birth", func(t *testing.T) {
		o := obs("http://snomed.info/sct", "423493009", `"effectiveDateTime":"2015-03-04","valueInteger":85`)
		out, _ := mustDeidentify(t, patientBundle(`"gender":"female","birthDate":"1930-04-02"`, o), Options{Now: testNow})
		if p := resourcesOf(t, out, "Patient")[0]; p["birthDate"] != nil {
			t.Fatalf("precondition: birthDate kept:\n%s", out)
		}
		ob := resourcesOf(t, out, "Observation")[0]
		if ob["effectiveDateTime"] == "2015" && ob["valueInteger"] == 85.0 {
			t.Errorf("birth year masked, but an age at diagnosis of 85 is kept with its year 2015 (born 1930):\n%s", out)
		}
	})
}

// TestAgeDatedTwoReferencesAway: an age is dated by whatever places it in
// its time, however far: a DiagnosticReport (dated) that lists a panel
// Observation (undated) whose hasMember is the age; an Encounter (dated)
// that is the partOf parent of a sub-encounter (undated) that a Condition
// with an onsetAge names. With no birthDate in the output, an age of 80 and
// the year 2000 would show a person of 105: the age goes.
func TestAgeDatedTwoReferencesAway(t *testing.T) {
	cases := map[string]string{
		"DiagnosticReport.result -> panel.hasMember -> age": `{"resourceType":"Bundle","type":"collection","entry":[
		 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"female"}},
		 {"fullUrl":"urn:uuid:dr","resource":{"resourceType":"DiagnosticReport","id":"dr","status":"final",
		   "code":{"coding":[{"system":"http://loinc.org","code":"24323-8"}]},"subject":{"reference":"urn:uuid:p"},
		   "effectiveDateTime":"2000-05-01","result":[{"reference":"urn:uuid:panel"}]}},
		 {"fullUrl":"urn:uuid:panel","resource":{"resourceType":"Observation","id":"panel","status":"final",
		   "code":{"coding":[{"system":"http://loinc.org","code":"24323-8"}]},"subject":{"reference":"urn:uuid:p"},
		   "hasMember":[{"reference":"urn:uuid:age"}]}},
		 {"fullUrl":"urn:uuid:age","resource":{"resourceType":"Observation","id":"age","status":"final",
		   "code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"subject":{"reference":"urn:uuid:p"},
		   "valueQuantity":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}}]}`,
		"Condition.encounter -> sub-Encounter.partOf -> Encounter": `{"resourceType":"Bundle","type":"collection","entry":[
		 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"female"}},
		 {"fullUrl":"urn:uuid:e1","resource":{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"IMP"},
		   "subject":{"reference":"urn:uuid:p"},"period":{"start":"2000-05-01","end":"2000-05-09"}}},
		 {"fullUrl":"urn:uuid:e2","resource":{"resourceType":"Encounter","id":"e2","status":"finished","class":{"code":"IMP"},
		   "subject":{"reference":"urn:uuid:p"},"partOf":{"reference":"urn:uuid:e1"}}},
		 {"fullUrl":"urn:uuid:c","resource":{"resourceType":"Condition","id":"c",
		   "code":{"coding":[{"system":"http://snomed.info/sct","code":"53741008"}]},
		   "subject":{"reference":"urn:uuid:p"},"encounter":{"reference":"urn:uuid:e2"},
		   "onsetAge":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}}]}`,
	}
	ageOf80DatedBy2000Goes(t, cases)
}

// TestUnitsOfYearsWithTheirTails: a unit of years is read with "old",
// "of age", "(s)" and a period after it, in any order: an age of 97 in
// "years old." is aggregated.
func TestUnitsOfYearsWithTheirTails(t *testing.T) {
	for _, unit := range []string{"years old.", "yrs old.", "year(s).", "years of age."} {
		t.Run(unit, func(t *testing.T) {
			obs := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://example.org/local","code":"x1"}]},
			  "subject":{"reference":"urn:uuid:p"},"valueQuantity":{"value":97,"unit":"` + unit + `"}}`
			out, _ := mustDeidentify(t, patientBundle(`"gender":"female"`, obs), Options{Now: testNow})
			if kept97.Match(out) {
				t.Errorf("unit %q: age 97 kept:\n%s", unit, out)
			}
		})
	}
}

// TestYoungerPatientsKeepTheirAges: timeValuePost makes every
// Observation value in a unit of time an age site, and agedByYear dates it
// by the earliest year of its resource or of a linked one. A value that is
// not the patient's age at that year then "showed" a person of 90 or older
// and every age of the record went, although the output keeps a birthDate
// that says the patient is 40 or 70 (an age with a year can give back no
// more than a kept birth year already gives). A re-review found this
// regression of b4e5c9c: these records kept their ages before it, and do
// again.
func TestYoungerPatientsKeepTheirAges(t *testing.T) {
	onsetAge := func(age string) string {
		return `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003"}]},
		  "subject":{"reference":"urn:uuid:p"},"recordedDate":"2015-01-01",
		  "onsetAge":{"value":` + age + `,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`
	}
	cases := map[string]struct {
		birth string
		in    []byte
		age   float64
	}{
		// A 70-year-old with type 1 diabetes since 1975 (age 20): the
		// duration of 49 years, evidence of the diabetes Condition, is
		// dated by the onset year 1975: 49 + (2025 - 1975) = 99.
		"70-year-old, diabetes duration linked to its onset": {"1955", []byte(`{"resourceType":"Bundle","type":"collection","entry":[
		 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"male","birthDate":"1955-03-02"}},
		 {"fullUrl":"urn:uuid:dm","resource":{"resourceType":"Condition","id":"dm",
		   "code":{"coding":[{"system":"http://snomed.info/sct","code":"46635009"}]},"subject":{"reference":"urn:uuid:p"},
		   "onsetDateTime":"1975-06-01","evidence":[{"detail":[{"reference":"urn:uuid:dur"}]}]}},
		 {"fullUrl":"urn:uuid:dur","resource":{"resourceType":"Observation","id":"dur","status":"final",
		   "code":{"coding":[{"system":"http://example.org/local","code":"dm-duration"}]},"subject":{"reference":"urn:uuid:p"},
		   "effectiveDateTime":"2024-02-01","valueQuantity":{"value":49,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}},
		 {"fullUrl":"urn:uuid:ht","resource":` + onsetAge("58") + `}]}`), 58},
		// A 50-year-old whose calculated age (LOINC 29553-5), 49 in 2024,
		// is derivedFrom the date of birth Observation (LOINC 21112-8) of
		// 1975: a date of birth dates no event (taken for one, it gave
		// 49 + (2025 - 1975) = 99).
		"50-year-old, calculated age derived from the birth date observation": {"1975", []byte(`{"resourceType":"Bundle","type":"collection","entry":[
		 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"male","birthDate":"1975-03-02"}},
		 {"fullUrl":"urn:uuid:dob","resource":{"resourceType":"Observation","id":"dob","status":"final",
		   "code":{"coding":[{"system":"http://loinc.org","code":"21112-8"}]},"subject":{"reference":"urn:uuid:p"},
		   "valueDateTime":"1975-03-02"}},
		 {"fullUrl":"urn:uuid:age","resource":{"resourceType":"Observation","id":"age","status":"final",
		   "code":{"coding":[{"system":"http://loinc.org","code":"29553-5"}]},"subject":{"reference":"urn:uuid:p"},
		   "effectiveDateTime":"2024-02-01","derivedFrom":[{"reference":"urn:uuid:dob"}],
		   "valueQuantity":{"value":49,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}},
		 {"fullUrl":"urn:uuid:ht","resource":` + onsetAge("38") + `}]}`), 38},
		// A 40-year-old whose family history notes the father's age at
		// death, 80 years, in 2010: 80 + 15 = 95.
		"40-year-old, father's age at death": {"1985", patientBundle(`"gender":"female","birthDate":"1985-03-02"`,
			`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://example.org/local","code":"father-age-at-death"}]},
			  "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2010-02-01",
			  "valueQuantity":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`,
			onsetAge("25")), 25},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			out, _ := mustDeidentify(t, c.in, Options{Now: testNow})
			if got := resourcesOf(t, out, "Patient")[0]["birthDate"]; got != c.birth {
				t.Fatalf("precondition: birthDate %v, want %s", got, c.birth)
			}
			var kept bool
			for _, cond := range resourcesOf(t, out, "Condition") {
				kept = kept || get(cond, "onsetAge", "value") == c.age
			}
			if !kept {
				t.Errorf("the patient's onsetAge %v is masked, though the output keeps birthDate %s:\n%s", c.age, c.birth, out)
			}
		})
	}
}

// ageOf80DatedBy2000Goes de-identifies each input of cases, in which an
// age of 80 is dated by the year 2000 (a person of 105 in 2025), and
// checks that they are not both kept.
func ageOf80DatedBy2000Goes(t *testing.T, cases map[string]string) {
	t.Helper()
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			out, _ := mustDeidentify(t, []byte(in), Options{Now: testNow})
			if kept2000.Match(out) && kept80.Match(out) {
				t.Errorf("an age of 80 and the year 2000 that dates it are both kept (about 105 in 2025):\n%s", out)
			}
		})
	}
}

var (
	kept80   = regexp.MustCompile(`"value": 80\b`)
	kept2000 = regexp.MustCompile(`"2000"`)
)

// TestAnotherPersonsAgeGoesBesideKeptBirthYears: a value in years under a
// code not known as an age, beside patients who keep their birth years, is
// not theirs, but it may be someone's: a relative's current age (a
// mother's 80 in 2000: 105 today, and nothing says she died), or the age
// of a person whose Patient is not in the output. Safe Harbor covers
// relatives' ages too: the value goes, alone (the patients' own ages stay,
// TestYoungerPatientsKeepTheirAges). A third review found such values kept
// by the rule that first skipped them. LOINC 35659-2 Age at specimen
// collection is an age code now.
func TestAnotherPersonsAgeGoesBesideKeptBirthYears(t *testing.T) {
	cases := map[string][]byte{
		"mother's age, local code, patient born 1985": patientBundle(`"gender":"female","birthDate":"1985-03-02"`,
			`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"social-history"}]}],
			  "code":{"coding":[{"system":"http://example.org/local","code":"mother-current-age"}]},
			  "subject":{"reference":"urn:uuid:p"},"effectiveDateTime":"2000-02-01",
			  "valueQuantity":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`),
		"age at specimen collection (LOINC 35659-2) of a person not in the output": patientBundle(`"gender":"female","birthDate":"1985-03-02"`,
			`{"resourceType":"Observation","status":"final",
			  "code":{"coding":[{"system":"http://loinc.org","code":"35659-2","display":"Age at specimen collection"}]},
			  "subject":{"reference":"Patient/someone-else-4471"},"effectiveDateTime":"2000-02-01",
			  "valueQuantity":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			out, _ := mustDeidentify(t, in, Options{Now: testNow})
			o := resourcesOf(t, out, "Observation")[0]
			if o["effectiveDateTime"] == "2000" && get(o, "valueQuantity", "value") == 80.0 {
				t.Errorf("an age of 80 years kept with its year 2000 (a person of 105 in 2025), because the output's only Patient keeps a birth year:\n%s", out)
			}
		})
	}
}

// TestAgeDatedByTheOtherRecordsOfItsEncounter: an age is dated by its
// Encounter and, when the Encounter's period does not reach the output (a
// dateTime with a "+0000" offset, refused, as is the age's own
// effectiveDateTime), by the other records of that Encounter: a Condition
// recorded there in 2000 dates the visit, and an age of 80 then is a
// person of 105 in 2025.
func TestAgeDatedByTheOtherRecordsOfItsEncounter(t *testing.T) {
	in := []byte(`{"resourceType":"Bundle","type":"collection","entry":[
	 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"female"}},
	 {"fullUrl":"urn:uuid:e","resource":{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"AMB"},
	   "subject":{"reference":"urn:uuid:p"},"period":{"start":"2000-05-01T10:00:00.000+0000","end":"2000-05-01T10:40:00.000+0000"}}},
	 {"fullUrl":"urn:uuid:age","resource":{"resourceType":"Observation","id":"age","status":"final",
	   "code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"subject":{"reference":"urn:uuid:p"},
	   "encounter":{"reference":"urn:uuid:e"},"effectiveDateTime":"2000-05-01T10:05:00.000+0000",
	   "valueQuantity":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}},
	 {"fullUrl":"urn:uuid:c","resource":{"resourceType":"Condition","id":"c",
	   "code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003"}]},"subject":{"reference":"urn:uuid:p"},
	   "encounter":{"reference":"urn:uuid:e"},"recordedDate":"2000-05-01"}}]}`)
	out, _ := mustDeidentify(t, in, Options{Now: testNow})
	o := resourcesOf(t, out, "Observation")[0]
	c := resourcesOf(t, out, "Condition")[0]
	if get(o, "valueQuantity", "value") == 80.0 && c["recordedDate"] == "2000" &&
		get(o, "encounter", "reference") != nil && get(o, "encounter", "reference") == get(c, "encounter", "reference") {
		t.Errorf("an age of 80 and, at the same Encounter, the year 2000 are both kept (about 105 in 2025):\n%s", out)
	}
}

// TestAgeDatedByWhatListsIt: what dates a resource that lists the age's
// resource dates the age too:
//   - Encounter.diagnosis[0].condition: a sub-Encounter (undated, partOf an
//     Encounter of 2000) lists as its diagnosis a Condition whose onsetAge
//     is 80. The onset is at or before the visit: born 1920 or before.
//   - Procedure.report: a biopsy of 2000 whose DiagnosticReport (its date
//     lost) lists an age Observation of 80.
func TestAgeDatedByWhatListsIt(t *testing.T) {
	cases := map[string]string{
		"Encounter(2000) <- partOf sub-Encounter.diagnosis[0].condition -> Condition.onsetAge": `{"resourceType":"Bundle","type":"collection","entry":[
		 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"female"}},
		 {"fullUrl":"urn:uuid:e1","resource":{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"IMP"},
		   "subject":{"reference":"urn:uuid:p"},"period":{"start":"2000-05-01","end":"2000-05-09"}}},
		 {"fullUrl":"urn:uuid:e2","resource":{"resourceType":"Encounter","id":"e2","status":"finished","class":{"code":"IMP"},
		   "subject":{"reference":"urn:uuid:p"},"partOf":{"reference":"urn:uuid:e1"},
		   "diagnosis":[{"condition":{"reference":"urn:uuid:c"},"rank":1}]}},
		 {"fullUrl":"urn:uuid:c","resource":{"resourceType":"Condition","id":"c",
		   "code":{"coding":[{"system":"http://snomed.info/sct","code":"53741008"}]},"subject":{"reference":"urn:uuid:p"},
		   "onsetAge":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}}]}`,
		"Procedure(2000).report -> DiagnosticReport.result -> age": `{"resourceType":"Bundle","type":"collection","entry":[
		 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p","gender":"female"}},
		 {"fullUrl":"urn:uuid:pr","resource":{"resourceType":"Procedure","id":"pr","status":"completed",
		   "code":{"coding":[{"system":"http://snomed.info/sct","code":"86273004"}]},"subject":{"reference":"urn:uuid:p"},
		   "performedDateTime":"2000-05-01","report":[{"reference":"urn:uuid:dr"}]}},
		 {"fullUrl":"urn:uuid:dr","resource":{"resourceType":"DiagnosticReport","id":"dr","status":"final",
		   "code":{"coding":[{"system":"http://loinc.org","code":"22637-3"}]},"subject":{"reference":"urn:uuid:p"},
		   "effectiveDateTime":"2000-05-03T08:00:00+0000","result":[{"reference":"urn:uuid:age"}]}},
		 {"fullUrl":"urn:uuid:age","resource":{"resourceType":"Observation","id":"age","status":"final",
		   "code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"subject":{"reference":"urn:uuid:p"},
		   "valueQuantity":{"value":80,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}}]}`,
	}
	ageOf80DatedBy2000Goes(t, cases)
}

// TestInputMarkerGivesWay: a patient of 90 or more whose input carries the
// 90-or-older marker saying false gets one marker, saying true; before,
// the input's false stayed (the marker was known by its URL alone).
func TestInputMarkerGivesWay(t *testing.T) {
	out, _ := mustDeidentify(t, []byte(`{"resourceType":"Patient","birthDate":"1920",
	  "extension":[{"url":"`+URLAge90OrOlder+`","valueBoolean":false}]}`), Options{Now: testNow})
	p := decode(t, out)
	exts, _ := p["extension"].([]any)
	var values []any
	for _, e := range exts {
		if get(e, "url") == URLAge90OrOlder {
			values = append(values, get(e, "valueBoolean"))
		}
	}
	if len(values) != 1 || values[0] != true {
		t.Errorf("90-or-older markers %v, want one, true:\n%s", values, out)
	}
}
