package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client/clienttest"
)

// TestEmergencyRead is a break-glass read end to end, through the emrcli
// binary, a real node and its sidecar running the organization's emergency
// service (the sidecar's emergency_key: the service's key in this emrcli
// home's keyring). A registrar registers the emergency service and a
// clinician the patient granted nothing: the clinician's ordinary download
// is refused, and so is a break-glass read before the patient
// opts in. Once the patient grants the service the emergency right over
// prescriptions: the clinician's "download --purpose emergency" writes the
// plaintext (the data key released by the service, sealed to the
// clinician), again with --reuse-access; a record of another category is
// refused (by the client without --via, by the chain with it); the audit
// shows the emergency read and its service. After the patient revokes the
// opt-in, a new emergency read is refused by the chain, and the standing
// one no longer serves. With two opt-ins, a narrow one to the service of
// the lower address and a wide one to another, "read --purpose emergency"
// goes through the service whose opt-in covers all the records it names.
func TestEmergencyRead(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs emrchaind and emrcli")
	}
	start := time.Now()
	e := &cliEnv{t: t, bin: clienttest.Build(t, "github.com/emrchain/emrchain/cmd/emrcli"), home: t.TempDir()}
	e.env = []string{"EMRCLI_HOME=" + e.home, "EMRCLI_KEYRING_BACKEND=test", "EMRCLI_SIDECAR="}
	// The service's key exists before the node: its sidecar loads it.
	e.ok("keys", "add", "er-service")
	node := clienttest.StartNode(t, clienttest.NodeOptions{ChainID: "emr-emergency", Configure: func(home string) error {
		return clienttest.SetConfig(filepath.Join(home, "config", "app.toml"), "sidecar", map[string]string{
			"emergency_key": `"er-service"`, "emergency_keyring_home": strconv.Quote(e.home), "emergency_keyring_backend": `"test"`,
		})
	}})
	e.env = append(e.env, "EMRCLI_NODE="+node.RPC)
	e.ok("light", "init", "--genesis", node.Genesis, "--sidecar", node.SidecarURL)
	t.Logf("node and binaries ready in %s", time.Since(start).Round(time.Millisecond))

	e.ok("keys", "import-dev", node.RegistrarKey)
	register := func(key, role string) string {
		t.Helper()
		if key != "er-service" {
			e.ok("keys", "add", key)
		}
		e.ok("member", "register", "--from", "registrar", "--key", key, "--role", role, "--credential", "LIC-"+key)
		return strings.TrimSpace(e.ok("keys", "show", key, "--address"))
	}
	service := register("er-service", "emergency-service")
	register("dr-er", "clinician")
	if out := e.ok("member", "show", "er-service"); !strings.Contains(out, "emergency-service") {
		t.Fatalf("member show of the emergency service does not say its role:\n%s", out)
	}
	if out := e.ok("params"); !strings.Contains(out, "emergency window") || strings.Contains(out, "not enabled") {
		t.Fatalf("params do not show the emergency window:\n%s", out)
	}

	e.ok("keys", "add", "alice")
	var enroll struct {
		PatientID string `json:"patient_id"`
	}
	e.json(&enroll, "patient", "enroll", "--from", "alice", "--name", "Zebulon Quixotic", "--birth-date", "1961-04-17")
	pid := enroll.PatientID
	dir := t.TempDir()
	upload := func(category string, content []byte) uint64 {
		t.Helper()
		p := filepath.Join(dir, category+".in")
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		var out uploadOut
		e.json(&out, "upload", "--from", "alice", "--category", category, p)
		if out.Record == 0 {
			t.Fatalf("upload of %s: no record", category)
		}
		return out.Record
	}
	prescription := []byte(`{"resourceType":"MedicationRequest","medicationCodeableConcept":{"text":"warfarin 5 mg"}}`)
	labs := randomContent(t, 300_000)
	recRx, recLabs := upload("prescriptions", prescription), upload("lab-results", labs)

	out := func() string { return filepath.Join(t.TempDir(), "record.out") }
	// A new break-glass download says why (immediate-threat); one that
	// reuses a logged read gives no reason.
	emergency := func(record uint64, extra ...string) []string {
		args := []string{"download", "--from", "dr-er", "--patient", pid, "--record", fmt.Sprint(record), "-o", out(), "--purpose", "emergency"}
		if !slices.Contains(extra, "--reuse-access") {
			args = append(args, "--reason", "immediate-threat")
		}
		return append(args, extra...)
	}
	// Without consent, an ordinary read is refused: the clinician holds
	// no envelope of the patient's key (and the chain would refuse it).
	e.fails(1, "no consent", "download", "--from", "dr-er", "--patient", pid, "--record", fmt.Sprint(recRx), "-o", out())
	// So is a break-glass read before the patient opted in: the client
	// finds no opt-in, and with --via the chain refuses.
	e.fails(1, "has not opted in", emergency(recRx)...)
	e.fails(1, "has not opted in", emergency(recRx, "--via", "er-service")...)

	until := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	e.fails(2, "emergency is granted alone", "grant", "--from", "alice", "--to", "er-service", "--rights", "read,emergency", "--until", until)
	e.ok("grant", "--from", "alice", "--to", "er-service", "--rights", "emergency", "--categories", "prescriptions", "--until", until)

	var got struct {
		Record     uint64 `json:"record"`
		Purpose    string `json:"purpose"`
		Service    string `json:"emergency_service"`
		Reason     string `json:"emergency_reason"`
		File       string `json:"file"`
		KeySidecar string `json:"key_sidecar"`
		Access     *struct {
			Height int64 `json:"height"`
		} `json:"access_tx"`
	}
	healthz := func() int {
		t.Helper()
		return metricValue(t, node.SidecarURL, `emrchain_sidecar_requests_total{outcome="ok",route="healthz"}`)
	}
	before := healthz()
	rpc := clienttest.NewProxy(t, node.RPC)
	var mu sync.Mutex
	optInReads := map[string]int{}
	rpc.SetRewrite(func(call clienttest.Call, result json.RawMessage) json.RawMessage {
		for _, method := range []string{"Permission", "Permissions"} {
			if isQueryCall(call, method) {
				mu.Lock()
				optInReads[method]++
				mu.Unlock()
			}
		}
		return result
	})
	e.json(&got, emergency(recRx, "--node", rpc.URL)...)
	// One GET /healthz says both that the sidecar answers and that it runs
	// the service (findEmergencySidecar), not one for each.
	if n := healthz() - before; n != 1 {
		t.Fatalf("the emergency download asked the sidecar's /healthz %d times, want once", n)
	}
	// The opt-in is read once: the verified listing that finds the service
	// holds its key version too, which is not asked for again.
	mu.Lock()
	reads := maps.Clone(optInReads)
	mu.Unlock()
	if reads["Permissions"] != 1 || reads["Permission"] != 0 {
		t.Fatalf("the emergency download read the patient's permissions %d times and one permission %d times; want the listing once and nothing else",
			reads["Permissions"], reads["Permission"])
	}
	if plain, err := os.ReadFile(got.File); err != nil || !bytes.Equal(plain, prescription) {
		t.Fatalf("emergency download wrote %q (%v); want %q", plain, err, prescription)
	}
	if got.Purpose != "emergency" || !strings.EqualFold(got.Service, service) || got.KeySidecar != node.SidecarURL || got.Access == nil ||
		got.Reason != "immediate-threat" {
		t.Fatalf("emergency download said %+v; want purpose emergency through %s, the key from %s, a logged read for an immediate threat", got, service, node.SidecarURL)
	}
	// The text output says it is a break-glass read, and through what.
	text := e.ok(emergency(recRx, "--reuse-access")...)
	if !strings.Contains(text, "emergency read") || !strings.Contains(text, "er-service") {
		t.Fatalf("emergency download (reusing the read) says:\n%s", text)
	}
	// A record of a category the opt-in does not cover: the client finds
	// no opt-in for it; named, the chain refuses.
	e.fails(1, "has not opted in", emergency(recLabs)...)
	line := e.fails(1, "lab-results", emergency(recLabs, "--via", service)...)
	t.Logf("a category the opt-in does not cover: %s", line)
	// Naming a member that is no emergency service: the client refuses
	// before it logs a read (releasesKeys); the chain, which would refuse
	// it too, is not asked.
	line = e.fails(1, "is not an emergency service", emergency(recRx, "--via", "dr-er")...)
	if strings.Contains(line, "emrchain code") || strings.Contains(line, "transaction rejected") {
		t.Fatalf("--via a clinician was refused by the chain, not before the read was sent: %s", line)
	}

	// "read --purpose emergency" logs one too (through the service found).
	if text := e.ok("read", "--from", "dr-er", "--patient", pid, "--record", fmt.Sprint(recRx), "--purpose", "emergency", "--reason", "patient-incapacitated"); !strings.Contains(text, "read logged (emergency, reason patient-incapacitated)") {
		t.Fatalf("read --purpose emergency says:\n%s", text)
	}

	// The audit shows the emergency reads and their service, and nothing
	// of the refused ones.
	var audit struct {
		Reads []auditRow `json:"reads"`
	}
	e.json(&audit, "audit", "--from", "alice")
	emergencies := slices.DeleteFunc(slices.Clone(audit.Reads), func(r auditRow) bool { return r.Purpose != "emergency" })
	if len(emergencies) != 2 || len(audit.Reads) != 2 {
		t.Fatalf("audit lists reads %+v; want the two emergency reads of record %d, nothing else", audit.Reads, recRx)
	}
	for i, r := range emergencies {
		// Newest first: the read's reason, then the download's.
		reason := []string{"patient-incapacitated", "immediate-threat"}[i]
		if !strings.EqualFold(r.EmergencyService, service) || !slices.Equal(r.Records, []uint64{recRx}) || r.Role != "clinician" ||
			r.EmergencyReason != reason {
			t.Fatalf("audit lists emergency read %+v; want one of record %d by a clinician through %s, for reason %s", r, recRx, service, reason)
		}
	}
	if text := e.ok("audit", "--from", "alice"); !strings.Contains(text, "EMERGENCY (immediate-threat) via "+service+" (er-service)") ||
		!strings.Contains(text, "EMERGENCY (patient-incapacitated) via ") {
		t.Fatalf("audit does not show the emergency read:\n%s", text)
	}
	// The clinician's count: the patient read (twice) counts once against
	// the default limit of 20, for 24 hours from the first read.
	var count struct {
		PerDay  uint32 `json:"emergency_patients_per_day"`
		Left    *int   `json:"left"`
		NextAt  string `json:"next_at"`
		Counted []struct {
			PatientID   string `json:"patient_id"`
			ReadAt      string `json:"read_at"`
			CountsUntil string `json:"counts_until"`
		} `json:"counted"`
		Verified bool `json:"verified"`
	}
	e.json(&count, "emergency-reads", "dr-er")
	if count.PerDay != 20 || count.Left == nil || *count.Left != 19 || count.NextAt != "" || len(count.Counted) != 1 ||
		count.Counted[0].PatientID != pid || !count.Verified {
		t.Fatalf("emergency-reads dr-er: %+v; want patient %s counted, 19 of 20 left, verified", count, pid)
	}
	// Both in whole seconds: the read's truncated, the end rounded up (a
	// block time has a fraction of a second).
	readAt, err1 := time.Parse(time.RFC3339, count.Counted[0].ReadAt)
	ends, err2 := time.Parse(time.RFC3339, count.Counted[0].CountsUntil)
	if err1 != nil || err2 != nil || ends.Sub(readAt) != 24*time.Hour+time.Second {
		t.Fatalf("emergency-reads: read at %s counts until %s (%v, %v), want a day and a second later", count.Counted[0].ReadAt, count.Counted[0].CountsUntil, err1, err2)
	}
	if text := e.ok("emergency-reads", "dr-er"); !strings.Contains(text, "patients read in emergencies that count at") ||
		!strings.Contains(text, ": 1 (limit 20); 19 more may be read") || !strings.Contains(text, pid) {
		t.Fatalf("emergency-reads dr-er says:\n%s", text)
	}
	// The emergency service breaks no glass itself.
	if text := e.ok("emergency-reads", "er-service"); !strings.Contains(text, "role is emergency service: only a clinician reads in emergencies") ||
		strings.Contains(text, "may be read") {
		t.Fatalf("emergency-reads er-service says:\n%s", text)
	}
	e.fails(1, "no member", "emergency-reads", strings.Repeat("AB", 20))

	// The patient revokes the opt-in: a new emergency read is refused by
	// the chain, and the read already logged no longer serves.
	e.ok("revoke", "--from", "alice", "--to", "er-service")
	e.fails(1, "has not opted in", emergency(recRx)...)
	line = e.fails(1, "revoked", emergency(recRx, "--via", "er-service")...)
	t.Logf("after the revocation: %s", line)
	line = e.fails(1, "permission revoked", emergency(recRx, "--reuse-access")...)
	t.Logf("the standing read after the revocation: %s", line)

	// Two opt-ins to the organization: a narrow one (prescriptions alone)
	// to the service of the lower address, a wide one (every category) to
	// the other. A break-glass read that names no service goes through the
	// first, by address, whose opt-in covers every record it names.
	e.ok("keys", "add", "er-two")
	e.ok("member", "register", "--from", "registrar", "--key", "er-two", "--role", "emergency-service", "--credential", "LIC-er-two")
	narrow, wide := "er-service", "er-two"
	narrowAddr, wideAddr := service, strings.TrimSpace(e.ok("keys", "show", "er-two", "--address"))
	if strings.ToUpper(wideAddr) < strings.ToUpper(narrowAddr) {
		narrow, wide, narrowAddr, wideAddr = wide, narrow, wideAddr, narrowAddr
	}
	e.ok("grant", "--from", "alice", "--to", narrow, "--rights", "emergency", "--categories", "prescriptions", "--until", until)
	e.ok("grant", "--from", "alice", "--to", wide, "--rights", "emergency", "--until", until)
	for _, c := range []struct {
		records string
		via     string
	}{
		{fmt.Sprint(recRx), narrowAddr},                  // both cover it: the lower address
		{fmt.Sprint(recLabs), wideAddr},                  // only the wide one covers it
		{fmt.Sprintf("%d,%d", recRx, recLabs), wideAddr}, // only the wide one covers both
	} {
		e.ok("read", "--from", "dr-er", "--patient", pid, "--record", c.records, "--purpose", "emergency", "--reason", "patient-request")
		e.json(&audit, "audit", "--from", "alice")
		last := audit.Reads[0] // newest first
		if !strings.EqualFold(last.EmergencyService, c.via) {
			t.Fatalf("the break-glass read of records %s went through %s; want %s", c.records, last.EmergencyService, c.via)
		}
	}
	testBreakGlassLog(t, e, pid, service, narrowAddr, wideAddr, recRx, recLabs)
}

