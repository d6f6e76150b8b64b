// Package deid de-identifies FHIR R4 JSON resources by the HIPAA Safe Harbor
// method (45 CFR §164.514(b)(2)) before a record is shared for research
// (`emrcli share` when the patient's grant says anonymise).
//
//	out, report, err := deid.Deidentify(plaintext, deid.Options{})
//
// The input is one FHIR resource or a Bundle of them. Anything else (PDF,
// DICOM, HL7 v2, C-CDA or FHIR XML, JSON without a resourceType) is refused
// with ErrNotFHIR: this package only knows how to de-identify structured FHIR,
// and the caller must refuse to share such content as anonymised. A single
// resource of an unsupported type is refused with ErrUnsupported.
//
// # Method: a whitelist
//
// Each supported resource type (Patient, Practitioner, Organization,
// Encounter, Observation, Condition, Procedure, MedicationRequest,
// DiagnosticReport, AllergyIntolerance, Immunization, and Bundle as a
// container) has a list of the elements that are kept and how each is
// transformed (schema.go). Everything else is removed: unlisted elements,
// elements of the wrong JSON shape, every primitive extension ("_birthDate"),
// every extension but a few known to be non-identifying, modifierExtension
// (an element carrying one is dropped whole, a resource carrying one is
// dropped whole, since its meaning cannot be kept without it), the narrative
// (text), contained resources, meta. A resource of any other type (Claim,
// Device, Location, DocumentReference, Media, Provenance, ...) is dropped whole
// and listed in Report.DroppedResources, so nothing the whitelist does not
// know can leak. The output Bundle is always of type "collection": requests,
// responses, search data, links, signature, identifier and timestamp of the
// input Bundle are removed.
//
// # The 18 Safe Harbor identifiers
//
//  1. Names — HumanName elements removed everywhere (Patient.name,
//     Patient.contact, Practitioner.name), as are Organization.name and alias
//     and Reference.display (which names people and places).
//  2. Geographic subdivisions smaller than a state — Address keeps state and
//     country only; line, city, district (county), postalCode, text, period
//     and the geolocation extension are removed. State and country are kept
//     only when they can be nothing but a name or code: letters (with their
//     combining marks), spaces, '.', apostrophes and '-', at most 40 bytes;
//     a free-form "Springfield, MA 01109" (a digit, a comma) goes, as does a
//     longer official name.
//     The Safe Harbor rule would allow the first three ZIP digits where that
//     area has more than 20,000 people; keeping the Census table current is
//     not worth it, so the whole ZIP is removed.
//  3. Dates — every date and dateTime element is reduced to its year
//     ("2019-03-04T09:15:00-05:00" → "2019"): birthDate, deceasedDateTime,
//     periods, effective/onset/abatement/performed/occurrence dates,
//     recordedDate, authoredOn, .... Instants (Observation.issued,
//     DiagnosticReport.issued, meta.lastUpdated) are removed: FHIR's instant
//     cannot hold a bare year. Timing.event is removed. Options.DropYears
//     removes the years too. Ages over 89: see below.
//  4. Telephone numbers, fax numbers (5) and e-mail addresses (6) — telecom
//     is removed from every resource.
//  7. Social security numbers, and medical record (8), health plan
//     beneficiary (9), account (10), certificate and licence (11), vehicle
//     (12) and device (13) identifiers and serial numbers — every Identifier
//     element is removed (identifier, groupIdentifier,
//     preAdmissionIdentifier, qualification.identifier,
//     Reference.identifier), as are lotNumber and Encounter.account; Device
//     (serialNumber, udiCarrier) and Account are unsupported types, dropped.
//  14. URLs and IP addresses (15) — telecom and attachments are removed, and the
//     only URIs left are code systems (Coding.system, Quantity.system),
//     extension URLs and the neutral tokens below (meta.source, which may
//     name a server, is removed). Any other kept string (a code, display,
//     unit, Coding.version, ...) that holds a URL, a URN, a "www." host or
//     an IPv4 address is removed.
//  16. Biometric identifiers and full-face photographs (17) — Patient.photo and
//     every Attachment (DiagnosticReport.presentedForm, Observation
//     valueAttachment) are removed; Media, ImagingStudy and
//     DocumentReference are unsupported types, dropped.
//  18. Any other unique identifying number, characteristic or code —
//     resource ids, fullUrls and references are replaced (below), and the
//     sweep removes the input's ids wherever else they occur; free text is
//     removed (below).
//
// # Ages over 89
//
// Safe Harbor aggregates every age over 89, and every date element (year
// included) indicating one, into "90 or older". A patient's reference year is
// the latest year of any date left in the output and, for a patient whom
// the output does not show deceased (a death whose date the output lost
// reads as a living patient), the year of Options.Now (today by default); if the
// reference year minus the birth year is 90 or more, birthDate is removed and
// replaced by
//
//	"_birthDate": {"extension": [{"url": URLDataAbsentReason, "valueCode": "masked"}]}
//
// and the Patient gets the extension URLAge90OrOlder (valueBoolean true), so
// that a researcher can still count the patient in the 90+ category. A date
// of birth recorded as an Observation (LOINC 21112-8, SNOMED CT 184099003;
// its value or a component's) is judged the same way, as a patient's who
// may be alive, and its valueDateTime removed. The
// comparison is by calendar year, which errs towards generalizing (someone
// born in December 1935 is generalized from January 2025).
//
// A record that holds an event of year Y shows that its patient was alive in
// Y, so at least R − Y years old in the reference year R: the year of
// Options.Now or, when the output holds patients and all of them are known
// to be deceased, the latest year of the output (when they were last known
// alive; Options.Now's if that is earlier: a date in the future proves
// nothing). Every year of a date element with R − Y ≥ 90 is removed, in every
// resource, whoever the patient is and whether or not the birthDate is known
// (an Encounter of 1930 in 2025); an element left empty by it (a period)
// goes too. A Patient's birthDate is judged as above. Only date elements are
// judged: a code, a Coding.version "1920" or a number is not a date of a
// life.
//
// An age under 90 kept with a year of the same resource gives the year of
// birth back (85 in 2005: about 1920), and so does one kept with the year of
// an event that dates it. An age is dated by the years of its resource; of
// the resources one reference away, either way (not a Patient, Practitioner
// or Organization: their years are a death or a period of work); of those
// that place either in their time, however far (an Encounter and its partOf
// parent; the panel Observation and the DiagnosticReport that list a
// result); and, for any of these without a year of its own, of the
// resources one reference away from it (the other records of an Encounter
// whose period was lost). A birth year (birthDate, a date of birth
// observation) dates no event. When an age's lower bound A (a Range's low;
// a Range's high alone has none) and the earliest of those years Y give
// A + (R − Y) ≥ 90, they show a person 90 or older, with or without a
// birthDate: every age under 90 of the output goes then, as when a year of
// birth is masked (see Limits), and the years stay. The years are what
// orders the whole record, and a patient of 90 or more with a birthDate
// loses the ages either way. An Observation's value (or a component's) in a
// unit of time counts as an age whatever its code (an "age at onset" of 85
// years), and is masked with the ages. When every patient of the output
// keeps a birth year, their ages are known, and such a value under another
// code that shows a person 90 or older is not theirs (a duration, a
// relative's age): it goes alone, and the patients' ages stay. Only years
// that reach the output date an age (not one of an element dropped; the
// latest year of the output may still count one, which errs towards
// generalizing). An Observation (or component) with more than one
// value[x], which FHIR does not allow, loses them all. A patient whose
// input already carries the 90-or-older marker (true) is treated as one
// whose birth year was masked, and one whose year of death goes (90 or
// more years before the reference year: before the record's last events
// by as much, "0000", an old death beside a living patient) as a living
// one.
//
// Any Quantity in a unit of time (a UCUM code, or a unit as people write
// it: "years", "yrs.", "year(s)", "yrs of age", "y/o", "{years}"; not a word of another
// language) of 90 years or more (Condition.onsetAge,
// Procedure.performedAge, an Observation's value, ...) becomes {"value": 90,
// "comparator": ">=", "unit": "years", "code": "a"} (the low end of a Range
// becomes 90, the high end is removed); an Age whose unit is not one of time
// is removed; an age observation (LOINC 30525-0, 21612-7, 29553-5, 21611-9,
// 39016-1 Age at death, 63900-5, 30972-4, 35659-2; SNOMED CT 397659008, 424144002,
// 445518008 Age at onset, 423493009 Age at diagnosis; either system by its
// URL or its OID) of 90 or more is aggregated whatever its
// unit (a valueRange's bounds as a Range's above).
//
// # Ids and references
//
// The n-th kept resource (in input order) gets the id
// "de1d0c5e-de1d-8de1-ade1-" followed by n in 12 decimal digits, a
// syntactically valid UUID made of a fixed prefix and the position, and the
// fullUrl "urn:uuid:" + that id. Every Reference whose target is a kept
// resource of the same input is rewritten to {"reference": "urn:uuid:<id>"};
// a reference to anything else (a dropped or absent resource, a contained
// one) is removed, and so are Reference.display, .identifier and .type.
// Targets are found by fullUrl, by "Type/id" (relative or at the end of an
// absolute URL) and by conditional references "Type?identifier=system|value"
// (as Synthea writes them) that match exactly one resource. The tokens carry
// nothing of the input but the order of its resources, are not derived from
// any identifier and need no key, so they are not identifiers in the sense of
// §164.514(b)(2)(i)(R) (compare the re-identification code of §164.514(c)),
// and the references inside the output stay consistent.
//
// # Free text
//
// Free text can contain anything, so it is removed, not scrubbed: narrative
// (text.div), note and comment, description, conclusion, CodeableConcept.text,
// Dosage.text and patientInstruction, valueString, the string forms of
// onset/abatement/performed/occurrence, referenceRange.text. Coded content
// is kept: codings (system, code, display), quantities with their exact
// value literal ("7.20" stays "7.20"), statuses, categories, interpretations,
// reference ranges. A CodeableConcept that had only text is removed.
//
// # Extensions
//
// Only us-core-race and us-core-ethnicity (their codes; the "text"
// sub-extension is free text and goes), us-core-birthsex and us-core-genderIdentity are kept, on Patient only, plus
// this package's URLAge90OrOlder. Every other extension is removed, on every
// element: patient-birthPlace (an address), patient-mothersMaidenName (a
// name), patient-birthTime (a time of birth), geolocation, Synthea's
// quality- and disability-adjusted life years, local extensions.
//
// # The sweep (defence in depth)
//
// Before anything is written, the identifying strings of the input are
// collected: the value of every Identifier element of every resource (its
// identifier, and at any depth: Reference.identifier, groupIdentifier,
// preAdmissionIdentifier, ...) and of every conditional reference
// ("Practitioner?identifier=system|value"); the id of every resource
// (contained ones included) and the id every fullUrl and reference names
// ("mrn-7734120" of "Patient/mrn-7734120", dangling or not, and of
// "urn:uuid:..."), when it holds a digit and, if it holds only digits, 6 of
// them or more (an id "glucose" would take the display "Glucose
// [Mass/volume] in Blood", a server's sequence number "2339" the LOINC code
// 2339-0); and the names, telecom values, address parts (text, line, city,
// district, postalCode) and photo URLs of Patients (with their contacts and
// non-whitelisted extensions), Practitioners, RelatedPersons and Persons,
// contained ones and those of a nested Bundle included; each, trimmed and
// as given, when at least 4 bytes long. Every string that would be copied
// to the output (codes, displays, units, years, ...) is removed if it
// contains one of them, case-insensitively (by Unicode simple case folding:
// ΟΔΥΣΣΕΑΣ is Οδυσσεας), or contains an '@', or looks like a full date
// (2019-03, 2019-03-04, 3/4/2019). A patient named "White" thus loses the
// race display "White" (its code stays). Numbers are copied as their
// literals, and a literal is removed the same way if it contains one of them
// (an SSN "999417352" given as an Identifier, typed into valueInteger) or
// holds a compact date (20190304, 20190304091500); a Quantity whose value is
// removed goes whole. Laboratory values stay as they are (7.20, 120, 98.6).
// multipleBirthInteger is kept only from 1 to 20: anything else is no birth
// order. The only strings of the output that do not go through the sweep
// are the fixed ones: resourceType, the tokens (id, fullUrl, reference),
// whitelisted extension URLs and the Bundle type.
//
// # Report and determinism
//
// Report lists the paths (in the input) of what was removed and generalized,
// and the resources dropped. It names no value of the input, but it names the
// input's member names; it is for the sharer, not for the researcher. The
// output is indented JSON; the same input and options always give the same
// bytes (map members are visited in sorted order; nothing random is used).
// With the zero Options.Now the output can only change when the calendar
// year does and a patient, or a date, crosses 90 years.
//
// # Limits
//
// Safe Harbor is a legal standard applied here to structured fields. Meeting
// it also requires that the covered entity have no actual knowledge that the
// remaining information could identify the individual (§164.514(b)(2)(ii));
// this package cannot know that. What stays — years, state, sex, race,
// exact clinical values and codes, the order and number of encounters — can
// still single out a patient with a rare condition in a small state; the
// expert-determination method (§164.514(b)(1)), k-anonymity checks and small
// cell suppression are out of scope. Free text and attachments are removed,
// never scrubbed, so clinical information that exists only as text is lost.
// Coded strings and numbers are copied (after the sweep): a display, code or
// number that contains an identifier not present in the structured
// identifying fields of the same input (a neighbour's name typed into a
// coding's display, a city alone typed into Address.state, an id without a
// digit or of fewer than 6 digits) is not detected. An identifier or phone
// number of 6 digits or more is found with any separators, or none (its
// digits are looked for among each string's digits), but not when typed
// with part of it left out (a phone number without its country code).
// The output keeps the FHIR JSON syntax of the elements it keeps, but it may
// violate profiles (US Core requires Patient.identifier and name) and
// cardinalities whose only content was identifying (a MedicationRequest whose
// medication was a reference to a dropped Medication has none). Once a
// patient's year of birth is masked (90 or older), a year is removed as 90 or
// more years old, or an age and a year show someone 90 or older, every age
// under 90 of the output goes too (an age of 85 kept with the year 2005
// would give 1920 back), including, in a bundle of several patients, the
// others' ages; so do, in such a bundle, the old years of a deceased patient
// when another may be alive. An age of a reference range (referenceRange.age)
// counts as the patient's: a laboratory that lists several age bands makes
// a younger patient lose the ages.
package deid
