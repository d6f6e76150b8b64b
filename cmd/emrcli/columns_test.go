package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/emrchain/emrchain/app"
)

// tabwriterTable is table as it was printed before columns (session 51),
// with text/tabwriter.
func tabwriterTable(header []string, rows [][]string) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = app.OneLine(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	return b.String()
}

func tableString(header []string, rows [][]string) string {
	var b bytes.Buffer
	table(&b, header, rows)
	return b.String()
}

// TestTablePrintsAsTabwriterDid: rows as wide as the header (what every
// caller passes), of cells empty, multi-byte, wide, with tabs, newlines,
// escapes and invalid bytes, print byte for byte as with text/tabwriter.
func TestTablePrintsAsTabwriterDid(t *testing.T) {
	cells := []string{"", "a", "héllo", "日本語", "x\ty", "a\nb", "\x1b[31mred", "longer cell text", "\xff", "  pad  "}
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < 2000; n++ {
		cols := 1 + rng.Intn(6)
		header := make([]string, cols)
		for i := range header { // constant ASCII words, as every caller's
			header[i] = strings.Repeat("H", 1+rng.Intn(12))
		}
		var rows [][]string
		for r := rng.Intn(5); r > 0; r-- {
			row := make([]string, cols)
			for i := range row {
				row[i] = cells[rng.Intn(len(cells))]
			}
			rows = append(rows, row)
		}
		if o, w := tabwriterTable(header, rows), tableString(header, rows); o != w {
			t.Fatalf("header %q rows %q:\nold:\n%q\nnew:\n%q", header, rows, o, w)
		}
	}
}

// TestTableKeepsCellsBeyondTheHeaderApart: a row with more cells than
// the header keeps them apart, as tabwriter did (the session-51 review:
// columns first ran them together).
func TestTableKeepsCellsBeyondTheHeaderApart(t *testing.T) {
	header := []string{"A", "B"}
	rows := [][]string{{"x", "y", "z", "w"}}
	old, got := tabwriterTable(header, rows), tableString(header, rows)
	if got != old {
		t.Fatalf("a row with more cells than the header:\nold (tabwriter): %q\nnew (columns):   %q", old, got)
	}
}