// testBreakGlassLog: the organization's break-glass log, over both its
// emergency services, lists TestEmergencyRead's five break-glass reads
// (the download and the read through er-service, then the three reads
// through the two services), oldest first, one row per transaction, and
// nothing of the refused ones or of the reuse of a logged read; --service
// keeps one service's, --since a time after them none. A member that is
// no emergency service has no log.
func testBreakGlassLog(t *testing.T, e *cliEnv, pid, service, narrow, wide string, recRx, recLabs uint64) {
	t.Helper()
	type row struct {
		service, reason string
		records         []uint64
	}
	want := []row{
		{service, "immediate-threat", []uint64{recRx}},
		{service, "patient-incapacitated", []uint64{recRx}},
		{narrow, "patient-request", []uint64{recRx}},
		{wide, "patient-request", []uint64{recLabs}},
		{wide, "patient-request", []uint64{recRx, recLabs}},
	}
	check := func(what string, got breakGlassView, want []row) {
		t.Helper()
		if len(got.Reads) != len(want) || !got.Verified {
			t.Fatalf("%s: %d reads (verified %v), want %d: %+v", what, len(got.Reads), got.Verified, len(want), got.Reads)
		}
		for i, r := range got.Reads {
			if !strings.EqualFold(r.Service, want[i].service) || r.Reason != want[i].reason || !slices.Equal(r.Records, want[i].records) ||
				r.PatientID != pid || r.Clinician == "" || len(r.Entries) != len(want[i].records) {
				t.Fatalf("%s: read %d is %+v, want %+v", what, i, r, want[i])
			}
		}
	}
	var all breakGlassView
	e.json(&all, "break-glass-log", "--from", "registrar")
	check("the organization's log", all, want)
	if len(all.Services) != 2 {
		t.Fatalf("the organization's log read %d services, want its two: %v", len(all.Services), all.Services)
	}
	// er-service's first two reads are the wide one's too when it is.
	wideWant := slices.DeleteFunc(slices.Clone(want), func(r row) bool { return !strings.EqualFold(r.service, wide) })
	var one breakGlassView
	e.json(&one, "break-glass-log", "--service", wide)
	check("the wide service's log", one, wideWant)
	text := e.ok("break-glass-log", "--org", all.Organization)
	if !strings.Contains(text, "CLINICIAN") || !strings.Contains(text, "5 break-glass read(s) of 6 record(s) by 1 clinician(s) of 1 patient(s)") ||
		!strings.Contains(text, pid) || !strings.Contains(text, "dr-er") {
		t.Fatalf("break-glass-log --org %s says:\n%s", all.Organization, text)
	}
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format("2006-01-02") // a date is midnight UTC
	if text := e.ok("break-glass-log", "--from", "registrar", "--since", tomorrow); !strings.Contains(text, "no break-glass reads since") {
		t.Fatalf("break-glass-log --since %s says:\n%s", tomorrow, text)
	}
	testBreakGlassFollow(t, e, pid, wide, recLabs, all.Reads[len(all.Reads)-1])
	e.fails(1, "not an emergency service", "break-glass-log", "--service", "dr-er")
	e.fails(2, "give one of --org, --service or --from", "break-glass-log")
	e.fails(2, "give one of --org, --service or --from", "break-glass-log", "--org", all.Organization, "--service", wide)
	e.fails(2, "give --follow too", "break-glass-log", "--org", all.Organization, "--interval", "1s")
	e.fails(2, `--since "last-week": want a date`, "break-glass-log", "--org", all.Organization, "--since", "last-week")
	e.fails(1, "belongs to no organization", "break-glass-log", "--from", "alice")
}

