package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzParseContentRange: a peer's Content-Range is refused with no range,
// or read as the first and last byte its "bytes first-last/" part names:
// formatting them back reads the same, and for canonical decimals gives
// that part verbatim.
func FuzzParseContentRange(f *testing.F) {
	for _, seed := range []string{
		"bytes 0-9/100",
		"bytes 90-99/100",
		"bytes 0-0/1",
		"bytes 0-9/*",
		"bytes 5-3/100",
		"bytes 0--3/100",
		"bytes -1-3/100",
		"bytes +1-+3/100",
		"bytes 007-9/100",
		"bytes 5-x/100",
		"bytes x-5/100",
		"bytes 0-9223372036854775807/x",
		"bytes 0-9223372036854775808/x",
		"bytes */100",
		"bytes 0-9",
		"bytes=0-9/100",
		"Bytes 0-9/100",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, ok := parseContentRange(s)
		if !ok {
			if first != 0 || last != 0 {
				t.Fatalf("%q refused but read as %d-%d", s, first, last)
			}
			return
		}
		spec, found := strings.CutPrefix(s, "bytes ")
		spec, _, slash := strings.Cut(spec, "/")
		if !found || !slash {
			t.Fatalf("%q accepted as %d-%d without \"bytes \" and \"/\"", s, first, last)
		}
		canon := fmt.Sprintf("%d-%d", first, last)
		if f2, l2, ok2 := parseContentRange("bytes " + canon + "/*"); !ok2 || f2 != first || l2 != last {
			t.Fatalf("%q read as %d-%d, which reads back as %d-%d %v", s, first, last, f2, l2, ok2)
		}
		if isCanonicalDecimal(strings.Split(spec, "-")...) && spec != canon {
			t.Fatalf("%q read as %s", s, canon)
		}
	})
}

// isCanonicalDecimal reports whether each of ss is a decimal without sign
// or leading zeros.
func isCanonicalDecimal(ss ...string) bool {
	for _, s := range ss {
		if s == "" || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
			return false
		}
	}
	return true
}

// readCounter counts the bytes read through it.
type readCounter struct {
	r io.Reader
	n int
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestReadErrorReadsAtMost64KiB: an error answer that never ends (a JSON
// error followed by spaces without end) is read to 64 KiB, no further,
// and its reason is still the JSON's.
func TestReadErrorReadsAtMost64KiB(t *testing.T) {
	cr := &readCounter{r: io.MultiReader(strings.NewReader(`{"error":"too many","code":"signer_quota"}`), endlessSpaces{})}
	err := readError(&http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}, Body: io.NopCloser(cr)})
	var e *Error
	if !errors.As(err, &e) || e.Code != "signer_quota" || e.Reason != "too many" {
		t.Fatalf("read as %#v", err)
	}
	if cr.n > 1<<16 {
		t.Fatalf("read %d bytes of the body", cr.n)
	}
}

// endlessSpaces reads as spaces without end.
type endlessSpaces struct{}

