package app

import "testing"

func TestOneLine(t *testing.T) {
	if got := OneLine("a\nb\x00c\xffd\t e\x1b[2J\u202e"); got != `a b\u0000c\xffd e\u001b[2J\u202e` {
		t.Fatalf("OneLine = %q", got)
	}
}
