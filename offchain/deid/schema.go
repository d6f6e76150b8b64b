package deid

// The whitelist. For every supported resource type it lists the elements that
// are kept, each with the transformation it goes through; an element that is
// not listed is removed, whatever it is. Element names follow FHIR R4
// (4.0.1); choice elements ([x]) are listed by their concrete JSON names, so
// that e.g. Observation.valueQuantity is kept while Observation.valueString
// (free text) is not.

// kind is how one element is transformed.
type kind uint8

const (
	kString    kind = iota // code, id, short coded strings: copied if they pass the sweep and hold no URI or IP address
	kSystem                // a code system's URI (Coding.system, Quantity.system): copied if it passes the sweep
	kBool                  // boolean: copied
	kNumber                // integer, positiveInt, unsignedInt, decimal: copied (literal kept) if it passes the sweep
	kDate                  // date, dateTime: reduced to the year (or removed)
	kReference             // Reference: rewritten to the position token of its target, or removed
	kExtension             // Patient.extension: only the extensions of patientExtensions
	kObject                // complex type or backbone element: the fields of its schema
)

// elem describes one element.
type elem struct {
	kind kind
	many bool // the JSON value is an array
	sub  *schema
}

// list returns e as a repeating element.
func (e elem) list() elem {
	e.many = true
	return e
}

type field struct {
	name string
	e    elem
}

// schema is the whitelist of a complex type, a backbone element or a resource.
type schema struct {
	fields []field
	index  map[string]int
	// dates are the indices of the fields of kind kDate: their years are
	// noted for patchAges (see noteYears).
	dates []int
	// requires names a field without which the object means nothing (a
	// Coding without code, a Quantity without value): when it is not in the
	// output, the whole object is removed.
	requires string
	// post, if set, runs on the output of the object (never nil nor empty)
	// and returns what is kept of it (nil to remove it).
	post func(d *deidentifier, p string, in map[string]any, out *object) *object
}

func fl(name string, e elem) field { return field{name, e} }

func newSchema(fs []field) *schema {
	s := &schema{fields: fs, index: make(map[string]int, len(fs))}
	for i, f := range fs {
		if _, dup := s.index[f.name]; dup {
			panic("deid: duplicate field " + f.name)
		}
		s.index[f.name] = i
		if f.e.kind == kDate {
			s.dates = append(s.dates, i)
		}
	}
	return s
}

func obj(fs ...field) elem { return elem{kind: kObject, sub: newSchema(fs)} }

// requiring returns a copy of the object element e that is dropped when
// field is absent from its output.
func (e elem) requiring(field string) elem {
	s := *e.sub
	s.requires = field
	e.sub = &s
	return e
}

func (e elem) withPost(post func(d *deidentifier, p string, in map[string]any, out *object) *object) elem {
	s := *e.sub
	s.post = post
	e.sub = &s
	return e
}

