package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// benchNet is a chain with one clinician holding read+write on many
// patients, the shape of a hospital's daily load.
type benchNet struct {
	c        *apptest.Chain
	doc      *apptest.Actor
	patients [][]byte
	docSeq   uint64
}

func newBenchNet(b *testing.B, backend string, patients int) *benchNet {
	b.Helper()
	opts := apptest.Options{}
	if backend != "memdb" {
		so := store.DefaultOptions()
		so.Backend = backend
		opts = apptest.Options{Dir: b.TempDir(), Store: &so}
	}
	c := apptest.New(b, opts)
	reg := apptest.Registrar(apptest.HospitalA)
	doc := apptest.NewActor("bench-doc")
	c.Must(reg, apptest.RegisterMember(doc, emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	n := &benchNet{c: c, doc: doc}
	var enroll, grants [][]byte
	for i := range patients {
		p := apptest.NewActor(fmt.Sprintf("bench-patient-%d", i))
		id := apptest.PatientID(p.Name)
		n.patients = append(n.patients, id)
		enroll = append(enroll, p.Tx(apptest.ChainID, 0, apptest.Enroll(p)))
		grants = append(grants, p.Tx(apptest.ChainID, 1, apptest.Grant(id, doc, apptest.GrantSpec{
			Rights:   []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE},
			NotAfter: apptest.GenesisTime.Add(24 * 365 * time.Hour),
		})))
	}
	for _, batch := range [][][]byte{enroll, grants} {
		for i := 0; i < len(batch); i += 1000 {
			mustAllB(b, c.Block(batch[i:min(i+1000, len(batch))]...))
		}
	}
	return n
}

func mustAllB(b *testing.B, results []app.Result) {
	b.Helper()
	for i, r := range results {
		if !r.OK() {
			b.Fatalf("tx %d: %d %s", i, r.Code, r.Log)
		}
	}
}

// addRecords signs n AddRecord txs by the clinician, spread over patients.
func (n *benchNet) addRecords(count int, tag string) [][]byte {
	txs := make([][]byte, count)
	for i := range txs {
		id := n.patients[i%len(n.patients)]
		txs[i] = n.doc.Tx(apptest.ChainID, n.docSeq, apptest.AddRecord(id, "lab-results", fmt.Sprintf("%s-%d", tag, i)))
		n.docSeq++
	}
	return txs
}

// BenchmarkFinalizeBlock measures FinalizeBlock+Commit of 1,000-tx blocks
// in-process, signatures not yet cached (as on a node that did not see the
// txs in its mempool: the worst case). Reported as txs/s.
func BenchmarkFinalizeBlock(b *testing.B) {
	for _, backend := range []string{"goleveldb", "pebble"} {
		b.Run("AddRecord/"+backend, func(b *testing.B) {
			n := newBenchNet(b, backend, 1000)
			blocks := make([][][]byte, b.N)
			for i := range blocks {
				blocks[i] = n.addRecords(1000, fmt.Sprintf("b%d", i))
			}
			b.ResetTimer()
			for i := range b.N {
				mustAllB(b, n.c.Block(blocks[i]...))
			}
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "txs/s")
		})
		b.Run("RecordAccess/"+backend, func(b *testing.B) {
			n := newBenchNet(b, backend, 1000)
			mustAllB(b, n.c.Block(n.addRecords(1000, "seed")...))
			blocks := make([][][]byte, b.N)
			for i := range blocks {
				txs := make([][]byte, 1000)
				for j := range txs {
					id := n.patients[j%len(n.patients)]
					txs[j] = n.doc.Tx(apptest.ChainID, n.docSeq, apptest.Access(id, emrv1.Purpose_PURPOSE_TREATMENT, 1))
					n.docSeq++
				}
				blocks[i] = txs
			}
			b.ResetTimer()
			for i := range b.N {
				mustAllB(b, n.c.Block(blocks[i]...))
			}
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "txs/s")
		})
	}
}
