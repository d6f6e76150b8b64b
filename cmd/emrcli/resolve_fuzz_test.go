package main

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// FuzzDecodeHex: a hex flag is refused, or it is, white space around it
// aside and after at most one 0x or 0X, exactly 2*size hex characters of
// any case, read as the bytes whose hexStr is those characters lowercased;
// hexStr and upperHex (with 0x) of them read back the same.
func FuzzDecodeHex(f *testing.F) {
	addr := strings.Repeat("3f", 20)
	for _, seed := range []struct {
		s    string
		size uint8
	}{
		{addr, 20},
		{"0x" + addr, 20},
		{"0X" + strings.ToUpper(addr), 20},
		{" \t" + addr + "\n", 20},
		{strings.Repeat("ab", 32), 32},
		{"0x0X" + addr, 20},
		{"0x0x" + addr, 20},
		{"0X0x" + addr, 20},
		{"0x", 0},
		{"", 0},
		{addr[:39], 20},
		{addr + "00", 20},
		{addr[:38] + "zz", 20},
		{"0x " + addr, 20},
		{"\u00a0" + addr + "\u0085", 20},
	} {
		f.Add(seed.s, seed.size)
	}
	f.Fuzz(func(t *testing.T, s string, size uint8) {
		n := int(size % 65)
		b, ok := decodeHex(s, n)
		digits := strings.TrimSpace(s)
		if len(digits) >= 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X') {
			digits = digits[2:]
		}
		want := len(digits) == 2*n && strings.Trim(digits, "0123456789abcdefABCDEF") == ""
		if ok != want {
			t.Fatalf("decodeHex(%q, %d) = %x, %v; want ok %v", s, n, b, ok, want)
		}
		if !ok {
			return
		}
		if len(b) != n || hexStr(b) != strings.ToLower(digits) {
			t.Fatalf("decodeHex(%q, %d) = %x", s, n, b)
		}
		for _, back := range []string{hexStr(b), "0x" + upperHex(b)} {
			if b2, ok := decodeHex(back, n); !ok || hexStr(b2) != hexStr(b) {
				t.Fatalf("%x formats as %q, which reads as %x, %v", b, back, b2, ok)
			}
		}
	})
}

// FuzzParseTime: --until and --from-time are refused with the zero time
// and a usage error naming the flag, or read in UTC as the date's
// midnight (which formats back as the date) or as the RFC 3339 time's
// instant, which is a valid protobuf Timestamp (years 1 to 9999 in UTC,
// what a transaction can carry); it reads back from its RFC 3339 form, and
// from ts's to the second.
func FuzzParseTime(f *testing.F) {
	for _, seed := range []string{
		"2027-01-01",
		"2026-12-31T18:00:00Z",
		"2026-12-31T18:00:00.123456789+05:30",
		"2026-12-31T18:00:00-00:00",
		"0000-01-01",
		"0001-01-01T00:00:00Z",
		"0000-01-01T00:00:00+01:00",
		"9999-12-31",
		"9999-12-31T23:59:59-23:59",
		"2026-02-29",
		"2024-02-29",
		"2026-1-1",
		"2026-12-31 18:00:00Z",
		"2026-12-31t18:00:00z",
		"2026-12-31T24:00:00Z",
		"1767225600",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTime("until", s)
		if err != nil {
			if !got.IsZero() || !isUsage(err) || !strings.Contains(err.Error(), "--until") {
				t.Fatalf("parseTime(%q) = %v, %v", s, got, err)
			}
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("parseTime(%q) = %v, not in UTC", s, got)
		}
		if d, derr := time.Parse(time.DateOnly, s); derr == nil {
			if !got.Equal(d) || got.Format(time.DateOnly) != s || got.Truncate(24*time.Hour) != got {
				t.Fatalf("parseTime(%q) = %v, want midnight of that date", s, got)
			}
		} else if r, rerr := time.Parse(time.RFC3339, s); rerr != nil || !got.Equal(r) {
			t.Fatalf("parseTime(%q) = %v; time.Parse: %v, %v", s, got, r, rerr)
		}
		tp := timestamppb.New(got)
		if err := tp.CheckValid(); err != nil {
			t.Fatalf("parseTime(%q) = %v, which no transaction can carry: %v", s, got, err)
		}
		if back, err := parseTime("until", got.Format(time.RFC3339Nano)); err != nil || back != got {
			t.Fatalf("%v formats as %q, which reads as %v, %v", got, got.Format(time.RFC3339Nano), back, err)
		}
		if back, err := parseTime("until", ts(tp)); err != nil || back != got.Truncate(time.Second) {
			t.Fatalf("%v shows as %q, which reads as %v, %v", got, ts(tp), back, err)
		}
	})
}