// Data types.
var (
	str       = elem{kind: kString}
	system    = elem{kind: kSystem}
	boolean   = elem{kind: kBool}
	number    = elem{kind: kNumber}
	date      = elem{kind: kDate}
	reference = elem{kind: kReference}

	// Coding.display is the terminology's display for the code: kept, as
	// long as the code is (and it passes the sweep).
	coding = obj(
		fl("system", system), fl("version", str), fl("code", str), fl("display", str), fl("userSelected", boolean),
	).requiring("code")
	// CodeableConcept.text is free text: removed. A concept is kept only
	// through its codings.
	codeableConcept = obj(fl("coding", coding.list())).requiring("coding")

	period = obj(fl("start", date), fl("end", date))

	quantity       = quantityElem(qAny) // Quantity, Duration
	age            = quantityElem(qAge) // Age
	simpleQuantity = quantityElem(qLow) // SimpleQuantity outside a Range
	rangeType      = rangeElem(qLow, qHigh)
	ageRange       = rangeElem(qAgeLow, qAgeHigh) // a Range of Age
	ratio          = obj(fl("numerator", quantity), fl("denominator", quantity))

	// Address is generalized to the state and the country, each kept only
	// when it can be nothing but a name or a code (addressPost).
	address = obj(fl("state", str), fl("country", str)).withPost(addressPost)

	// Timing.event (exact dates) and Timing.repeat.bounds* other than
	// durations are dropped; a schedule keeps its shape.
	timing = obj(
		fl("repeat", obj(
			fl("boundsDuration", quantity), fl("boundsRange", rangeType), fl("boundsPeriod", period),
			fl("count", number), fl("countMax", number),
			fl("duration", number), fl("durationMax", number), fl("durationUnit", str),
			fl("frequency", number), fl("frequencyMax", number),
			fl("period", number), fl("periodMax", number), fl("periodUnit", str),
			fl("dayOfWeek", str.list()), fl("timeOfDay", str.list()), fl("when", str.list()), fl("offset", number),
		)),
		fl("code", codeableConcept),
	)

	// Dosage.text and Dosage.patientInstruction are free text: removed.
	dosage = obj(
		fl("sequence", number),
		fl("additionalInstruction", codeableConcept.list()),
		fl("timing", timing),
		fl("asNeededBoolean", boolean), fl("asNeededCodeableConcept", codeableConcept),
		fl("site", codeableConcept), fl("route", codeableConcept), fl("method", codeableConcept),
		fl("doseAndRate", obj(
			fl("type", codeableConcept),
			fl("doseRange", rangeType), fl("doseQuantity", simpleQuantity),
			fl("rateRatio", ratio), fl("rateRange", rangeType), fl("rateQuantity", simpleQuantity),
		).list()),
		fl("maxDosePerPeriod", ratio),
		fl("maxDosePerAdministration", simpleQuantity),
		fl("maxDosePerLifetime", simpleQuantity),
	)

	referenceRange = obj(
		fl("low", quantityElem(qLow)), fl("high", quantityElem(qHigh)),
		fl("type", codeableConcept), fl("appliesTo", codeableConcept.list()), fl("age", ageRange),
	)
)

func quantityElem(m qmode) elem {
	fs := []field{fl("value", number)}
	if m == qAny || m == qAge {
		fs = append(fs, fl("comparator", str)) // SimpleQuantity has no comparator
	}
	fs = append(fs, fl("unit", str), fl("system", system), fl("code", str))
	return obj(fs...).requiring("value").withPost(quantityPost(m))
}

func rangeElem(low, high qmode) elem {
	return obj(fl("low", quantityElem(low)), fl("high", quantityElem(high)))
}

// resourceSchema is the whitelist of one resource type. resourceType and id
// are handled by the caller (id is replaced by a position token); the
// elements every resource may carry (meta, implicitRules, text, contained,
// extension, modifierExtension) are removed unless listed (only Patient
// lists extension).
type resourceSchema struct {
	*schema
	post func(d *deidentifier, r *resourceEntry, out *object)
}

func resource(post func(d *deidentifier, r *resourceEntry, out *object), fs ...field) *resourceSchema {
	return &resourceSchema{schema: newSchema(append([]field{fl("language", str)}, fs...)), post: post}
}

