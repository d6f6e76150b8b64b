package app

// ValidatorDiffForTest is validatorDiff, for the package's external tests.
var ValidatorDiffForTest = validatorDiff

// AdmitEmergencyReadForTest is admitEmergencyRead, for the package's
// external tests.
var AdmitEmergencyReadForTest = admitEmergencyRead

// EmergencyReadsKeyForTest is the key of a clinician's EmergencyReads.
var EmergencyReadsKeyForTest = emergencyReadsKey
