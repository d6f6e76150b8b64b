package app

import "testing"

func TestOneLine(t *testing.T) {
	if got := OneLine("a\nb\x00c\xffd\t e\x1b[2J\u202e"); got != `a b\u0000c\xffd e\u001b[2J\u202e` {
		t.Fatalf("OneLine = %q", got)
	}
}

// TestEnumWord: a word names an enum value by its ASCII letters in any
// case, trimmed; look-alike letters that Unicode upper-cases into ASCII
// (ſ, ı, the Kelvin sign) name nothing.
func TestEnumWord(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"read", "READ", true},
		{" Registrar\t", "REGISTRAR", true},
		{"", "", true},
		{"ſhare", "", false},
		{"regıstrar", "", false},
		{"\u212Aelvin", "", false},
		{"résearch", "", false},
	} {
		if got, ok := EnumWord(c.in); got != c.want || ok != c.ok {
			t.Errorf("EnumWord(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// TestCut: a long text is cut at a character boundary and says how long
// it was; a short one is kept.
func TestCut(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc... (6 bytes)"},
		{"aé", 2, "a... (3 bytes)"}, // é is 2 bytes: not cut in two
	} {
		if got := Cut(c.s, c.n); got != c.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}
