package load

import (
	"bytes"
	"crypto/sha256"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/cometbft/cometbft/test/loadtime/payload"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app/apptest"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix("add-record=60, record-access=30,consent=10")
	if err != nil || m != DefaultMix {
		t.Fatalf("ParseMix = %+v, %v", m, err)
	}
	if m, err := ParseMix(DefaultMix.String()); err != nil || m != DefaultMix {
		t.Fatalf("round trip: %+v, %v", m, err)
	}
	if m, err := ParseMix("add-record=1"); err != nil || m != (Mix{AddRecord: 1}) {
		t.Fatalf("one kind: %+v, %v", m, err)
	}
	for _, bad := range []string{"", "add-record=0", "reads=5", "add-record", "add-record=-1", "consent=x"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

// TestCheckLoopback: RPC endpoints (http://host:port) and gRPC endpoints
// (host:port) are taken on 127.0.0.1 only.
func TestCheckLoopback(t *testing.T) {
	for _, c := range []struct {
		name    string
		check   func(string) error
		ok, bad []string
	}{
		{"RPC", checkLoopback,
			[]string{"http://127.0.0.1:26657", "http://localhost:1", "tcp://127.0.0.1:26657"},
			[]string{"http://10.0.0.1:26657", "http://example.org:26657", "https://127.0.0.1:1", "127.0.0.1:26657", "http://0.0.0.0:1"}},
		{"gRPC", checkLoopbackAddr,
			[]string{"127.0.0.1:9090", "localhost:1"},
			[]string{"10.0.0.1:9090", "example.com:443", "127.0.0.1", "http://127.0.0.1:9090", ""}},
	} {
		for _, ok := range c.ok {
			if err := c.check(ok); err != nil {
				t.Errorf("%s %s: %v", c.name, ok, err)
			}
		}
		for _, bad := range c.bad {
			if err := c.check(bad); err == nil {
				t.Errorf("%s %s accepted", c.name, bad)
			}
		}
	}
}

func TestPercentiles(t *testing.T) {
	var v []float64
	for i := 1; i <= 100; i++ {
		v = append(v, float64(101-i))
	}
	s := latencyStats(v, nil)
	if s.Count != 100 || s.P50 != 50 || s.P95 != 95 || s.P99 != 99 || s.Max != 100 || s.Mean != 50.5 || s.Censored != 0 || s.AtLeast != nil {
		t.Fatalf("latencyStats = %+v", s)
	}
	if !reflect.DeepEqual(latencyStats(nil, nil), LatencyStats{}) || pctSorted(nil, 50) != 0 {
		t.Fatal("empty input must give zeros")
	}
	if got := pctSorted([]float64{7}, 99); got != 7 {
		t.Fatalf("pct of one = %v", got)
	}
}

// TestPlanExecutes runs a load's setup and a measured mix through the state
// machine block by block: every planned transaction must succeed, in plan
// order, which is what the sender relies on (sequences, key versions,
// grants before records, records before reads, revoke after grant).
func TestPlanExecutes(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	var regs []*registrar
	var next []uint64
	for _, org := range []string{apptest.HospitalA, apptest.HospitalB} {
		a := apptest.Registrar(org)
		pub := a.SignPub()
		regs = append(regs, &registrar{signer: &signer{name: a.Name, sign: a.Sign, pub: pub, address: a.Address}, org: org})
		next = append(next, c.Seq(a.Address))
	}
	p := newPlan(apptest.ChainID, "t", 7, regs, next, PlanConfig{Clinicians: 5, PatientsPerClinician: 3, ConsentPatients: 4})
	steps := [][]*plannedTx{p.setupRegister(), p.setupPatients(c.Now), p.setupRecords(), p.measured(600, DefaultMix, c.Now)}
	kinds := map[uint8]int{}
	for i, txs := range steps {
		if err := p.sign(txs); err != nil {
			t.Fatal(err)
		}
		for start := 0; start < len(txs); start += 100 {
			batch := txs[start:min(start+100, len(txs))]
			raws := make([][]byte, len(batch))
			for j, tx := range batch {
				raws[j] = tx.raw
				if tx.hash != sha256.Sum256(tx.raw) {
					t.Fatal("hash is not the tx hash")
				}
			}
			for j, r := range c.Block(raws...) {
				if !r.OK() {
					tx := batch[j]
					t.Fatalf("step %d: %s by %s seq %d: code %d: %s", i, kindNames[tx.kind], p.signers[tx.signer].name, tx.seq, r.Code, r.Log)
				}
				kinds[batch[j].kind]++
			}
		}
	}
	for k := range numKinds {
		if kinds[k] == 0 {
			t.Errorf("no %s in the plan", kindNames[k])
		}
	}
	// The measured mix is close to the default shares.
	mc := kindCounts(steps[3])
	if n := mc["add-record"]; n < 300 || n > 420 {
		t.Errorf("add-record %d of 600", n)
	}
	if n := mc["record-access"]; n < 120 || n > 240 {
		t.Errorf("record-access %d of 600", n)
	}
	if n := mc["grant"] + mc["revoke"] + mc["rotate-key"]; n < 30 || n > 100 {
		t.Errorf("consent %d of 600", n)
	}
}

func TestWorkerPinning(t *testing.T) {
	s := &sender{nodes: make([]submitter, 4), conns: 3}
	seen := map[int]bool{}
	for signer := range 100 {
		w := s.workerOf(signer)
		if w%4 != signer%4 {
			t.Fatalf("signer %d on worker %d: not its node", signer, w)
		}
		if w != s.workerOf(signer) {
			t.Fatal("not stable")
		}
		seen[w] = true
	}
	if len(seen) != 12 {
		t.Fatalf("signers spread over %d of 12 workers", len(seen))
	}
}

func TestObserverMatches(t *testing.T) {
	o := newObserver(nil, true)
	mine := &plannedTx{raw: []byte("mine")}
	mine.hash = sha256.Sum256(mine.raw)
	mine.sendNs.Store(time.Unix(100, 0).UnixNano())
	mine.accepted.Store(true)
	o.track([]*plannedTx{mine})
	sent := time.Unix(99, 0)
	lt, err := payload.NewBytes(&payload.Payload{Size: 300, Time: timestamppb.New(sent)})
	if err != nil {
		t.Fatal(err)
	}
	var b block
	b.Header.Time = time.Unix(101, 0)
	b.Data.Txs = [][]byte{mine.raw, lt, []byte("other")}
	seen := time.Unix(102, 0)
	o.record(7, &b, []txResult{{}, {}, {Code: 3, Codespace: "x"}}, seen, seen.Add(time.Second))
	if mine.commitNs != seen.UnixNano() || mine.height != 7 || o.committed != 1 {
		t.Fatalf("planned tx not matched: %+v", mine)
	}
	if len(o.watched) != 1 || o.watched[0].sendNs != sent.UnixNano() || o.foreign != 1 {
		t.Fatalf("watched %+v foreign %d", o.watched, o.foreign)
	}
	if got := o.blocks[0]; got.Txs != 3 || got.Ours != 2 || got.Bytes != len(mine.raw)+len(lt)+5 {
		t.Fatalf("block stat %+v", got)
	}
	// A second sighting of the same bytes is not counted again.
	o.record(8, &b, nil, seen.Add(time.Second), time.Time{})
	if o.committed != 1 || mine.height != 7 {
		t.Fatal("counted twice")
	}
}

func TestResultAndPlot(t *testing.T) {
	start := time.Unix(1000, 0)
	o := newObserver(nil, false)
	var txs []*plannedTx
	for i := range 50 {
		tx := &plannedTx{raw: []byte{byte(i)}}
		tx.sendNs.Store(start.Add(time.Duration(i) * 100 * time.Millisecond).UnixNano())
		tx.accepted.Store(true)
		tx.commitNs = start.Add(time.Duration(i)*100*time.Millisecond + time.Second).UnixNano()
		txs = append(txs, tx)
	}
	// A block a second, seen at 0.5s, 1.5s, ... 5.5s; the one seen at 2.5s
	// has a failed tx and two of unknown outcome.
	for h := range 6 {
		o.blocks = append(o.blocks, blockStat{Height: int64(h + 1), Time: start.Add(time.Duration(h) * time.Second),
			Observed: start.Add(time.Duration(h)*time.Second + 500*time.Millisecond), Txs: 10, Ours: 10})
	}
	o.blocks[2].Failed, o.blocks[2].Unknown = 1, 2
	cfg := Config{Name: "x", Duration: 5 * time.Second, Warmup: time.Second, Mix: DefaultMix, Conns: 1, Target: Target{RPC: []string{"http://127.0.0.1:1"}}}
	r := buildResult(cfg, o, newSendStats(), txs, start, start.Add(5*time.Second), start.Add(5*time.Second))
	s := r.Summary
	// Commits at 1.0s..5.9s; the window is [1s, 5s]: 41 of them. The
	// whole block intervals: from the block seen at 0.5s to the one seen
	// at 4.5s, 37 successful txs in 4 blocks over 4s.
	if s.Committed != 50 || s.CommittedInWindow != 41 || s.TPS != 37.0/4 || s.TPSBasis != "blocks" || s.TPSBlocks != 4 || s.TPSCommitted != 37 {
		t.Fatalf("summary %+v", s)
	}
	if s.Latency.P50 != 1000 || s.Latency.P99 != 1000 {
		t.Fatalf("latency %+v", s.Latency)
	}
	if s.Blocks.Count != 4 || s.Blocks.MeanIntervalMs != 1000 {
		t.Fatalf("blocks %+v", s.Blocks)
	}
	dir := t.TempDir()
	jsonPath, csvPath, blocksPath := filepath.Join(dir, "s.json"), filepath.Join(dir, "s.csv"), filepath.Join(dir, "b.csv")
	if err := r.WriteFiles(jsonPath, csvPath, blocksPath); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSummary(jsonPath)
	if err != nil || back.TPS != s.TPS {
		t.Fatalf("ReadSummary: %+v, %v", back, err)
	}
	pts, err := ReadSeriesCSV(csvPath)
	if err != nil || len(pts) != len(r.Series) {
		t.Fatalf("ReadSeriesCSV: %d points, %v", len(pts), err)
	}
	var png1 bytes.Buffer
	if err := Plot(&png1, "test: emrchain vs kvstore", []PlotSeries{{Label: "a", Points: pts}, {Label: "b", Points: nil}}); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&png1)
	if err != nil || img.Bounds().Dx() != plotW {
		t.Fatalf("PNG: %v", err)
	}
	var text, cmp bytes.Buffer
	r.WriteText(&text)
	Compare(&cmp, &s, &Summary{Name: "kvstore", TPS: s.TPS * 2})
	if !bytes.Contains(cmp.Bytes(), []byte("ratio 0.500\n")) || text.Len() == 0 {
		t.Fatalf("compare:\n%s", cmp.String())
	}
	if _, err := os.Stat(blocksPath); err != nil {
		t.Fatal(err)
	}
}

// TestTextSaysWhenTheRateWasNotOffered: a rate run whose senders fell
// behind says so; one that kept up does not.
func TestTextSaysWhenTheRateWasNotOffered(t *testing.T) {
	for accepted, want := range map[int64]string{
		30_000: "  offered    667 tx/s accepted, short of the 1000 asked",
		44_000: "", // 978 tx/s: kept up
	} {
		r := &Result{Summary: Summary{Name: "x", Mode: "rate", TargetRate: 1000, DurationS: 45, Accepted: accepted}}
		var text bytes.Buffer
		r.WriteText(&text)
		said := bytes.Contains(text.Bytes(), []byte("offered"))
		if said != (want != "") || !bytes.Contains(text.Bytes(), []byte(want)) {
			t.Errorf("accepted %d: %q", accepted, text.String())
		}
	}
}

func TestPlotGlyphs(t *testing.T) {
	for r, g := range glyphs {
		for _, row := range g {
			if len(row) != 5 {
				t.Fatalf("glyph %q: row %q", r, row)
			}
		}
	}
}

// TestSettleKeepsSignerOrder: a tx the node did not take is sent again with
// every later tx of its signer in the batch, whatever their answers, while
// other signers' txs are booked as answered.
func TestSettleKeepsSignerOrder(t *testing.T) {
	full := &rpcError{Code: -32603, Message: "Internal error", Data: "mempool is full: number of txs 5000 (max: 5000)"}
	badSeq := checkResult{Code: 4, Codespace: "emrchain", Log: "bad sequence"}
	item := func(signer int32) *plannedTx { return &plannedTx{signer: signer} }
	batch := []*plannedTx{item(1), item(2), item(1), item(3), item(2)}
	outs := []outcome{
		{err: full},   // signer 1: not taken
		{},            // signer 2: accepted
		{res: badSeq}, // signer 1: refused only because its predecessor was not taken
		{res: badSeq}, // signer 3: a real rejection
		{},            // signer 2: accepted
	}
	s := &sender{stats: newSendStats()}
	broken := map[int32]bool{}
	retry, wasFull, _ := s.settle(batch, outs, broken)
	if !wasFull {
		t.Error("a full mempool was not reported")
	}
	if len(retry) != 2 || retry[0] != batch[0] || retry[1] != batch[2] {
		t.Fatalf("retry = %+v, want signer 1's two txs in order", retry)
	}
	if !batch[1].accepted.Load() || !batch[4].accepted.Load() || batch[0].accepted.Load() {
		t.Error("accepted flags wrong")
	}
	if !broken[3] || broken[1] {
		t.Errorf("broken = %v, want only signer 3", broken)
	}
	for i, want := range []bool{false, false, false, true, false} {
		if batch[i].refused.Load() != want {
			t.Errorf("tx %d refused %v, want %v: only a rejected tx has no latency", i, !want, want)
		}
	}
	if got := s.stats.rejected[codeKey("emrchain", 4)]; got != 1 {
		t.Errorf("rejections counted %d, want 1", got)
	}
	if s.stats.accepted.Load() != 2 || s.stats.full.Load() != 1 {
		t.Errorf("accepted %d full %d", s.stats.accepted.Load(), s.stats.full.Load())
	}
	later := []*plannedTx{item(3), item(2)}
	if retry, _, _ := s.settle(later, []outcome{{}, {}}, broken); len(retry) != 0 || !later[0].refused.Load() || later[1].refused.Load() {
		t.Errorf("a tx after its signer's rejection: refused %v, want true", later[0].refused.Load())
	}
}
