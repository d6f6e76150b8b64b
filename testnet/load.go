package testnet

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// LoadOptions configure a Load.
type LoadOptions struct {
	// Workers is the number of concurrent patient flows; 0 means 4.
	Workers int
	// Prefix makes the actors' names unique on the chain; empty means "load".
	// Two loads on one net need different prefixes.
	Prefix string
	// Orgs are the hospitals whose registrars register the clinicians, in
	// turn; empty means hospital-a and hospital-b.
	Orgs []string
}

// Load drives the consortium's clinical flow against a Net: each worker
// owns a clinician and enrolls patient after patient, who grants the
// clinician read and write; the clinician adds two records and logs a read.
// Every transaction waits for its commit (Net.Submit) before the signer's
// next one, so a worker has one transaction in flight.
type Load struct {
	net  *Net
	opts LoadOptions

	mu        sync.Mutex
	committed map[string]int64 // hex tx hash -> height
	err       error

	clinicians []*apptest.Actor
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// NewLoad prepares a load on n.
func NewLoad(n *Net, o LoadOptions) *Load {
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.Prefix == "" {
		o.Prefix = "load"
	}
	if len(o.Orgs) == 0 {
		o.Orgs = []string{apptest.HospitalA, apptest.HospitalB}
	}
	return &Load{net: n, opts: o, committed: map[string]int64{}}
}

// Setup registers one clinician per worker, each registrar registering its
// share in sequence.
func (l *Load) Setup(ctx context.Context) error {
	byOrg := map[string][]*apptest.Actor{}
	for w := range l.opts.Workers {
		org := l.opts.Orgs[w%len(l.opts.Orgs)]
		c := apptest.NewActor(fmt.Sprintf("%s-clinician-%d", l.opts.Prefix, w))
		l.clinicians = append(l.clinicians, c)
		byOrg[org] = append(byOrg[org], c)
	}
	errs := make(chan error, len(byOrg))
	for org, cs := range byOrg {
		reg := l.net.Registrar(org) // here: it may end the test
		go func() {
			seq, err := l.net.NextSequence(ctx, reg.Address)
			if err != nil {
				errs <- err
				return
			}
			for _, c := range cs {
				if err := l.submit(ctx, reg.Tx(l.net.ChainID, seq, apptest.RegisterMember(c, emrv1.Role_ROLE_CLINICIAN, org))); err != nil {
					errs <- fmt.Errorf("register %s: %w", c.Name, err)
					return
				}
				seq++
			}
			errs <- nil
		}()
	}
	var first error
	for range byOrg {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Start runs the workers in the background until Stop.
func (l *Load) Start(ctx context.Context) {
	ctx, l.cancel = context.WithCancel(ctx)
	for w, c := range l.clinicians {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if err := l.worker(ctx, w, c); err != nil && ctx.Err() == nil {
				l.mu.Lock()
				if l.err == nil {
					l.err = fmt.Errorf("worker %d: %w", w, err)
				}
				l.mu.Unlock()
				l.cancel()
			}
		}()
	}
}

// Stop ends the load, waits for the workers and returns the first error a
// worker met (nil if the load only ended because it was stopped).
func (l *Load) Stop() error {
	if l.cancel != nil {
		l.cancel()
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Err is the first error a worker met so far.
func (l *Load) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// worker enrolls patients one after another until ctx ends.
func (l *Load) worker(ctx context.Context, w int, clinician *apptest.Actor) error {
	var clinSeq uint64
	cats := app.DefaultCategories
	for p := 0; ctx.Err() == nil; p++ {
		patient := apptest.NewActor(fmt.Sprintf("%s-patient-%d-%d", l.opts.Prefix, w, p))
		id := apptest.PatientID(patient.Name)
		steps := []struct {
			signer *apptest.Actor
			seq    *uint64
			msg    *emrv1.Msg
		}{
			{patient, nil, apptest.Enroll(patient)},
			{patient, nil, apptest.Grant(id, clinician, apptest.GrantSpec{
				Rights:   []emrv1.Right{emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE},
				NotAfter: time.Now().Add(24 * time.Hour),
			})},
			{clinician, &clinSeq, apptest.AddRecord(id, cats[p%len(cats)], fmt.Sprintf("%s-%d-%d-a", l.opts.Prefix, w, p))},
			{clinician, &clinSeq, apptest.AddRecord(id, cats[(p+1)%len(cats)], fmt.Sprintf("%s-%d-%d-b", l.opts.Prefix, w, p))},
			{clinician, &clinSeq, apptest.Access(id, emrv1.Purpose_PURPOSE_TREATMENT, 1, 2)},
		}
		var patSeq uint64
		for _, s := range steps {
			seq := s.seq
			if seq == nil {
				seq = &patSeq
			}
			if err := l.submit(ctx, s.signer.Tx(l.net.ChainID, *seq, s.msg)); err != nil {
				return fmt.Errorf("%s (%s, seq %d): %w", app.MsgName(s.msg), s.signer.Name, *seq, err)
			}
			*seq++
		}
	}
	return ctx.Err()
}

// submit sends tx and records it as committed; a tx that is committed with
// a failing code is an error (PrepareProposal never proposes one).
func (l *Load) submit(ctx context.Context, tx []byte) error {
	c, err := l.net.Submit(ctx, tx)
	if err != nil {
		return err
	}
	if c.Code != 0 {
		return fmt.Errorf("tx %X committed at %d with code %d: %s", c.Hash, c.Height, c.Code, c.Log)
	}
	l.mu.Lock()
	l.committed[hex.EncodeToString(c.Hash)] = c.Height
	l.mu.Unlock()
	return nil
}

// Committed is the number of transactions the load saw committed.
func (l *Load) Committed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.committed)
}

// Verify looks every transaction the load saw committed up by hash on every
// running node: each must be in its tx index, at the height first
// reported. CometBFT indexes a block a moment after committing it, so a
// transaction missing from the index is looked up again for up to
// indexLag; emrchaind start indexes again what a kill in between left out,
// so one still missing then is an error (with whether its block holds it).
func (l *Load) Verify(ctx context.Context) error {
	l.mu.Lock()
	committed := maps.Clone(l.committed)
	l.mu.Unlock()
	var errs []error
	// One wait for the index's lag, not one per transaction: a node that
	// lacks many would otherwise take indexLag for each.
	deadline := time.Now().Add(indexLag)
	for i := range l.net.Len() {
		if !l.net.Running(i) {
			continue
		}
		missing := 0
		for h, height := range committed {
			hash, _ := hex.DecodeString(h)
			c, err := l.net.indexedTx(ctx, i, hash, deadline)
			switch {
			case err != nil:
				missing++
				if missing <= 3 {
					where := "not in its block either"
					if l.net.inBlock(ctx, i, height, hash) {
						where = "in its block, not in the tx index"
					}
					errs = append(errs, fmt.Errorf("node%d: tx %s (committed at %d, %s): %w", i, h, height, where, err))
				}
			case c.Height != height:
				errs = append(errs, fmt.Errorf("node%d: tx %s at height %d, reported at %d", i, h, c.Height, height))
			}
		}
		if missing > 0 {
			errs = append(errs, fmt.Errorf("node%d misses %d of %d committed txs", i, missing, len(committed)))
		}
	}
	return errors.Join(errs...)
}

// indexLag is how long after its block a transaction may be missing from
// a node's tx index: CometBFT indexes a block a moment after committing it.
const indexLag = 3 * time.Second

// indexedTx is Tx, asked again until deadline when node i's index does
// not have the transaction yet (asked once after it).
func (n *Net) indexedTx(ctx context.Context, i int, hash []byte, deadline time.Time) (Committed, error) {
	for {
		c, err := n.Tx(ctx, i, hash)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return c, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// inBlock reports whether node i's block at height holds the transaction
// with hash.
func (n *Net) inBlock(ctx context.Context, i int, height int64, hash []byte) bool {
	ctx, cancel := context.WithTimeout(ctx, rpcCallTimeout)
	defer cancel()
	b, err := n.nodes[i].client.Block(ctx, &height)
	if err != nil || b.Block == nil {
		return false
	}
	for _, tx := range b.Block.Txs {
		if bytes.Equal(tx.Hash(), hash) {
			return true
		}
	}
	return false
}

// NextSequence is addr's next sequence in the state of a running node that
// has every block this process saw a transaction committed in.
func (n *Net) NextSequence(ctx context.Context, addr []byte) (uint64, error) {
	i, err := n.PickCurrent(ctx)
	if err != nil {
		return 0, err
	}
	var resp emrv1.QueryAccountResponse
	if err := n.Query(ctx, i, "Account", &emrv1.QueryAccountRequest{Address: hex.EncodeToString(addr)}, &resp); err != nil {
		return 0, err
	}
	return resp.GetAccount().GetNextSequence(), nil
}
