package app_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// params.emergency_patients_per_day: how many patients one clinician may
// read in emergencies within 24 hours of block time.

func TestAdmitEmergencyRead(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	read := func(patient string, d time.Duration) *emrv1.EmergencyRead {
		return &emrv1.EmergencyRead{PatientId: []byte(patient), Time: timestamppb.New(at(d))}
	}
	day := app.EmergencyCountWindow
	for _, tc := range []struct {
		name    string
		reads   []*emrv1.EmergencyRead
		patient string
		now     time.Duration
		limit   uint32
		want    []string // patient@time since t0 of the reads counted after it; nil with wantErr
		changed bool
		wantErr string // the time the refusal names, as formatted
	}{
		{name: "the first", patient: "p1", limit: 2, want: []string{"p1@0s"}, changed: true},
		{name: "a second", reads: []*emrv1.EmergencyRead{read("p1", 0)}, patient: "p2", now: time.Hour, limit: 2, want: []string{"p1@0s", "p2@1h0m0s"}, changed: true},
		{name: "a patient already read does not count again", reads: []*emrv1.EmergencyRead{read("p1", 0), read("p2", time.Hour)}, patient: "p1", now: 2 * time.Hour, limit: 2, want: []string{"p1@0s", "p2@1h0m0s"}},
		{name: "a third is refused until the first is a day old", reads: []*emrv1.EmergencyRead{read("p1", 0), read("p2", time.Hour)}, patient: "p3", now: day - time.Nanosecond, limit: 2, wantErr: "another from " + at(day).Format(time.RFC3339)},
		{name: "a day after the first, it no longer counts", reads: []*emrv1.EmergencyRead{read("p1", 0), read("p2", time.Hour)}, patient: "p3", now: day, limit: 2, want: []string{"p2@1h0m0s", "p3@24h0m0s"}, changed: true},
		{name: "a patient read a day ago counts again", reads: []*emrv1.EmergencyRead{read("p1", 0), read("p2", time.Hour)}, patient: "p1", now: day, limit: 2, want: []string{"p2@1h0m0s", "p1@24h0m0s"}, changed: true},
		{name: "expired reads are dropped on a read again", reads: []*emrv1.EmergencyRead{read("p1", 0), read("p2", time.Hour)}, patient: "p2", now: day + time.Minute, limit: 2, want: []string{"p2@1h0m0s"}, changed: true},
		{name: "all expired", reads: []*emrv1.EmergencyRead{read("p1", 0), read("p2", time.Hour)}, patient: "p3", now: 3 * day, limit: 1, want: []string{"p3@72h0m0s"}, changed: true},
		{name: "a lowered limit frees a place when enough reads expired", reads: []*emrv1.EmergencyRead{read("p1", 0), read("p2", time.Hour), read("p3", 2*time.Hour), read("p4", 3*time.Hour)}, patient: "p5", now: 4 * time.Hour, limit: 2, wantErr: "another from " + at(day+2*time.Hour).Format(time.RFC3339)},
		{name: "a lowered limit still lets the patients read be read", reads: []*emrv1.EmergencyRead{read("p1", 0), read("p2", time.Hour), read("p3", 2*time.Hour)}, patient: "p1", now: 4 * time.Hour, limit: 1, want: []string{"p1@0s", "p2@1h0m0s", "p3@2h0m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(tc.reads)
			next, changed, err := app.AdmitEmergencyReadForTest(tc.reads, []byte(tc.patient), at(tc.now), tc.limit)
			if fmt.Sprint(tc.reads) != before {
				t.Fatalf("the reads given were changed: %s, were %s", fmt.Sprint(tc.reads), before)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || app.CodeOf(err) != app.ErrEmergencyLimit.Code() {
					t.Fatalf("got %v (next %v), want ErrEmergencyLimit naming %q", err, next, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range next {
				got = append(got, fmt.Sprintf("%s@%s", r.PatientId, r.Time.AsTime().Sub(t0)))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || changed != tc.changed {
				t.Fatalf("counted %v (changed %v), want %v (changed %v)", got, changed, tc.want, tc.changed)
			}
		})
	}
}

func TestBreakGlassDailyLimit(t *testing.T) {
	w, read, ids := limitWorld(t, 2, 3)
	c := w.c
	other := w.member("limit-doc-a2", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)

	first := c.Now
	c.Must(w.doc, read(ids[0]))
	c.Must(w.doc, read(ids[1]))
	c.Must(w.doc, read(ids[0])) // read again: counts once
	refusal := []string{"2 patients read in emergencies in the last 24 hours", "params.emergency_patients_per_day is 2",
		"another from " + first.Add(24*time.Hour).UTC().Format(time.RFC3339), fmt.Sprintf("clinician %X", w.doc.Address)}
	// CheckTx, at the last block's time, refuses it as the block does.
	ruleCheck(t, "a third patient, checked", c.App.CheckTx(c.Tx(w.doc, read(ids[2])), false), app.ErrEmergencyLimit, refusal...)
	ruleCheck(t, "a third patient", c.Exec(w.doc, read(ids[2])), app.ErrEmergencyLimit, refusal...)
	// The query shows the count the refusal names, and when it frees.
	var kept emrv1.QueryEmergencyReadsResponse
	c.QueryProven("EmergencyReads", &emrv1.QueryEmergencyReadsRequest{Address: hex.EncodeToString(w.doc.Address)}, &kept)
	if len(kept.Reads) != 2 || !bytes.Equal(kept.Reads[0].PatientId, ids[0]) || !bytes.Equal(kept.Reads[1].PatientId, ids[1]) ||
		kept.PatientsPerDay != 2 || !bytes.Equal(kept.Member.GetAddress(), w.doc.Address) || len(kept.Proofs) == 0 {
		t.Fatalf("EmergencyReads after two patients read with a limit of 2: %v", &kept)
	}
	if frees := app.EmergencyLimitFrees(kept.Reads, kept.PatientsPerDay); !frees.Equal(first.Add(24 * time.Hour)) {
		t.Fatalf("EmergencyLimitFrees: %s, the refusal names %s", frees, first.Add(24*time.Hour))
	}
	if n := len(app.CountingEmergencyReads(kept.Reads, first.Add(24*time.Hour))); n != 1 {
		t.Fatalf("a day after the first read %d reads count, want 1", n)
	}
	if err := c.TryQuery("EmergencyReads", &emrv1.QueryEmergencyReadsRequest{Address: hex.EncodeToString(bytes.Repeat([]byte{7}, app.AddressSize))}, &kept); app.CodeOf(err) != app.ErrNotFound.Code() {
		t.Fatalf("EmergencyReads of no member: %v, want ErrNotFound", err)
	}
	c.Must(other, read(ids[2])) // the limit is each clinician's

	// A day after the first read it no longer counts: the third patient
	// may be read, and then the first counts anew, refused (in the same
	// block: the second patient's read still counts).
	c.Now = first.Add(24 * time.Hour)
	res := c.Block(ruleSigned(c, w.doc, read(ids[2]), read(ids[0]))...)
	ruleCheck(t, "the third patient a day after the first", res[0], nil)
	ruleCheck(t, "the first patient again, with two others read within the day", res[1], app.ErrEmergencyLimit, "2 patients read")
	// A treatment read under a consent is not an emergency read: not counted, not limited.
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, NotAfter: w.year}))
	c.Must(w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
}

func TestBreakGlassWithoutADailyLimit(t *testing.T) {
	w, read, ids := limitWorld(t, 0, 3)
	c := w.c
	for _, id := range ids {
		c.Must(w.doc, read(id)) // the third would be refused with a limit of 2
	}
	// Nothing is kept while there is no limit: a chain from before the
	// param (field 13 absent, read as 0) replays as it did.
	r, err := c.Store.ReaderAt(c.Height())
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.Get(app.EmergencyReadsKeyForTest(w.doc.Address)); err != nil || v != nil {
		t.Fatalf("without a limit the clinician's emergency reads were kept: %x, %v", v, err)
	}
}

// A read at the time a refusal names is admitted: block times have
// fractions of a second, and the time is named in whole seconds, rounded
// up.
func TestBreakGlassLimitNamesATimeTheReadIsPossible(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 537_000_000, time.UTC)
	reads := []*emrv1.EmergencyRead{{PatientId: []byte("p1"), Time: timestamppb.New(t0)}}
	_, _, err := app.AdmitEmergencyReadForTest(reads, []byte("p2"), t0.Add(time.Hour), 1)
	if app.CodeOf(err) != app.ErrEmergencyLimit.Code() || !strings.Contains(err.Error(), "1 patient read in emergencies") {
		t.Fatalf("a second patient with a limit of 1: %v, want ErrEmergencyLimit", err)
	}
	m := regexp.MustCompile(`another from (\S+)`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("the refusal names no time: %v", err)
	}
	named, err := time.Parse(time.RFC3339, m[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := app.AdmitEmergencyReadForTest(reads, []byte("p2"), named, 1); err != nil {
		t.Fatalf("the refusal named %s (the read counting is at %s), and a read then is refused: %v", m[1], t0.Format(time.RFC3339Nano), err)
	}
	if _, _, err := app.AdmitEmergencyReadForTest(reads, []byte("p2"), named.Add(-time.Second), 1); err == nil {
		t.Fatalf("a read a second before the time named (%s) is admitted: the time named is late", m[1])
	}
}

// limitWorld is a ruleWorld whose genesis limit is limit, with an
// emergency service of hospital-a and n patients opted in to it, each with
// one record (lab results); the first is w.pat. read is w.doc's emergency
// read of a patient's record through the service.
func limitWorld(t *testing.T, limit uint32, n int) (w *ruleWorld, read func(id []byte) *emrv1.Msg, ids [][]byte) {
	g := apptest.Consortium()
	g.Params.EmergencyPatientsPerDay = limit
	w = newRuleWorld(t, apptest.Options{Genesis: g})
	service := w.member("limit-world-service", emrv1.Role_ROLE_EMERGENCY_SERVICE, apptest.HospitalA)
	optIn := apptest.GrantSpec{Rights: []emrv1.Right{rEmergency}, NotAfter: w.year}
	w.records(ruleLab)
	w.c.Must(w.pat, apptest.Grant(w.pid, service, optIn))
	ids = [][]byte{w.pid}
	for i := 1; i < n; i++ {
		pat, id := w.patient(fmt.Sprintf("limit-world-patient-%d", i))
		w.c.Must(pat, apptest.AddRecord(id, ruleLab, "limit-world-rec"))
		w.c.Must(pat, apptest.Grant(id, service, optIn))
		ids = append(ids, id)
	}
	return w, func(id []byte) *emrv1.Msg { return apptest.EmergencyAccess(id, service, 1) }, ids
}

// setLimit executes a params proposal setting emergency_patients_per_day.
func setLimit(t *testing.T, w *ruleWorld, n uint32) {
	t.Helper()
	current, changes := paramsAndChanges(w.c)
	next := proto.Clone(current).(*emrv1.Params)
	next.EmergencyPatientsPerDay = n
	executeByAll(t, w, apptest.SetParams(next, changes))
	if got := w.c.App.Params().GetEmergencyPatientsPerDay(); got != n {
		t.Fatalf("params.emergency_patients_per_day is %d after the proposal, want %d", got, n)
	}
}

// The one edge where CheckTx admits what the block refuses (documented at
// countEmergencyRead): the limit lowered below the patients counted, and
// the re-read patient's counting read turning 24 hours old between the
// last block and the next. The proposer leaves the read out.
func TestBreakGlassLimitLoweredAtTheWindowsEdge(t *testing.T) {
	w, read, ids := limitWorld(t, 3, 3)
	c := w.c
	first := c.Now
	for _, id := range ids {
		c.Must(w.doc, read(id))
	}
	setLimit(t, w, 1)
	ruleCheck(t, "a counted patient read again under the lowered limit", c.Exec(w.doc, read(ids[1])), nil)
	c.Now = first.Add(24*time.Hour - time.Second)
	c.Block()
	tx := c.Tx(w.doc, read(ids[0]))
	ruleCheck(t, "CheckTx of the first patient, counted a day less a second ago", c.App.CheckTx(tx, false), nil)
	c.Now = first.Add(24 * time.Hour)
	if selected := c.App.PrepareProposal(app.BlockInfo{Height: c.Height() + 1, Time: c.Now}, [][]byte{tx}, 1<<30); len(selected) != 0 {
		t.Fatalf("the proposer kept a read the block refuses")
	}
	ruleCheck(t, "the same read in the block, a second later", c.Block(tx)[0], app.ErrEmergencyLimit, "2 patients read", "is 1")
}

// Reads counted before the limit went to 0 still count for their 24
// hours once a limit is set again; reads made while it was 0 never count.
func TestBreakGlassLimitSetAgainAfterZero(t *testing.T) {
	w, read, ids := limitWorld(t, 2, 4)
	c := w.c
	c.Must(w.doc, read(ids[0]))
	c.Must(w.doc, read(ids[1])) // at the limit of 2
	setLimit(t, w, 0)
	c.Must(w.doc, read(ids[2])) // not counted
	setLimit(t, w, 2)
	ruleCheck(t, "a new patient once the limit is set again", c.Exec(w.doc, read(ids[3])), app.ErrEmergencyLimit, "2 patients read")
	ruleCheck(t, "the patient read while there was no limit", c.Exec(w.doc, read(ids[2])), app.ErrEmergencyLimit)
	c.Must(w.doc, read(ids[0])) // counted before: read again
}