func (endlessSpaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// FuzzReadError: any answer of a peer reads as an *Error with its status, a
// Retry-After of whole non-negative seconds (the header's, when it is a
// decimal that fits 32 bits), and either the code and reason of a JSON
// error body or, failing that, no code and the trimmed body as the reason
// (cleaned and bounded; TestReadErrorReadsAtMost64KiB bounds the read).
// What this package's server writes as an error reads back as the same
// status, code, reason and Retry-After.
func FuzzReadError(f *testing.F) {
	for _, seed := range []struct {
		status     int
		retryAfter string
		body       string
		code       string
		reason     string
		retry      uint32
	}{
		{401, "", `{"error":"bad signature","code":"unauthenticated"}`, "unauthenticated", "bad signature", 0},
		{429, "7", `{"error":"too many","code":"signer_quota"}` + "\n", "signer_quota", "too many", 7},
		{429, " 4294967295 ", `{"error":"x"}`, "c", "x", math.MaxUint32},
		{429, "4294967296", "", "", "", 1},
		{429, "-1", "", "c", "<&>", 0},
		{503, "Wed, 21 Oct 2015 07:28:00 GMT", "  upstream down \n", "c", "\xff", 0},
		{500, "+5", `{"error":"x","code":1}`, "", "r", 0},
		{404, "", `{"error":""}`, "not_found", "", 0},
		{404, "", `{"error":"a"} trailing`, "x", "a\nb", 0},
		{404, "", `null`, "x", "y", 0},
		{0, "", "", "", "", 0},
		{-1, "", "\x00", "", "", 0},
	} {
		f.Add(seed.status, seed.retryAfter, []byte(seed.body), seed.code, seed.reason, seed.retry)
	}
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, code, reason string, retry uint32) {
		// Any answer.
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		err := readError(&http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body))})
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != status {
			t.Fatalf("status %d read as %#v", status, err)
		}
		_ = e.Error()
		var want time.Duration
		if v, perr := strconv.ParseUint(strings.TrimSpace(retryAfter), 10, 64); perr == nil && v <= math.MaxUint32 {
			want = time.Duration(v) * time.Second
		}
		if e.RetryAfter != want {
			t.Fatalf("Retry-After %q read as %v, want %v", retryAfter, e.RetryAfter, want)
		}
		raw := body[:min(len(body), 1<<16)]
		var eb ErrorBody
		if json.Unmarshal(raw, &eb) == nil && eb.Error != "" {
			if e.Code != cleanText(eb.Code, maxErrorCode) || e.Reason != cleanText(eb.Error, maxErrorReason) {
				t.Fatalf("JSON %q read as code %q reason %q", raw, e.Code, e.Reason)
			}
		} else if e.Code != "" || e.Reason != cleanText(strings.TrimSpace(string(raw)), maxErrorReason) {
			t.Fatalf("non-JSON %q read as code %q reason %q", body, e.Code, e.Reason)
		}
		// Whatever the answer, what is kept prints safely and is bounded.
		for _, kept := range []struct {
			s     string
			limit int
		}{{e.Code, maxErrorCode}, {e.Reason, maxErrorReason}} {
			if len(kept.s) > kept.limit || !utf8.ValidString(kept.s) || strings.IndexFunc(kept.s, func(r rune) bool {
				return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
			}) >= 0 {
				t.Fatalf("kept %q (%d bytes, limit %d): not clean", kept.s, len(kept.s), kept.limit)
			}
		}

		// The server's error answers.
		ae := &apiError{status: 400 + int(uint(status)%200), code: code, reason: reason, retryAfter: time.Duration(retry) * time.Second}
		rec := httptest.NewRecorder()
		writeError(rec, ae)
		resp := rec.Result()
		if !errors.As(readError(resp), &e) || e.StatusCode != ae.status || e.RetryAfter != ae.retryAfter {
			t.Fatalf("%+v read back as %+v", ae, e)
		}
		// A reason and code that are already clean read back unchanged.
		if reason != "" && cleanText(reason, maxErrorReason) == reason && cleanText(code, maxErrorCode) == code &&
			(e.Code != code || e.Reason != reason) {
			t.Fatalf("%+v read back as %+v", ae, e)
		}
	})
}

// A ranged Get takes exactly the 206 it asked for: a Content-Range whose
// last byte is so far out that last-first+1 overflows is refused as not
// answering the range, not read until the body runs out; and one whose
// seal holds another number of bytes than it names is refused too.
func TestGetRefusesContentRangeBeyondTheAsk(t *testing.T) {
	var contentRange atomic.Value // what the server answers; the cases run in turn
	reader := newActor("r")
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cr := contentRange.Load().(string)
		seal, err := newTransferSeal(reader.Enc.PublicKey(), BlobAnswerContext(r.URL.RequestURI(), cr))
		if err != nil {
			panic(err)
		}
		seal.setHeaders(w.Header(), 5)
		w.Header().Set("Content-Range", cr)
		w.WriteHeader(http.StatusPartialContent)
		_ = seal.send(w, func(sealed io.Writer) error { _, err := io.WriteString(sealed, "hello"); return err })
	}))
	t.Cleanup(ts.Close)
	for cr, refusal := range map[string]string{
		"bytes 0-4/10":                   "",
		"bytes 0-5/10":                   "does not answer", // one byte more than asked
		"bytes 0-9223372036854775807/10": "does not answer", // last-first+1 overflows
		"bytes 1-4/10":                   "does not answer",
		"bytes 0-3/10":                   "holds 5 bytes sealed", // a range asked, but not what the seal holds
	} {
		ok := refusal == ""
		contentRange.Store(cr)
		c := NewClient(ts.URL, reader, nil)
		var buf bytes.Buffer
		n, err := c.Get(context.Background(), RecordRef(bytes.Repeat([]byte{1}, 32), 1), [32]byte{}, &buf, &Range{Start: 0, Length: 5})
		if ok && (err != nil || n != 5 || buf.String() != "hello") {
			t.Errorf("%s: %d bytes, %v; want hello", cr, n, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), refusal)) {
			t.Errorf("%s: %d bytes, %v; want a refusal of the range", cr, n, err)
		}
	}
}
