package deid

// Ages that a review (session 54) found kept where Safe Harbor removes them:
// a value in years under any code, an age dated by its Encounter, a death
// the output lost, and the standard codes of an age at death or at onset.

import (
	"regexp"
	"testing"
)

// resourcesOf returns the resources of type typ in a de-identified Bundle.
func resourcesOf(t *testing.T, out []byte, typ string) []map[string]any {
	t.Helper()
	return resourcesByType(t, decode(t, out))[typ]
}

// TestTimeValueUnder90IsAnAge: a Quantity in years is treated
// as an age when it is 90 or more, under any code (TestAgeInUnitsAsWritten),
// but not when it is under 90: it is never an ageSite, so maskAges does not
// remove it once the year of birth is masked, and agedByYear never judges
// it with its resource's year. An "age at onset" of 85 years recorded in
// 2015 gives back the masked year of birth 1930 (a patient of 95); one of
// 80 years in 2000 shows a patient of 105 and nothing is masked.
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

// TestAgeDatedByItsEncounter: agedByYear judges an age
// only with the years of its own resource. A Condition whose onsetAge is 80
// years and that has no date of its own, recorded at an Encounter of 2000
// (Condition.encounter), shows a patient born about 1920, 105 in 2025; the
// age and the Encounter's year are both kept. doc.go itself says an age
// "could still be tied to [a year] through its encounter".
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

// TestLostDeathYearReadsAsAlive: patientPost takes
// "deceased" from the input (deceasedDateTime present), but the reference
// year of a deceased patient is the latest year left in the output. When
// the year of death does not reach the output (a dateTime with a "+0000"
// offset, as many serializers write it; or a year that the sweep takes
// because it equals a 4-digit postal code of the patient), the reference
// year falls back to an earlier event, and the year of birth of a patient
// who died at 92 or 93 is kept, in an output that no longer says the
// patient died (so reads as a living patient of 95). The "died at 90" case
// of TestAgeOver89 masks it.
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

// TestAgeCodesOfDeathAndOnset: an age of 90 or more is aggregated
// only when its unit is one of time that textUnit knows, or when its
// Observation carries one of six codes. The standard "Age at death" (LOINC
// 39016-1, VRDR's Decedent Age) and "Current age or age at death" (LOINC
// 63900-5) are not among them, and "yrs." (with its period) is not a unit
// textUnit reads: an age of 97 is copied as it is.
func TestAgeCodesOfDeathAndOnset(t *testing.T) {
	obs := func(code, value string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` + code + `"}]},` +
			`"subject":{"reference":"urn:uuid:p"},` + value + `}`
	}
	for name, o := range map[string]string{
		"39016-1 Age at death, valueInteger":       obs("39016-1", `"valueInteger":97`),
		"63900-5 Current age, valueInteger":        obs("63900-5", `"valueInteger":97`),
		"39016-1 Age at death, valueQuantity yrs.": obs("39016-1", `"valueQuantity":{"value":97,"unit":"yrs."}`),
	} {
		t.Run(name, func(t *testing.T) {
			out, _ := mustDeidentify(t, patientBundle(`"gender":"female","deceasedBoolean":true`, o), Options{Now: testNow})
			if regexp.MustCompile(`: 97\b`).Match(out) {
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
