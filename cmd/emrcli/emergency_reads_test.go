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

// emergency-reads' output at the limit names when another patient may be
// read (the oldest counting read a day old, in whole seconds rounded up),
// and says so when there is no limit.
func TestEmergencyReadsOutput(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 250_000_000, time.UTC)
	read := func(id byte, at time.Time) *emrv1.EmergencyRead {
		return &emrv1.EmergencyRead{PatientId: bytes.Repeat([]byte{id}, 32), Time: timestamppb.New(at)}
	}
	counted := []*emrv1.EmergencyRead{read(1, t0), read(2, t0.Add(time.Hour))}
	info := &client.QueryInfo{Height: 7, Time: t0.Add(2 * time.Hour), Verified: true}
	for _, tc := range []struct {
		name     string
		limit    uint32
		left     int // -1: absent
		nextAt   string
		wantText []string
	}{
		{"below the limit", 3, 1, "", []string{"2 of 3 patients read in emergencies count at 2026-11-24T10:00:00Z: 1 more may be read",
			strings.Repeat("01", 32), "2026-11-25T09:00:00Z"}},
		{"at the limit", 2, 0, "2026-11-25T08:00:01Z", []string{"2 of 2 patients", "those may be read again, another from 2026-11-25T08:00:01Z"}},
		// The limit lowered below the count: the read at len-limit frees it.
		{"above the limit", 1, 0, "2026-11-25T09:00:01Z", []string{"2 of 1 patients", "another from 2026-11-25T09:00:01Z"}},
		{"no limit", 0, -1, "", []string{"no limit on patients read in emergencies"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &client.EmergencyAllowance{Limit: tc.limit, At: info.Time}
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
		})
	}
}
