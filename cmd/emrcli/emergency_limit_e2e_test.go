package main

import (
	"strings"
	"testing"
)

// TestProposeEmergencyPatientsPerDay: a new chain has a limit of 20;
// --emergency-patients-per-day past the ceiling is a usage error; 0 (the flag
// given, with the zero value) is proposed and executes; "params" shows it in
// JSON and text; the proposal's change names it.
func TestProposeEmergencyPatientsPerDay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	_, e := registrarEnv(t, "emr-review-limit")
	var params struct {
		PerDay *uint32 `json:"emergency_patients_per_day"`
	}
	e.json(&params, "params")
	if params.PerDay == nil || *params.PerDay != 20 {
		t.Fatalf("a new chain's emergency_patients_per_day: %v, want 20", params.PerDay)
	}
	if out := e.ok("params"); !strings.Contains(out, "emergency patients per day") || !strings.Contains(out, "20") {
		t.Fatalf("params text:\n%s", out)
	}
	e.fails(2, "emergency_patients_per_day is 1001, more than 1000", "propose", "params", "--from", "registrar", "--emergency-patients-per-day", "1001", "--reason", "too many")
	var decided struct {
		Proposal struct {
			Status string `json:"status"`
			Change string `json:"change"`
		} `json:"proposal"`
	}
	e.json(&decided, "propose", "params", "--from", "registrar", "--emergency-patients-per-day", "0", "--reason", "no limit")
	if p := decided.Proposal; p.Status != "executed" || !strings.Contains(p.Change, "emergency patients per day no limit (was 20)") {
		t.Fatalf("propose params --emergency-patients-per-day 0: %+v", p)
	}
	e.json(&params, "params")
	if params.PerDay == nil || *params.PerDay != 0 {
		t.Fatalf("emergency_patients_per_day after the change: %v, want 0", params.PerDay)
	}
	if out := e.ok("params"); !strings.Contains(out, "no limit") {
		t.Fatalf("params text after the change:\n%s", out)
	}
	e.fails(2, "would not change", "propose", "params", "--from", "registrar", "--emergency-patients-per-day", "0", "--reason", "again")
}
