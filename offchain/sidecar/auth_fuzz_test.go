package sidecar

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseTimestamp: a timestamp header is refused with the zero time, or
// read as Unix milliseconds exactly when it is plain digits (no sign)
// within int64, and then as that very millisecond, or else as RFC 3339
// whose own formatting reads back as the same instant. Whatever it reads, the skew check (withinSkew)
// cannot wrap a far-off time into the window.
func FuzzParseTimestamp(f *testing.F) {
	for _, seed := range []string{
		"2024-05-01T12:00:00Z",
		"2024-05-01T12:00:00.123456789Z",
		"2024-05-01T12:00:00.1234567891234Z",
		"2024-05-01T12:00:00+14:00",
		"2024-05-01T12:00:00-23:59",
		"2024-05-01t12:00:00z",
		"2024-05-01 12:00:00Z",
		"2024-05-01T12:00:60Z",
		"0000-01-01T00:00:00+01:00",
		"9999-12-31T23:59:59.999999999-23:59",
		"1714564800000",
		"+1714564800000",
		"-1",
		"0",
		"0001714564800000",
		"9223372036854775807",
		"-9223372036854775808",
		"9223372036854775808",
		"1714564800000.5",
		"1e12",
		"",
		" 1714564800000",
	} {
		f.Add(seed)
	}
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	const skew = 5 * time.Minute
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := parseTimestamp(s)
		if err != nil {
			if !ts.IsZero() {
				t.Fatalf("%q refused (%v) but read as %v", s, err, ts)
			}
			if _, ok := unixMillis(s); ok {
				t.Fatalf("decimal %q refused: %v", s, err)
			}
			if _, perr := time.Parse(time.RFC3339Nano, s); perr == nil {
				t.Fatalf("RFC 3339 %q refused: %v", s, err)
			}
			return
		}
		if ms, ok := unixMillis(s); ok {
			if ts.UnixMilli() != ms || ts.Nanosecond()%int(time.Millisecond) != 0 {
				t.Fatalf("%q read as %v (%d ms)", s, ts, ts.UnixMilli())
			}
		} else {
			back, perr := time.Parse(time.RFC3339Nano, ts.Format(time.RFC3339Nano))
			if perr != nil || !back.Equal(ts) {
				t.Fatalf("%q read as %v, which formats as %q and reads back as %v (%v)", s, ts, ts.Format(time.RFC3339Nano), back, perr)
			}
			// The form SignRequest sends reads back as the same instant.
			utc := ts.UTC().Format(time.RFC3339Nano)
			if again, err := parseTimestamp(utc); ts.UTC().Year() >= 0 && ts.UTC().Year() <= 9999 && (err != nil || !again.Equal(ts)) {
				t.Fatalf("%q read as %v; its UTC form %q reads as %v (%v)", s, ts, utc, again, err)
			}
		}
		// authenticateSigned's window test: inside it only if truly near.
		_, inside := withinSkew(now, ts, skew)
		near := !ts.Before(now.Add(-skew)) && !ts.After(now.Add(skew))
		if inside != near {
			t.Fatalf("%q (%v): the skew check says inside=%v, the instant is near=%v", s, ts, inside, near)
		}
	})
}

