package load

import (
	"encoding/csv"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// PlotSeries is one run's time series for Plot.
type PlotSeries struct {
	Label  string
	Points []Point
}

// ReadSeriesCSV reads a series CSV written by WriteSeriesCSV.
func ReadSeriesCSV(path string) ([]Point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// The header's very fields: joined, a quoted "t_s,sent" would pass
	// for two, and every row would have fewer than seven.
	if len(rows) == 0 || !slices.Equal(rows[0], SeriesHeader) {
		return nil, fmt.Errorf("%s: not a load series CSV (want the header %s)", path, strings.Join(SeriesHeader, ","))
	}
	var pts []Point
	for i, r := range rows[1:] { // every row has the header's 7 fields
		var v [7]float64
		for j, field := range r {
			x, err := strconv.ParseFloat(field, 64)
			// Negative, non-finite or (for counts) fractional values
			// would only wreck the plot's scales.
			if err != nil || !(x >= 0 && x <= math.MaxInt32) || (j < 4 && x != math.Trunc(x)) {
				return nil, fmt.Errorf("%s: line %d: %s %q: want a number from 0 to %d", path, i+2, SeriesHeader[j], field, math.MaxInt32)
			}
			v[j] = x
		}
		pts = append(pts, Point{T: int(v[0]), Sent: int(v[1]), Committed: int(v[2]), Blocks: int(v[3]), P50: v[4], P95: v[5], P99: v[6]})
	}
	return pts, nil
}

// Plot layout.
const (
	plotW, plotH  = 1100, 760
	marginL       = 110
	marginR       = 30
	panelGap      = 70
	topMargin     = 60
	bottomMargin  = 60
	fontScale     = 2
	smoothSeconds = 5
)

var (
	colBG     = color.RGBA{255, 255, 255, 255}
	colAxis   = color.RGBA{40, 40, 40, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colText   = color.RGBA{20, 20, 20, 255}
	colSeries = []color.RGBA{{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {255, 127, 14, 255}, {148, 103, 189, 255}}
)

// Plot draws committed throughput (a 5 s moving average) and latency (p99
// solid, p50 dotted, on a log scale) over time for each series, one panel
// each, into a PNG.
func Plot(w io.Writer, title string, series []PlotSeries) error {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	fill(img, img.Bounds(), colBG)
	drawText(img, marginL, 18, title, colText)

	panelH := (plotH - topMargin - bottomMargin - panelGap) / 2
	top := image.Rect(marginL, topMargin, plotW-marginR, topMargin+panelH)
	bot := image.Rect(marginL, topMargin+panelH+panelGap, plotW-marginR, topMargin+2*panelH+panelGap)

	maxT, maxTPS := 1.0, 1.0
	minLat, maxLat := math.Inf(1), 0.0
	smoothed := make([][]float64, len(series))
	for i, s := range series {
		smoothed[i] = movingAverage(s.Points, smoothSeconds)
		for j, p := range s.Points {
			maxT = math.Max(maxT, float64(p.T+1))
			maxTPS = math.Max(maxTPS, smoothed[i][j])
			if p.Committed > 0 {
				maxLat = math.Max(maxLat, p.P99)
				if p.P50 > 0 {
					minLat = math.Min(minLat, p.P50)
				}
			}
		}
	}
	if maxLat <= 0 || math.IsInf(minLat, 1) {
		minLat, maxLat = 1, 10
	}
	tps := scale{0, niceCeil(maxTPS), false}
	lat := scale{math.Pow(10, math.Floor(math.Log10(minLat))), math.Pow(10, math.Ceil(math.Log10(maxLat*1.01))), true}

	axes(img, top, maxT, tps, "COMMITTED TX/S (5 S MOVING AVERAGE)")
	axes(img, bot, maxT, lat, "SUBMIT-TO-COMMIT LATENCY MS (LOG): P99 SOLID, P50 DOTTED")
	drawText(img, bot.Min.X+bot.Dx()/2-60, bot.Max.Y+34, "SECONDS", colText)

	for i, s := range series {
		c := colSeries[i%len(colSeries)]
		var tp, p99, p50 [][2]float64
		for j, p := range s.Points {
			x := float64(p.T) + 0.5
			tp = append(tp, [2]float64{x, smoothed[i][j]})
			if p.Committed > 0 {
				p99 = append(p99, [2]float64{x, p.P99})
				p50 = append(p50, [2]float64{x, p.P50})
			}
		}
		polyline(img, top, maxT, tps, tp, c, false)
		polyline(img, bot, maxT, lat, p99, c, false)
		polyline(img, bot, maxT, lat, p50, c, true)
		// Legend, top right of the throughput panel.
		lx, ly := top.Max.X-330, top.Min.Y+12+i*22
		fill(img, image.Rect(lx, ly+4, lx+24, ly+8), c)
		drawText(img, lx+32, ly, s.Label, colText)
	}
	return png.Encode(w, img)
}

// scale maps values to [0, 1] of a panel's height, linearly or by log10.
type scale struct {
	min, max float64
	log      bool
}

func (s scale) frac(v float64) float64 {
	if s.log {
		v = math.Max(v, s.min)
		return (math.Log10(v) - math.Log10(s.min)) / (math.Log10(s.max) - math.Log10(s.min))
	}
	return (math.Min(v, s.max) - s.min) / (s.max - s.min)
}

// ticks are the labelled values of the axis: five steps, or 1-2-5 per decade.
func (s scale) ticks() []float64 {
	if !s.log {
		var out []float64
		for i := 0; i <= 5; i++ {
			out = append(out, s.min+(s.max-s.min)*float64(i)/5)
		}
		return out
	}
	var out []float64
	for d := s.min; d <= s.max*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := d * m; v <= s.max*1.0001 {
				out = append(out, v)
			}
		}
	}
	return out
}

// movingAverage is the committed count per second averaged over the last n
// seconds (fewer at the start).
func movingAverage(pts []Point, n int) []float64 {
	out := make([]float64, len(pts))
	sum := 0
	for i, p := range pts {
		sum += p.Committed
		if i >= n {
			sum -= pts[i-n].Committed
		}
		out[i] = float64(sum) / float64(min(i+1, n))
	}
	return out
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func axes(img *image.RGBA, r image.Rectangle, maxX float64, ys scale, label string) {
	for _, v := range ys.ticks() {
		y := r.Max.Y - int(ys.frac(v)*float64(r.Dy()))
		hline(img, r.Min.X, r.Max.X, y, colGrid)
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if v >= 10 {
			s = strconv.FormatFloat(math.Round(v), 'f', 0, 64)
		}
		drawText(img, r.Min.X-10-textWidth(s), y-7, s, colText)
	}
	step := niceCeil(maxX / 10)
	for x := 0.0; x <= maxX; x += step {
		px := r.Min.X + int(x/maxX*float64(r.Dx()))
		vline(img, px, r.Min.Y, r.Max.Y, colGrid)
		s := strconv.FormatFloat(x, 'f', 0, 64)
		drawText(img, px-textWidth(s)/2, r.Max.Y+8, s, colText)
	}
	hline(img, r.Min.X, r.Max.X, r.Max.Y, colAxis)
	vline(img, r.Min.X, r.Min.Y, r.Max.Y, colAxis)
	drawText(img, r.Min.X, r.Min.Y-22, label, colText)
}

func polyline(img *image.RGBA, r image.Rectangle, maxX float64, ys scale, pts [][2]float64, c color.RGBA, dotted bool) {
	px := func(p [2]float64) (int, int) {
		return r.Min.X + int(p[0]/maxX*float64(r.Dx())), r.Max.Y - int(ys.frac(p[1])*float64(r.Dy()))
	}
	n := 0
	for i := 1; i < len(pts); i++ {
		x0, y0 := px(pts[i-1])
		x1, y1 := px(pts[i])
		steps := max(abs(x1-x0), abs(y1-y0), 1)
		for s := 0; s <= steps; s++ {
			n++
			if dotted && n/4%2 == 1 {
				continue
			}
			x := x0 + (x1-x0)*s/steps
			y := y0 + (y1-y0)*s/steps
			fill(img, image.Rect(x-1, y-1, x+1, y+1), c)
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	fill(img, image.Rect(x0, y, x1+1, y+1), c)
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	fill(img, image.Rect(x, y0, x+1, y1+1), c)
}

func textWidth(s string) int { return len(s) * 6 * fontScale }

// drawText draws s (upper-cased) in a 5x7 bitmap font, top-left at (x, y).
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range strings.ToUpper(s) {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs['?']
		}
		for row, bits := range g {
			for col := 0; col < 5; col++ {
				if bits[col] == '#' {
					fill(img, image.Rect(x+col*fontScale, y+row*fontScale, x+(col+1)*fontScale, y+(row+1)*fontScale), c)
				}
			}
		}
		x += 6 * fontScale
	}
}

// glyphs is a 5x7 font of the characters plots need.
var glyphs = map[rune][7]string{
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1': {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3': {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5': {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6': {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7': {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8': {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9': {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'A': {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'B': {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."},
	'C': {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."},
	'D': {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."},
	'E': {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
	'F': {"#####", "#....", "#....", "####.", "#....", "#....", "#...."},
	'G': {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"},
	'H': {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'I': {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'J': {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
	'K': {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"},
	'L': {"#....", "#....", "#....", "#....", "#....", "#....", "#####"},
	'M': {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"},
	'N': {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"},
	'O': {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'P': {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."},
	'Q': {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"},
	'R': {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"},
	'S': {".####", "#....", "#....", ".###.", "....#", "....#", "####."},
	'T': {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
	'U': {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'V': {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'W': {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."},
	'X': {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"},
	'Y': {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."},
	'Z': {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"},
	' ': {".....", ".....", ".....", ".....", ".....", ".....", "....."},
	'.': {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	',': {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."},
	':': {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	'/': {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."},
	'%': {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"},
	'(': {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')': {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'-': {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'_': {".....", ".....", ".....", ".....", ".....", ".....", "#####"},
	'=': {".....", ".....", "#####", ".....", "#####", ".....", "....."},
	'+': {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."},
	'@': {".###.", "#...#", "#.###", "#.#.#", "#.##.", "#....", ".###."},
	'?': {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."},
}
