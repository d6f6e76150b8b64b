package load

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/store"
)

// BenchmarkValidatorPath is the state machine's share of a validator's work
// under `emrchaind load`, in-process, on pebble, with the node's default
// store options: the load's default mix (1,024 patients of 128 clinicians,
// 256 consent patients) in blocks of 2,000, each transaction going through
// what a validator runs for it at saturation: CheckTx when it arrives
// (while the previous block is being decided), one recheck after that
// block commits, then ProcessProposal (execution), FinalizeBlock (reusing
// it) and Commit.
//
// The sub-benchmarks first fill the chain with that many AddRecords (the
// state a hospital consortium accumulates), so the figures show how the
// cost grows with the stored records. Reported per run: us/tx (wall time of
// everything above, per transaction), cpu-us/tx (the process's CPU time
// per transaction, with the garbage collector and pebble's background
// flushes and compactions, which wall time on two cores partly hides),
// finalize-ms and commit-ms (per block: FinalizeBlock, Commit), and
// state-B/record (the database on disk, every version kept, over the
// records in it). The figures are free of consensus and of other
// processes' own work, not of a shared machine's: compare them before and
// after a change, alternating several runs of each. Measure 30 blocks or
// more (-benchtime 30x): pebble's compactions land in some blocks and not
// others, and with 6 blocks the figures move by a quarter from run to run.
//
//	go test ./testnet/load -run '^$' -bench ValidatorPath -benchtime 30x -timeout 60m
//	go test ./testnet/load -run '^$' -bench 'ValidatorPath/records=1000000' -benchtime 30x -timeout 60m
//
// VALIDATOR_PATH_CPUPROFILE=FILE writes a CPU profile of the measured
// blocks alone (with -benchtime 1x the fill runs once),
// VALIDATOR_PATH_NODE_CACHE=N measures with an IAVL node cache of N nodes,
// and VALIDATOR_PATH_BLOCK_TXS=N with measured blocks of N transactions
// instead of 2,000 (a fixed rate's blocks are smaller than saturation's;
// the fill keeps 2,000).
func BenchmarkValidatorPath(b *testing.B) {
	for _, fill := range []int{0, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("records=%d", fill), func(b *testing.B) {
			if fill >= 1_000_000 && testing.Short() {
				b.Skip("-short")
			}
			benchValidatorPath(b, fill)
		})
	}
}

func benchValidatorPath(b *testing.B, fill int) {
	const fillTxs = 2000 // per block of the setup and the fill
	blockTxs := fillTxs  // per measured block
	if n, err := strconv.Atoi(os.Getenv("VALIDATOR_PATH_BLOCK_TXS")); err == nil && n > 0 {
		blockTxs = n
	}
	so := store.DefaultOptions()
	if n, err := strconv.Atoi(os.Getenv("VALIDATOR_PATH_NODE_CACHE")); err == nil {
		so.CacheSize = n // the IAVL node cache to measure with (app.toml store.cache_size)
	}
	dir := b.TempDir()
	c := apptest.New(b, apptest.Options{Dir: dir, Store: &so})
	var regs []*registrar
	var next []uint64
	for _, org := range []string{apptest.HospitalA, apptest.HospitalB} {
		a := apptest.Registrar(org)
		regs = append(regs, &registrar{signer: &signer{name: a.Name, sign: a.Sign, pub: a.SignPub(), address: a.Address}, org: org})
		next = append(next, c.Seq(a.Address))
	}
	p := newPlan(apptest.ChainID, "bench", 1, regs, next, PlanConfig{})
	raws := func(txs []*plannedTx) [][]byte {
		if err := p.sign(txs); err != nil {
			b.Fatal(err)
		}
		out := make([][]byte, len(txs))
		for i, t := range txs {
			out[i] = t.raw
		}
		return out
	}
	setupRecords := p.setupRecords()
	for _, step := range [][]*plannedTx{p.setupRegister(), p.setupPatients(c.Now), setupRecords} {
		all := raws(step)
		for i := 0; i < len(all); i += fillTxs {
			mustOK(b, c.Block(all[i:min(i+fillTxs, len(all))]...))
		}
	}
	records := len(setupRecords)
	start := time.Now()
	for records < fill {
		mustOK(b, c.Block(raws(p.measured(fillTxs, Mix{AddRecord: 1}, c.Now))...))
		records += fillTxs
		if records%100_000 == 0 {
			b.Logf("filled %d records in %s", records, time.Since(start).Round(time.Second))
		}
	}
	// b.N+1 blocks: the first is only checked, to fill the pipeline.
	blocks := make([][][]byte, b.N+1)
	for i := range blocks {
		planned := p.measured(blockTxs, DefaultMix, c.Now)
		blocks[i] = raws(planned)
		if i < b.N {
			records += kindCounts(planned)["add-record"]
		}
	}
	check := func(txs [][]byte, recheck bool) {
		for _, tx := range txs {
			if r := c.App.CheckTx(tx, recheck); !r.OK() {
				b.Fatalf("CheckTx (recheck %v): %d %s", recheck, r.Code, r.Log)
			}
		}
	}
	check(blocks[0], false)
	var finalize, commit time.Duration
	if path := os.Getenv("VALIDATOR_PATH_CPUPROFILE"); path != "" {
		// A profile of the measured blocks only, without the fill.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := range b.N {
		check(blocks[i+1], false) // arrives while block i is decided
		info := app.BlockInfo{Height: c.Height() + 1, Time: c.Now}
		if err := c.App.ProcessProposal(info, blocks[i]); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		results, _, err := c.App.FinalizeBlock(info, blocks[i])
		if err != nil {
			b.Fatal(err)
		}
		mustOK(b, results)
		t1 := time.Now()
		if _, err := c.App.Commit(); err != nil {
			b.Fatal(err)
		}
		finalize += t1.Sub(t0)
		commit += time.Since(t1)
		c.Now = c.Now.Add(c.BlockInterval)
		check(blocks[i+1], true)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*blockTxs), "us/tx")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N*blockTxs), "cpu-us/tx")
	b.ReportMetric(float64(finalize.Microseconds())/1000/float64(b.N), "finalize-ms")
	b.ReportMetric(float64(commit.Microseconds())/1000/float64(b.N), "commit-ms")
	b.ReportMetric(float64(dirSize(b, dir))/float64(records), "state-B/record")
	b.ReportMetric(0, "ns/op")
}

func mustOK(b *testing.B, results []app.Result) {
	b.Helper()
	for i, r := range results {
		if !r.OK() {
			b.Fatalf("tx %d: %d %s", i, r.Code, r.Log)
		}
	}
}

// dirSize is the bytes of the files under dir (a file a compaction removes
// meanwhile is not counted).
func dirSize(b *testing.B, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