// FuzzParseRights: --rights is refused with no rights and a usage error,
// or every name in it, trimmed and in any case of its ASCII letters (ſ
// and ı, which upper-case to S and I, name nothing), is read, write or share,
// or emergency alone, read as that right, each right once in the order
// first named, whose rightName reads back the same.
func FuzzParseRights(f *testing.F) {
	for _, seed := range []string{
		"read", "read,write,share", " Read , WRITE", "read,read", "read,", ",", "",
		"unspecified", "RIGHT_READ", "read,delete", "ſhare", "wrıte",
		"emergency", " Emergency ,emergency", "read,emergency", "emergency,share",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		list := strings.Split(s, ",")
		rs, err := parseRights(list)
		if err != nil {
			if rs != nil || !isUsage(err) {
				t.Fatalf("parseRights(%q) = %v, %v", list, rs, err)
			}
			return
		}
		if !isASCII(s) {
			t.Fatalf("parseRights(%q) = %v: a name with a letter that is not ASCII", list, rs)
		}
		// The distinct names, in the order first named.
		var distinct []string
		for _, n := range list {
			if n = strings.ToUpper(strings.TrimSpace(n)); !slices.Contains(distinct, n) {
				distinct = append(distinct, n)
			}
		}
		if len(rs) == 0 || len(rs) != len(distinct) {
			t.Fatalf("parseRights(%q) = %v", list, rs)
		}
		names := make([]string, len(rs))
		for i, r := range rs {
			if r != emrv1.Right_RIGHT_READ && r != emrv1.Right_RIGHT_WRITE && r != emrv1.Right_RIGHT_SHARE &&
				(r != emrv1.Right_RIGHT_EMERGENCY || len(rs) != 1) {
				t.Fatalf("parseRights(%q) = %v", list, rs)
			}
			names[i] = rightName(r)
			if distinct[i] != strings.ToUpper(names[i]) {
				t.Fatalf("%q read as %v", distinct[i], r)
			}
		}
		if back, err := parseRights(names); err != nil || len(back) != len(rs) {
			t.Fatalf("%v names %q, which read as %v, %v", rs, names, back, err)
		} else {
			for i := range back {
				if back[i] != rs[i] {
					t.Fatalf("%v names %q, which read as %v", rs, names, back)
				}
			}
		}
	})
}

// FuzzParseRole: --role is refused with role 0 and a usage error, or it
// names (trimmed, in any case) clinician, researcher, auditor, registrar,
// emergency-service or storage-service (so spelt: not emergency_service),
// never patient,
// read as that role, whose roleName reads back the same.
func FuzzParseRole(f *testing.F) {
	fuzzEnumFlag(f, []string{
		"clinician", "researcher", "auditor", "registrar", " Registrar\t", "patient", "PATIENT",
		"unspecified", "ROLE_CLINICIAN", "", "regıstrar", "2",
		"emergency-service", "Emergency-Service", "emergency_service", "EMERGENCY_SERVICE", "emergency", "-emergency-service",
		"storage-service", "storage_service", "storage",
	}, parseRole, roleName,
		emrv1.Role_ROLE_CLINICIAN, emrv1.Role_ROLE_RESEARCHER, emrv1.Role_ROLE_AUDITOR, emrv1.Role_ROLE_REGISTRAR, emrv1.Role_ROLE_EMERGENCY_SERVICE,
		emrv1.Role_ROLE_STORAGE_SERVICE)
}

// FuzzParsePurpose: --purpose is refused with purpose 0 and a usage
// error, or it names (trimmed, in any case) treatment, research or
// emergency, read as that purpose, whose purposeName reads back the same.
func FuzzParsePurpose(f *testing.F) {
	fuzzEnumFlag(f, []string{
		"treatment", "research", "emergency", " Emergency\n", "unspecified", "PURPOSE_RESEARCH", "", "reſearch", "1",
	}, parsePurpose, purposeName,
		emrv1.Purpose_PURPOSE_TREATMENT, emrv1.Purpose_PURPOSE_RESEARCH, emrv1.Purpose_PURPOSE_EMERGENCY)
}

// FuzzParseEmergencyReason: --reason of a new break-glass read is refused
// with reason 0 and a usage error, or it names (trimmed, in any case)
// patient-incapacitated, immediate-threat or patient-request (so spelt:
// not immediate_threat), read as that reason, whose name reads back the
// same.
func FuzzParseEmergencyReason(f *testing.F) {
	fuzzEnumFlag(f, []string{
		"patient-incapacitated", "immediate-threat", "patient-request", " Immediate-Threat\t", "immediate_threat",
		"IMMEDIATE_THREAT", "EMERGENCY_REASON_IMMEDIATE_THREAT", "unspecified", "", "1", "-patient-request", "ımmediate-threat",
	}, func(s string) (emrv1.EmergencyReason, error) {
		return emergencyReason(s, emrv1.Purpose_PURPOSE_EMERGENCY, false)
	},
		app.EmergencyReasonName,
		emrv1.EmergencyReason_EMERGENCY_REASON_PATIENT_INCAPACITATED, emrv1.EmergencyReason_EMERGENCY_REASON_IMMEDIATE_THREAT,
		emrv1.EmergencyReason_EMERGENCY_REASON_PATIENT_REQUEST)
}

// fuzzEnumFlag fuzzes the parser of a flag naming one value of an enum:
// it refuses with the zero value and a usage error, or it reads one of
// accepted whose name is the flag (trimmed, ASCII, in any case) and reads
// back as the same value.
func fuzzEnumFlag[E ~int32](f *testing.F, seeds []string, parse func(string) (E, error), name func(E) string, accepted ...E) {
	for _, seed := range seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parse(s)
		if err != nil {
			if v != 0 || !isUsage(err) {
				t.Fatalf("parse(%q) = %v, %v", s, v, err)
			}
			return
		}
		if !slices.Contains(accepted, v) || !isASCII(s) {
			t.Fatalf("parse(%q) = %v, not one of %v or not ASCII", s, v, accepted)
		}
		if !strings.EqualFold(strings.TrimSpace(s), name(v)) {
			t.Fatalf("%q read as %v", s, v)
		}
		if back, err := parse(name(v)); err != nil || back != v {
			t.Fatalf("%v names %q, which reads as %v, %v", v, name(v), back, err)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
