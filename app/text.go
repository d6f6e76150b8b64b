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

// KebabName is an enum value's name (s, its String()) as command lines,
// events and logs write it: prefix dropped, in lower case, '_' as '-'
// ("ROLE_EMERGENCY_SERVICE" → "emergency-service").
func KebabName(s, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "_", "-")
}

// ParseKebab reads a KebabName back, trimmed and in any case, against
// values (an enum's _value map): ok is false for a word that is not ASCII
// (EnumWord), holds '_' (the name is spelt with '-'), is unknown, or names
// the enum's 0.
func ParseKebab(s, prefix string, values map[string]int32) (v int32, ok bool) {
	word, ascii := EnumWord(s)
	v, known := values[prefix+strings.ReplaceAll(word, "-", "_")]
	return v, ascii && known && v != 0 && !strings.Contains(word, "_")
}

// OrList joins words as a sentence lists choices: "a", "a or b", "a, b or c".
func OrList(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// EmergencyReasonNames are the reasons an emergency read may give, by
// value, as EmergencyReasonName writes them.
func EmergencyReasonNames() []string {
	var names []string
	for v := int32(1); ; v++ {
		name, ok := emrv1.EmergencyReason_name[v]
		if !ok {
			return names
		}
		names = append(names, KebabName(name, "EMERGENCY_REASON_"))
	}
}

// emergencyReasonWords lists the emergency reasons as command lines write
// them.
var emergencyReasonWords = OrList(EmergencyReasonNames())

// CheckEmergencyReason returns nil for a reason an emergency read may
// give: a known one, not EMERGENCY_REASON_UNSPECIFIED.
func CheckEmergencyReason(r emrv1.EmergencyReason) error {
	if _, known := emrv1.EmergencyReason_name[int32(r)]; !known || r == emrv1.EmergencyReason_EMERGENCY_REASON_UNSPECIFIED {
		return fmt.Errorf("an emergency read gives its reason, %s; got %d", emergencyReasonWords, int32(r))
	}
	return nil
}

// EmergencyReasonName names an emergency reason as events, logs and emrcli
// write it: "patient-incapacitated", "immediate-threat", "patient-request".
func EmergencyReasonName(r emrv1.EmergencyReason) string {
	if CheckEmergencyReason(r) != nil {
		return fmt.Sprintf("unknown (%d)", int32(r))
	}
	return KebabName(r.String(), "EMERGENCY_REASON_")
}

// ParseEmergencyReason reads an emergency reason as a command line writes
// it (EmergencyReasonName), in any case.
func ParseEmergencyReason(s string) (emrv1.EmergencyReason, error) {
	v, ok := ParseKebab(s, "EMERGENCY_REASON_", emrv1.EmergencyReason_value)
	if !ok {
		return 0, fmt.Errorf("unknown emergency reason %q (want %s)", s, emergencyReasonWords)
	}
	return emrv1.EmergencyReason(v), nil
}