// unixMillis is the test's reading of the milliseconds form: a non-empty
// run of ASCII digits that strconv reads as an int64.
func unixMillis(s string) (int64, bool) {
	if strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// FuzzParseSigned: the signature headers of a request are refused with no
// value, or read as a 20-byte address, a 32-byte body sum and a 64-byte
// signature that are the headers' hex and base64, a timestamp that is
// parseTimestamp's, and a signed message that is SigningString of the
// request's method, URI and headers verbatim. Well-formed headers are
// never refused.
func FuzzParseSigned(f *testing.F) {
	addr := strings.Repeat("ab", 20)
	sig := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 64))
	pid := strings.Repeat("cd", 32)
	for _, s := range [][7]string{
		{"/v1/blobs/" + emptySHA256 + "?record=" + pid + "/1", addr, "2024-05-01T12:00:00.5Z", emptySHA256, sig, "", ""},
		{"/v1/blobs/" + emptySHA256, strings.ToUpper(addr), "1714564800000", strings.ToUpper(emptySHA256), sig, pid, "lab-results"},
		{"/v1/blobs/x", addr[2:], "1714564800000", emptySHA256, sig, "", ""},
		{"/v1/blobs/x", addr + "00", "1714564800000", emptySHA256, sig, "", ""},
		{"/v1/blobs/x", "zz" + addr[2:], "1714564800000", emptySHA256, sig, "", ""},
		{"/v1/blobs/x", addr, "yesterday", emptySHA256, sig, "", ""},
		{"/v1/blobs/x", addr, "1714564800000", emptySHA256[1:], sig, "", ""},
		{"/v1/blobs/x", addr, "1714564800000", emptySHA256, sig[:len(sig)-4], "", ""},
		{"/v1/blobs/x", addr, "1714564800000", emptySHA256, strings.TrimRight(sig, "="), "", ""},
		{"/v1/blobs/x", addr, "1714564800000", emptySHA256, sig[:len(sig)-3] + "B==", "", ""},
		{"/v1/blobs/x", addr, "1714564800000", emptySHA256, base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 64)), "", ""},
		{"/v1/blobs/x", "", "", "", "", "", ""},
		{"/", addr, "1714564800000", emptySHA256, sig, "a\nb", "c"},
	} {
		f.Add(http.MethodGet, s[0], s[1], s[2], s[3], s[4], s[5], s[6])
	}
	f.Fuzz(func(t *testing.T, method, uri, addrHex, tsText, bodyHex, sigText, patient, category string) {
		u, err := url.ParseRequestURI(uri)
		if err != nil {
			return
		}
		r := &http.Request{Method: method, URL: u, Header: http.Header{}}
		for name, v := range map[string]string{
			HeaderAddress: addrHex, HeaderTimestamp: tsText, HeaderBodySHA256: bodyHex,
			HeaderSignature: sigText, HeaderPatient: patient, HeaderCategory: category,
		} {
			if v != "" {
				r.Header.Set(name, v)
			}
		}
		sr, err := parseSigned(r)

		addrB, aerr := hex.DecodeString(addrHex)
		ts, terr := parseTimestamp(tsText)
		bodyB, berr := hex.DecodeString(bodyHex)
		sigB, serr := base64.StdEncoding.DecodeString(sigText)
		wellFormed := aerr == nil && len(addrB) == 20 && terr == nil &&
			berr == nil && len(bodyB) == 32 && serr == nil && len(sigB) == 64
		if err != nil {
			if sr != nil {
				t.Fatalf("refused (%v) but returned %+v", err, sr)
			}
			if wellFormed {
				t.Fatalf("well-formed headers refused: %v", err)
			}
			return
		}
		if !wellFormed {
			t.Fatalf("accepted malformed headers %q %q %q %q", addrHex, tsText, bodyHex, sigText)
		}
		if !bytes.Equal(sr.address, addrB) || !strings.EqualFold(hex.EncodeToString(sr.address), addrHex) {
			t.Fatalf("address %q read as %x", addrHex, sr.address)
		}
		if !bytes.Equal(sr.bodySum[:], bodyB) || !strings.EqualFold(hex.EncodeToString(sr.bodySum[:]), bodyHex) {
			t.Fatalf("body sum %q read as %x", bodyHex, sr.bodySum)
		}
		if !bytes.Equal(sr.signature, sigB) {
			t.Fatalf("signature %q read as %x", sigText, sr.signature)
		}
		if !sr.timestamp.Equal(ts) {
			t.Fatalf("timestamp %q read as %v, parseTimestamp says %v", tsText, sr.timestamp, ts)
		}
		want := SigningString(method, u.RequestURI(), addrHex, tsText, bodyHex, r.Header.Get(HeaderPatient), r.Header.Get(HeaderCategory))
		if !bytes.Equal(sr.message, want) {
			t.Fatalf("signed message %q, want %q", sr.message, want)
		}
		if !bytes.HasPrefix(sr.message, []byte(signDomain+"\n")) {
			t.Fatalf("signed message %q lacks the domain tag", sr.message)
		}
		// The replay key does not depend on how the signature is encoded.
		alt := *sr
		alt.signature = append([]byte(nil), sr.signature...)
		alt.signature[0] ^= 1
		if alt.replayKey() != sr.replayKey() {
			t.Fatal("the replay key depends on the signature bytes")
		}
	})
}
