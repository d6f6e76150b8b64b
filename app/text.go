package app

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// maxQuotedInput bounds how much of a request's value an error quotes.
const maxQuotedInput = 80

// QuoteInput quotes s for an error message or a log line, cut to
// maxQuotedInput bytes: a query error must not grow with (or, escaped,
// quadruple) its input, nor a log line with what a caller sent.
func QuoteInput(s string) string {
	if len(s) <= maxQuotedInput {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q... (%d bytes)", prefix(s, maxQuotedInput), len(s))
}

// Cut is s, or, when it is longer than n bytes, its first n (whole
// characters) and how long it was: for messages whose text may come from
// outside.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", prefix(s, n), len(s))
}

// prefix is the first n bytes of s, without a character cut in two.
func prefix(s string, n int) string { return strings.ToValidUTF8(s[:n], "") }

// OneLine makes text from outside (an error, a peer's answer) printable on
// one line: newlines and tabs become spaces, runs of white space one, and
// bytes that are not printable UTF-8 (terminal escapes, bidirectional
// overrides, the raw keys proof libraries like to embed) are escaped.
func OneLine(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += max(size, 1)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// EnumWord is s trimmed and in upper case, for finding the enum value a
// command-line word names ("read" → "READ"); ok is false unless s is
// ASCII. Unicode case mapping turns look-alike letters into ASCII ones
// (ſ into S, ı into I), so "ſhare" would otherwise name the share right.
func EnumWord(s string) (word string, ok bool) {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", false
		}
	}
	return strings.ToUpper(s), true
}

// ParseOrganizationKind reads an organization kind as a command line
// writes it: "hospital", "lab", "pharmacy" or "research", in any case.
func ParseOrganizationKind(s string) (emrv1.OrganizationKind, error) {
	word, ascii := EnumWord(s)
	name := "ORGANIZATION_KIND_" + strings.TrimPrefix(word, "ORGANIZATION_KIND_")
	if v, ok := emrv1.OrganizationKind_value[name]; ascii && ok && v != 0 {
		return emrv1.OrganizationKind(v), nil
	}
	return 0, fmt.Errorf("unknown organization kind %q (want hospital, lab, pharmacy or research)", s)
}