// resources is the set of supported resource types. A resource of any other
// type is dropped whole and reported.
var resources = map[string]*resourceSchema{
	// Removed: identifier, name, telecom, address (but state and country),
	// photo, contact, link, every extension not in patientExtensions.
	// birthDate and deceasedDateTime keep their year; see patchAges for
	// patients 90 or older.
	"Patient": resource(patientPost,
		fl("extension", elem{kind: kExtension, many: true}),
		fl("active", boolean),
		fl("gender", str),
		fl("birthDate", date),
		fl("deceasedBoolean", boolean), fl("deceasedDateTime", date),
		fl("address", address.list()),
		fl("maritalStatus", codeableConcept),
		fl("multipleBirthBoolean", boolean), fl("multipleBirthInteger", number), // 1 to 20 only: patientPost
		fl("communication", obj(fl("language", codeableConcept), fl("preferred", boolean)).requiring("language").list()),
		fl("generalPractitioner", reference.list()),
		fl("managingOrganization", reference),
	),
	// Removed: identifier (NPI, licences), name, telecom, address (but state
	// and country), birthDate, photo, qualification.identifier and .period.
	"Practitioner": resource(nil,
		fl("active", boolean),
		fl("address", address.list()),
		fl("gender", str),
		fl("qualification", obj(fl("code", codeableConcept), fl("issuer", reference)).requiring("code").list()),
		fl("communication", codeableConcept.list()),
	),
	// Removed: identifier, name, alias, telecom, address (but state and
	// country), contact, endpoint. An organization's name and street
	// address locate its patients as well as it.
	"Organization": resource(nil,
		fl("active", boolean),
		fl("type", codeableConcept.list()),
		fl("address", address.list()),
		fl("partOf", reference),
	),
	// Removed: identifier, classHistory, episodeOfCare, basedOn,
	// appointment, account, hospitalization.preAdmissionIdentifier, .origin
	// and .destination, location (Location resources are not supported).
	"Encounter": resource(nil,
		fl("status", str),
		fl("statusHistory", obj(fl("status", str), fl("period", period)).list()),
		fl("class", coding),
		fl("type", codeableConcept.list()),
		fl("serviceType", codeableConcept),
		fl("priority", codeableConcept),
		fl("subject", reference),
		fl("participant", obj(fl("type", codeableConcept.list()), fl("period", period), fl("individual", reference)).list()),
		fl("period", period),
		fl("length", quantity),
		fl("reasonCode", codeableConcept.list()),
		fl("reasonReference", reference.list()),
		fl("diagnosis", obj(fl("condition", reference), fl("use", codeableConcept), fl("rank", number)).requiring("condition").list()),
		fl("hospitalization", obj(
			fl("admitSource", codeableConcept), fl("reAdmission", codeableConcept),
			fl("dietPreference", codeableConcept.list()), fl("specialCourtesy", codeableConcept.list()),
			fl("specialArrangement", codeableConcept.list()), fl("dischargeDisposition", codeableConcept),
		)),
		fl("serviceProvider", reference),
		fl("partOf", reference),
	),
	// Removed: identifier, basedOn, partOf, focus, effectiveInstant and
	// issued (instants cannot hold a bare year), effectiveTiming,
	// valueString, valueSampledData, valueAttachment, note, specimen, device,
	// referenceRange.text.
	"Observation": resource(observationPost,
		fl("status", str),
		fl("category", codeableConcept.list()),
		fl("code", codeableConcept),
		fl("subject", reference),
		fl("encounter", reference),
		fl("effectiveDateTime", date), fl("effectivePeriod", period),
		fl("performer", reference.list()),
		fl("valueQuantity", quantity), fl("valueCodeableConcept", codeableConcept),
		fl("valueBoolean", boolean), fl("valueInteger", number),
		fl("valueRange", rangeType), fl("valueRatio", ratio), fl("valueTime", str),
		fl("valueDateTime", date), fl("valuePeriod", period),
		fl("dataAbsentReason", codeableConcept),
		fl("interpretation", codeableConcept.list()),
		fl("bodySite", codeableConcept),
		fl("method", codeableConcept),
		fl("referenceRange", referenceRange.list()),
		fl("hasMember", reference.list()),
		fl("derivedFrom", reference.list()),
		fl("component", obj(
			fl("code", codeableConcept),
			fl("valueQuantity", quantity), fl("valueCodeableConcept", codeableConcept),
			fl("valueBoolean", boolean), fl("valueInteger", number),
			fl("valueRange", rangeType), fl("valueRatio", ratio), fl("valueTime", str),
			fl("valueDateTime", date), fl("valuePeriod", period),
			fl("dataAbsentReason", codeableConcept),
			fl("interpretation", codeableConcept.list()),
			fl("referenceRange", referenceRange.list()),
		).requiring("code").withPost(componentPost).list()),
	),
	// Removed: identifier, onsetString, abatementString, stage and evidence
	// references to unsupported resources, note.
	"Condition": resource(nil,
		fl("clinicalStatus", codeableConcept),
		fl("verificationStatus", codeableConcept),
		fl("category", codeableConcept.list()),
		fl("severity", codeableConcept),
		fl("code", codeableConcept),
		fl("bodySite", codeableConcept.list()),
		fl("subject", reference),
		fl("encounter", reference),
		fl("onsetDateTime", date), fl("onsetAge", age), fl("onsetPeriod", period), fl("onsetRange", ageRange),
		fl("abatementDateTime", date), fl("abatementAge", age), fl("abatementPeriod", period), fl("abatementRange", ageRange),
		fl("recordedDate", date),
		fl("recorder", reference),
		fl("asserter", reference),
		fl("stage", obj(fl("summary", codeableConcept), fl("assessment", reference.list()), fl("type", codeableConcept)).list()),
		fl("evidence", obj(fl("code", codeableConcept.list()), fl("detail", reference.list())).list()),
	),
	// Removed: identifier, instantiates*, basedOn, partOf, performedString,
	// location, note, focalDevice, usedReference.
	"Procedure": resource(nil,
		fl("status", str),
		fl("statusReason", codeableConcept),
		fl("category", codeableConcept),
		fl("code", codeableConcept),
		fl("subject", reference),
		fl("encounter", reference),
		fl("performedDateTime", date), fl("performedPeriod", period),
		fl("performedAge", age), fl("performedRange", ageRange),
		fl("recorder", reference),
		fl("asserter", reference),
		fl("performer", obj(fl("function", codeableConcept), fl("actor", reference), fl("onBehalfOf", reference)).list()),
		fl("reasonCode", codeableConcept.list()),
		fl("reasonReference", reference.list()),
		fl("bodySite", codeableConcept.list()),
		fl("outcome", codeableConcept),
		fl("report", reference.list()),
		fl("complication", codeableConcept.list()),
		fl("complicationDetail", reference.list()),
		fl("followUp", codeableConcept.list()),
		fl("usedCode", codeableConcept.list()),
	),
	// Removed: identifier, instantiates*, basedOn, groupIdentifier,
	// medicationReference (Medication is not supported), supportingInformation,
	// insurance, note, dosageInstruction.text and .patientInstruction,
	// dispenseRequest.performer, detectedIssue, eventHistory.
	"MedicationRequest": resource(nil,
		fl("status", str),
		fl("statusReason", codeableConcept),
		fl("intent", str),
		fl("category", codeableConcept.list()),
		fl("priority", str),
		fl("doNotPerform", boolean),
		fl("reportedBoolean", boolean), fl("reportedReference", reference),
		fl("medicationCodeableConcept", codeableConcept),
		fl("subject", reference),
		fl("encounter", reference),
		fl("authoredOn", date),
		fl("requester", reference),
		fl("performer", reference),
		fl("performerType", codeableConcept),
		fl("recorder", reference),
		fl("reasonCode", codeableConcept.list()),
		fl("reasonReference", reference.list()),
		fl("courseOfTherapyType", codeableConcept),
		fl("dosageInstruction", dosage.list()),
		fl("dispenseRequest", obj(
			fl("initialFill", obj(fl("quantity", simpleQuantity), fl("duration", quantity))),
			fl("dispenseInterval", quantity),
			fl("validityPeriod", period),
			fl("numberOfRepeatsAllowed", number),
			fl("quantity", simpleQuantity),
			fl("expectedSupplyDuration", quantity),
		)),
		fl("substitution", obj(fl("allowedBoolean", boolean), fl("allowedCodeableConcept", codeableConcept), fl("reason", codeableConcept))),
		fl("priorPrescription", reference),
	),
	// Removed: identifier, basedOn, issued (an instant), specimen,
	// imagingStudy, media, conclusion (free text), presentedForm (attached
	// documents: anything may be in them).
	"DiagnosticReport": resource(nil,
		fl("status", str),
		fl("category", codeableConcept.list()),
		fl("code", codeableConcept),
		fl("subject", reference),
		fl("encounter", reference),
		fl("effectiveDateTime", date), fl("effectivePeriod", period),
		fl("performer", reference.list()),
		fl("resultsInterpreter", reference.list()),
		fl("result", reference.list()),
		fl("conclusionCode", codeableConcept.list()),
	),
	// Removed: identifier, onsetString, note, reaction.description,
	// reaction.note.
	"AllergyIntolerance": resource(nil,
		fl("clinicalStatus", codeableConcept),
		fl("verificationStatus", codeableConcept),
		fl("type", str),
		fl("category", str.list()),
		fl("criticality", str),
		fl("code", codeableConcept),
		fl("patient", reference),
		fl("encounter", reference),
		fl("onsetDateTime", date), fl("onsetAge", age), fl("onsetPeriod", period), fl("onsetRange", ageRange),
		fl("recordedDate", date),
		fl("recorder", reference),
		fl("asserter", reference),
		fl("lastOccurrence", date),
		fl("reaction", obj(
			fl("substance", codeableConcept),
			fl("manifestation", codeableConcept.list()),
			fl("onset", date),
			fl("severity", str),
			fl("exposureRoute", codeableConcept),
		).requiring("manifestation").list()),
	),
	// Removed: identifier, occurrenceString, location, lotNumber,
	// expirationDate, note, education, protocolApplied.series and the
	// string forms of the dose numbers.
	"Immunization": resource(nil,
		fl("status", str),
		fl("statusReason", codeableConcept),
		fl("vaccineCode", codeableConcept),
		fl("patient", reference),
		fl("encounter", reference),
		fl("occurrenceDateTime", date),
		fl("recorded", date),
		fl("primarySource", boolean),
		fl("reportOrigin", codeableConcept),
		fl("manufacturer", reference),
		fl("site", codeableConcept),
		fl("route", codeableConcept),
		fl("doseQuantity", simpleQuantity),
		fl("performer", obj(fl("function", codeableConcept), fl("actor", reference)).requiring("actor").list()),
		fl("reasonCode", codeableConcept.list()),
		fl("reasonReference", reference.list()),
		fl("isSubpotent", boolean),
		fl("subpotentReason", codeableConcept.list()),
		fl("programEligibility", codeableConcept.list()),
		fl("fundingSource", codeableConcept),
		fl("reaction", obj(fl("date", date), fl("detail", reference), fl("reported", boolean)).list()),
		fl("protocolApplied", obj(
			fl("authority", reference),
			fl("targetDisease", codeableConcept.list()),
			fl("doseNumberPositiveInt", number),
			fl("seriesDosesPositiveInt", number),
		).list()),
	),
}

