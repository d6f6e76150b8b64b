package load

import (
	"bytes"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseMix: a --mix is refused with the zero Mix, or read as weights
// from 0 to maxWeight, not all 0, each the last one its kind was given
// (every part naming add-record, record-access or consent), and String
// formats it back to a mix that reads the same.
func FuzzParseMix(f *testing.F) {
	for _, seed := range []string{
		DefaultMix.String(),
		"add-record=60, record-access=30,consent=10",
		" add-record = 1 ,",
		"consent=1000000,add-record=1000000,record-access=1000000",
		"consent=1000001",
		"add-record=9223372036854775807,consent=1",
		"add-record=+5,consent=-0",
		"add-record=1,add-record=0",
		"add-record=0,consent=0",
		"add-record=1,reads=5",
		"add-record=1,consent",
		"add-record=1,consent=x",
		"add-record==1",
		",,,",
		"",
	} {
		f.Add(seed)
	}
	kinds := []string{"add-record", "record-access", "consent"}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMix(s)
		if err != nil {
			if m != (Mix{}) {
				t.Fatalf("%q refused (%v) but read as %+v", s, err, m)
			}
			return
		}
		w := [3]int{m.AddRecord, m.RecordAccess, m.Consent}
		for i, v := range w {
			if v < 0 || v > maxWeight {
				t.Fatalf("%q: %s weighs %d, want 0 to %d", s, kinds[i], v, maxWeight)
			}
		}
		if total := m.total(); total <= 0 {
			t.Fatalf("%q: total %d", s, total)
		}
		var last [3]int
		for _, part := range strings.Split(s, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			k, v, ok := strings.Cut(part, "=")
			i := slices.Index(kinds, strings.TrimSpace(k))
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if !ok || i < 0 || err != nil {
				t.Fatalf("%q accepted as %+v with the part %q", s, m, part)
			}
			last[i] = n
		}
		if last != w {
			t.Fatalf("%q read as %+v, want the last weights %v", s, m, last)
		}
		if back, err := ParseMix(m.String()); err != nil || back != m {
			t.Fatalf("%+v formats as %q, which reads as %+v, %v", m, m.String(), back, err)
		}
	})
}

// seriesCSV is what WriteSeriesCSV writes for pts.
func seriesCSV(t testing.TB, pts []Point) []byte {
	var b bytes.Buffer
	if err := (&Result{Series: pts}).WriteSeriesCSV(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// FuzzReadSeriesCSV: a series CSV is refused with no points, or it is
// WriteSeriesCSV's header and rows of its seven fields, read as one point
// a row with counts and latencies that are finite, from 0 to MaxInt32
// (what the plot's scales take); written again by WriteSeriesCSV, the
// points read back the same up to its rounding, and that file reads back
// exactly.
func FuzzReadSeriesCSV(f *testing.F) {
	header := strings.Join(SeriesHeader, ",") + "\n"
	for _, seed := range [][]byte{
		seriesCSV(f, []Point{{T: 0, Sent: 10, Committed: 8, Blocks: 1, P50: 12.5, P95: 40, P99: 80.25}, {T: 1}}),
		seriesCSV(f, nil),
		[]byte(header + "0,1,2,3,4.5,5,6\n1,0,0,0,0,0,0\n"),
		[]byte(header + "2147483647,2147483647,0,0,2147483647,1e-300,0x1p-2\n"),
		[]byte(header + "2147483648,0,0,0,0,0,0\n"),
		[]byte(header + "0,1,2,3,NaN,5,+Inf\n"),
		[]byte(header + "-0,1,2,3,-0,5,6\n"),
		[]byte(header + "0,1.5,2,3,4,5,6\n"),
		[]byte(header + "0,1,2\n"),
		[]byte("\"t_s,sent\",committed,blocks,p50_ms,p95_ms,p99_ms\n\"0,1\",2,3,4,5,6\n"),
		[]byte("\"t_s,sent,committed,blocks,p50_ms,p95_ms,p99_ms\"\n7\n"),
		[]byte("t,sent\n0,1\n"),
		[]byte(header),
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		path := filepath.Join(t.TempDir(), "series.csv")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		pts, err := ReadSeriesCSV(path)
		if err != nil {
			if pts != nil {
				t.Fatalf("refused (%v) but read %d points", err, len(pts))
			}
			return
		}
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil || len(rows) == 0 || !slices.Equal(rows[0], SeriesHeader) {
			t.Fatalf("%q accepted, but its header is not %q (%v)", body, SeriesHeader, err)
		}
		if len(pts) != len(rows)-1 {
			t.Fatalf("%d rows read as %d points", len(rows)-1, len(pts))
		}
		for i, p := range pts {
			if len(rows[i+1]) != len(SeriesHeader) {
				t.Fatalf("row %q accepted", rows[i+1])
			}
			for _, n := range []int{p.T, p.Sent, p.Committed, p.Blocks} {
				if n < 0 || n > math.MaxInt32 {
					t.Fatalf("row %q read as %+v", rows[i+1], p)
				}
			}
			for _, x := range []float64{p.P50, p.P95, p.P99} {
				if !(x >= 0 && x <= math.MaxInt32) {
					t.Fatalf("row %q read as %+v", rows[i+1], p)
				}
			}
		}
		// Written again, with latencies rounded to 0.1 ms.
		again := seriesCSV(t, pts)
		if err := os.WriteFile(path, again, 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := ReadSeriesCSV(path)
		if err != nil || len(back) != len(pts) {
			t.Fatalf("%+v written as %q reads back as %+v, %v", pts, again, back, err)
		}
		for i, p := range pts {
			q := back[i]
			if q.T != p.T || q.Sent != p.Sent || q.Committed != p.Committed || q.Blocks != p.Blocks ||
				math.Abs(q.P50-p.P50) > 0.05 || math.Abs(q.P95-p.P95) > 0.05 || math.Abs(q.P99-p.P99) > 0.05 {
				t.Fatalf("%+v reads back as %+v", p, q)
			}
		}
		if twice := seriesCSV(t, back); !bytes.Equal(twice, again) {
			t.Fatalf("%q reads back and writes as %q", again, twice)
		}
	})
}
