package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/client"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// emergency-reads' output: below the limit how many more patients may be
// read; at it (and above a lowered one) when another may be, the time the
// oldest counting read stops counting (block times have fractions of a
// second: both are named in whole seconds, rounded up); without a limit
// that there is none; for a member who may not break the glass at all,
// why, and nothing left.
func TestEmergencyReadsOutput(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 250_000_000, time.UTC)
	read := func(id byte, at time.Time) *emrv1.EmergencyRead {
		return &emrv1.EmergencyRead{PatientId: bytes.Repeat([]byte{id}, 32), Time: timestamppb.New(at)}
	}
	counted := []*emrv1.EmergencyRead{read(1, t0), read(2, t0.Add(time.Hour))}
	info := &client.QueryInfo{Height: 7, Time: t0.Add(2 * time.Hour), Verified: true}
	clinician := &emrv1.Member{Address: []byte{0xab}, Role: emrv1.Role_ROLE_CLINICIAN, Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE}
	suspended := &emrv1.Member{Address: []byte{0xab}, Role: emrv1.Role_ROLE_CLINICIAN, Status: emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED}
	patient := &emrv1.Member{Address: []byte{0xab}, Role: emrv1.Role_ROLE_PATIENT, Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE}
	for _, tc := range []struct {
		name     string
		member   *emrv1.Member
		limit    uint32
		left     int // -1: absent
		nextAt   string
		wantText []string
	}{
		{"below the limit", clinician, 3, 1, "", []string{
			"patients read in emergencies that count at 2026-11-24T10:00:00Z: 2 (limit 3); 1 more may be read",
			strings.Repeat("01", 32) + "  2026-11-24T08:00:00Z  2026-11-25T08:00:01Z",
			strings.Repeat("02", 32) + "  2026-11-24T09:00:00Z  2026-11-25T09:00:01Z"}},
		// The oldest read counts until the time another patient may be read.
		{"at the limit", clinician, 2, 0, "2026-11-25T08:00:01Z", []string{": 2 (limit 2); those may be read again, another from 2026-11-25T08:00:01Z",
			"2026-11-25T08:00:01Z"}},
		// The limit lowered below the count: the read at len-limit frees it.
		{"above the limit", clinician, 1, 0, "2026-11-25T09:00:01Z", []string{": 2 (limit 1); those may be read again, another from 2026-11-25T09:00:01Z"}},
		{"no limit", clinician, 0, -1, "", []string{"no limit on patients read in emergencies"}},
		{"a suspended clinician", suspended, 3, 0, "", []string{"clinician AB is suspended and can sign nothing", ": 2 (limit 3)"}},
		{"a patient", patient, 3, 0, "", []string{"member AB's role is patient: only a clinician reads in emergencies"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &client.EmergencyAllowance{Limit: tc.limit, At: info.Time, Member: tc.member}
			if tc.limit != 0 {
				a.Counted = counted
			}
			v := viewEmergencyAllowance([]byte{0xab}, a, info)
			if (v.Left == nil) != (tc.left < 0) || (v.Left != nil && *v.Left != tc.left) || v.NextAt != tc.nextAt {
				t.Fatalf("left %v, next at %q; want %d, %q", v.Left, v.NextAt, tc.left, tc.nextAt)
			}
			var out strings.Builder
			v.text(&out)
			for _, want := range tc.wantText {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("text lacks %q:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "may be read") == (v.Barred != "" || tc.limit == 0) {
				t.Fatalf("says what may be read where it should not, or not where it should:\n%s", out.String())
			}
		})
	}
}