// Extension URLs. The extensions of patientExtensions are the only ones kept
// (on Patient only); every other extension, anywhere, is removed: an unknown
// extension may carry anything (patient-birthPlace carries an address,
// patient-mothersMaidenName a name).
const (
	URLRace           = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	URLEthnicity      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
	URLBirthSex       = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
	URLGenderIdentity = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-genderIdentity"

	// URLDataAbsentReason is FHIR's standard extension; a birthDate removed
	// because the patient is 90 or older carries it with the code "masked".
	URLDataAbsentReason = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
	// URLAge90OrOlder marks (valueBoolean true) a Patient whose birthDate was
	// removed because the patient is, or was at some date of the record, 90
	// or older: Safe Harbor aggregates all such ages into one category.
	URLAge90OrOlder = "urn:emrchain:fhir:StructureDefinition:age-90-or-older"
)

// extSpec is a whitelisted extension: its value[x] forms and, for complex
// extensions, its sub-extensions by url.
type extSpec struct {
	url    string
	values []field
	subs   map[string]*extSpec
}

// ombExtension is the shape of us-core-race and us-core-ethnicity kept: OMB
// category and detailed codes (CDC Race & Ethnicity codes). Their "text"
// sub-extension is free text ("White", or anything a clerk typed) and goes:
// the codes carry the meaning.
func ombExtension(url string) *extSpec {
	return &extSpec{url: url, subs: map[string]*extSpec{
		"ombCategory": {url: "ombCategory", values: []field{fl("valueCoding", coding)}},
		"detailed":    {url: "detailed", values: []field{fl("valueCoding", coding)}},
	}}
}

var patientExtensions = map[string]*extSpec{
	URLRace:           ombExtension(URLRace),
	URLEthnicity:      ombExtension(URLEthnicity),
	URLBirthSex:       {url: URLBirthSex, values: []field{fl("valueCode", str)}},
	URLGenderIdentity: {url: URLGenderIdentity, values: []field{fl("valueCodeableConcept", codeableConcept)}},
	// Our own marker, so that de-identifying an output again keeps it.
	URLAge90OrOlder: {url: URLAge90OrOlder, values: []field{fl("valueBoolean", boolean)}},
}