// testBreakGlassFollow: break-glass-log --follow prints the organization's
// break-glass reads so far, then a new one once, as it is committed, and
// exits 0 when interrupted. last is the newest read before.
func testBreakGlassFollow(t *testing.T, e *cliEnv, pid, wide string, recLabs uint64, last breakGlassRow) {
	t.Helper()
	f := e.startFollowing(t, "break-glass-log", "--from", "registrar", "--follow", "--interval", "200ms", "--json")
	var line struct {
		Organization string `json:"organization"`
		breakGlassRow
		Verified bool `json:"verified"`
	}
	for i := range 5 {
		f.next(&line, fmt.Sprintf("the break-glass read %d logged before", i+1))
	}
	if line.TxHash != last.TxHash || !line.Verified || line.Organization == "" {
		t.Fatalf("break-glass-log --follow: the last read logged before is %+v, want %+v", line, last)
	}
	e.ok("read", "--from", "dr-er", "--patient", pid, "--record", fmt.Sprint(recLabs), "--purpose", "emergency", "--reason", "immediate-threat")
	f.next(&line, "the break-glass read logged while it follows")
	if !strings.EqualFold(line.Service, wide) || line.Reason != "immediate-threat" || !slices.Equal(line.Records, []uint64{recLabs}) ||
		line.Height <= last.Height || !line.Verified {
		t.Fatalf("break-glass-log --follow, a new read: %+v after %+v", line, last)
	}
	f.nothingMore(time.Second)
	if stderr := f.interrupt(); !strings.Contains(stderr, "following the break-glass logs of organization ") {
		t.Fatalf("break-glass-log --follow does not say what it follows: %s", stderr)
	}
}

// metricValue reads the value of the sample named series (name and
// labels, as /metrics writes them) from the sidecar at url; 0 when absent.
func metricValue(t *testing.T, url, series string) int {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return n
		}
	}
	return 0
}
