package sidecar

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// strictRange matches the single-range forms of RFC 9110 with plain
// digits: "bytes=first-[last]" and "bytes=-suffix".
var strictRange = regexp.MustCompile(`^bytes=(?:([0-9]+)-([0-9]*)|-([0-9]+))$`)

// FuzzParseRange: a Range header is ignored (the whole blob, 200), refused
// (416, with no range), or read as one non-empty range that lies within
// the blob; a range read formats back (as the client sends it) to the same
// range, and as the server's Content-Range to what the client expects.
// Headers of the strict RFC 9110 forms mean what the RFC says; any other
// header (a sign, a space inside the range) is ignored.
func FuzzParseRange(f *testing.F) {
	for _, seed := range []struct {
		h    string
		size int64
	}{
		{"", 100},
		{"bytes=0-9", 100},
		{"bytes=90-", 100},
		{"bytes=90-200", 100},
		{"bytes=-5", 100},
		{"bytes=-500", 100},
		{"bytes=99-99", 100},
		{"bytes=100-", 100},
		{"bytes=-0", 100},
		{"bytes=5-1", 100},
		{"bytes=0-1,5-6", 100},
		{"items=0-1", 100},
		{"bytes=x-1", 100},
		{"bytes=0-", 0},
		{"bytes=-1", 0},
		{"bytes= 3-4 ", 10},
		{"bytes=+3-4", 10},
		{"bytes=-+3", 10},
		{"bytes=3--4", 10},
		{"bytes=0-9223372036854775807", 9223372036854775807},
		{"bytes=9223372036854775806-", 9223372036854775807},
		{"bytes=-9223372036854775807", 1},
		{"bytes=9223372036854775808-", 10},
		{"Bytes=0-1", 10},
	} {
		f.Add(seed.h, seed.size)
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return // a stored blob's size
		}
		start, length, partial, err := parseRange(h, size)
		switch {
		case err != nil:
			if start != 0 || length != 0 || partial {
				t.Fatalf("parseRange(%q, %d) refused (%v) but returned %d+%d partial=%v", h, size, err, start, length, partial)
			}
			if !strings.HasPrefix(h, "bytes=") || strings.Contains(h, ",") {
				t.Fatalf("parseRange(%q, %d) refused a header it should ignore: %v", h, size, err)
			}
		case !partial:
			if start != 0 || length != size {
				t.Fatalf("parseRange(%q, %d) = %d+%d, not partial: want the whole blob", h, size, start, length)
			}
		default:
			if start < 0 || length < 1 || start >= size || length > size-start {
				t.Fatalf("parseRange(%q, %d) = %d+%d: not a non-empty range within the blob", h, size, start, length)
			}
			last := start + length - 1
			// As the client sends it, the range reads back the same.
			if s, l, p, e := parseRange(fmt.Sprintf("bytes=%d-%d", start, last), size); s != start || l != length || !p || e != nil {
				t.Fatalf("parseRange(%q, %d) = %d+%d, but bytes=%d-%d reads as %d+%d %v %v", h, size, start, length, start, last, s, l, p, e)
			}
			// The server's Content-Range reads back as that range.
			cr := fmt.Sprintf("bytes %d-%d/%d", start, last, size)
			if first, l, ok := parseContentRange(cr); !ok || first != start || l != last {
				t.Fatalf("Content-Range %q reads as %d-%d %v", cr, first, l, ok)
			}
		}
		// Spaces around the one range are optional whitespace (RFC 9110's
		// list rule); anything else outside the strict forms is ignored.
		spec, _ := strings.CutPrefix(h, "bytes=")
		m := strictRange.FindStringSubmatch("bytes=" + strings.TrimSpace(spec))
		if !strings.HasPrefix(h, "bytes=") || m == nil {
			if start != 0 || length != size || partial || err != nil {
				t.Fatalf("parseRange(%q, %d) = %d+%d partial=%v err=%v: not a range of RFC 9110, so it must be ignored", h, size, start, length, partial, err)
			}
			return
		}
		wantStart, wantLength, wantPartial, wantErr := rfcRange(m, size)
		if start != wantStart || length != wantLength || partial != wantPartial || (err != nil) != wantErr {
			t.Fatalf("parseRange(%q, %d) = %d+%d partial=%v err=%v; RFC 9110: %d+%d partial=%v err=%v",
				h, size, start, length, partial, err, wantStart, wantLength, wantPartial, wantErr)
		}
	})
}

// rfcRange is RFC 9110's reading of a strictRange match for a blob of size
// bytes (an unsatisfiable range is an error; an invalid one is ignored).
func rfcRange(m []string, size int64) (start, length int64, partial, err bool) {
	if m[3] != "" {
		n, perr := strconv.ParseInt(m[3], 10, 64)
		if perr != nil {
			return 0, size, false, false // beyond int64: not a range we can read
		}
		if n == 0 || size == 0 {
			return 0, 0, false, true
		}
		n = min(n, size)
		return size - n, n, true, false
	}
	first, perr := strconv.ParseInt(m[1], 10, 64)
	if perr != nil {
		return 0, size, false, false
	}
	last := int64(-1)
	if m[2] != "" {
		l, perr := strconv.ParseInt(m[2], 10, 64)
		if perr != nil || l < first {
			return 0, size, false, false
		}
		last = l
	}
	if first >= size {
		return 0, 0, false, true
	}
	if last < 0 || last > size-1 {
		last = size - 1
	}
	return first, last - first + 1, true, false
}
