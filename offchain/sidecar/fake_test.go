package sidecar

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// fakeChain is an in-memory ChainView for unit tests.
type fakeChain struct {
	mu       sync.Mutex
	head     Head
	params   *emrv1.Params
	members  map[string]*emrv1.Member
	patients map[string]*emrv1.Patient
	perms    map[string][]*emrv1.Permission
	records  []*emrv1.Record
	shares   []*emrv1.Share
	access   map[string]*emrv1.AccessEvent
	studies  map[string]*emrv1.Study
	// orgs are the organizations members were added to (addMember).
	orgs map[string]*emrv1.Organization
	// sizes are the sizes of the blobs env put, which the records and
	// shares of those blobs carry, as on the chain.
	sizes map[[32]byte]uint64
	down  bool
	// syncing makes Head fail as a node catching up does; lookups still
	// answer, from its stale state.
	syncing bool
	// times are the block times of heights 1 to head.
	times map[int64]time.Time
	// blockCalls are the from heights BlockBlobs was asked for; a call
	// whose blocks include failBlock fails.
	blockCalls []int64
	failBlock  int64
	// stateCalls counts the StateBlobs calls.
	stateCalls int
	// afterBlocks, if set, runs once after the next BlockBlobs call has
	// read the chain.
	afterBlocks func()
	// stateCycle makes StateBlobs answer its last page with the first
	// page's position as the next.
	stateCycle bool
	// memberCalls counts the Member lookups, headCalls the Head ones.
	memberCalls int
	headCalls   int
	// onHead, if set, runs in each Head call.
	onHead func()
}

func newFakeChain(now time.Time) *fakeChain {
	f := &fakeChain{
		head:     Head{Height: 10, Time: now},
		params:   &emrv1.Params{MaxBlobBytes: 1 << 20},
		members:  map[string]*emrv1.Member{},
		patients: map[string]*emrv1.Patient{},
		perms:    map[string][]*emrv1.Permission{},
		access:   map[string]*emrv1.AccessEvent{},
		studies:  map[string]*emrv1.Study{},
		orgs:     map[string]*emrv1.Organization{},
		times:    map[int64]time.Time{},
		sizes:    map[[32]byte]uint64{},
	}
	for h := int64(1); h <= f.head.Height; h++ {
		f.times[h] = now.Add(time.Duration(h-f.head.Height) * time.Second)
	}
	return f
}

func (f *fakeChain) check() error {
	if f.down {
		return fmt.Errorf("%w: fake chain is down", ErrChainUnavailable)
	}
	return nil
}

func (f *fakeChain) Head(context.Context) (Head, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headCalls++
	if f.onHead != nil {
		f.onHead()
	}
	if f.syncing {
		return Head{}, fmt.Errorf("%w: the node is catching up", ErrChainUnavailable)
	}
	return f.head, f.check()
}

func (f *fakeChain) Params(context.Context) (*emrv1.Params, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.params, f.check()
}

func (f *fakeChain) Member(_ context.Context, addr []byte) (*emrv1.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.memberCalls++
	if err := f.check(); err != nil {
		return nil, err
	}
	m, ok := f.members[string(addr)]
	if !ok {
		return nil, fmt.Errorf("%w: member", ErrNotFound)
	}
	return m, nil
}

// memberLookups is how many times Member was asked.
func (f *fakeChain) memberLookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.memberCalls
}

func (f *fakeChain) Patient(_ context.Context, id []byte) (*emrv1.Patient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	p, ok := f.patients[string(id)]
	if !ok {
		return nil, fmt.Errorf("%w: patient", ErrNotFound)
	}
	return p, nil
}

func (f *fakeChain) Permission(_ context.Context, id, grantee []byte) (*emrv1.Permission, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	for _, p := range f.perms[string(id)] {
		if bytes.Equal(p.Grantee, grantee) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: permission", ErrNotFound)
}

func (f *fakeChain) Record(_ context.Context, id []byte, seq uint64) (*emrv1.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	for _, r := range f.records {
		if bytes.Equal(r.PatientId, id) && r.Sequence == seq {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: record", ErrNotFound)
}

func (f *fakeChain) Share(_ context.Context, id []byte, seq uint64) (*emrv1.Share, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	for _, s := range f.shares {
		if bytes.Equal(s.PatientId, id) && s.Sequence == seq {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: share", ErrNotFound)
}

// BlockBlobs lists the heights from..head (at most max) with the keys of
// the blobs of the records and shares added at each (a share's under the
// category of the record it shares).
func (f *fakeChain) BlockBlobs(ctx context.Context, from int64, max int) ([]BlockBlobs, error) {
	out, err := f.blockBlobs(ctx, from, max)
	f.mu.Lock()
	hook := f.afterBlocks
	f.afterBlocks = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return out, err
}

func (f *fakeChain) blockBlobs(_ context.Context, from int64, max int) ([]BlockBlobs, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blockCalls = append(f.blockCalls, from)
	if err := f.check(); err != nil {
		return nil, err
	}
	if from < f.head.Earliest {
		return nil, fmt.Errorf("%w: fake chain holds no block %d (its earliest is %d)", ErrChainUnavailable, from, f.head.Earliest)
	}
	to := min(f.head.Height, from+int64(max)-1)
	if f.failBlock >= from && f.failBlock <= to {
		return nil, fmt.Errorf("%w: fake chain cannot read block %d", ErrChainUnavailable, f.failBlock)
	}
	var out []BlockBlobs
	for h := from; h <= to; h++ {
		b := BlockBlobs{Height: h, Time: f.times[h]}
		for _, r := range f.records {
			if r.Height == h {
				b.Blobs = append(b.Blobs, CommittedBlob{BlobKey(r.PatientId, r.Category, [32]byte(r.CiphertextSha256)), r.Size})
			}
		}
		for _, s := range f.shares {
			if s.Height != h {
				continue
			}
			for _, r := range f.records {
				if bytes.Equal(r.PatientId, s.PatientId) && r.Sequence == s.RecordSequence {
					b.Blobs = append(b.Blobs, CommittedBlob{BlobKey(s.PatientId, r.Category, [32]byte(s.SharedSha256)), s.Size})
				}
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// fakeStatePage is how many blobs a StateBlobs page of the fake lists.
const fakeStatePage = 2

// StateBlobs lists the blobs of every record, then of every share, in the
// order they were added, fakeStatePage at a time; after is the offset of
// the page in that list.
func (f *fakeChain) StateBlobs(_ context.Context, after string) (StateBlobs, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stateCalls++
	if err := f.check(); err != nil {
		return StateBlobs{}, err
	}
	var all []CommittedBlob
	for _, r := range f.records {
		all = append(all, CommittedBlob{BlobKey(r.PatientId, r.Category, [32]byte(r.CiphertextSha256)), r.Size})
	}
	for _, s := range f.shares {
		for _, r := range f.records {
			if bytes.Equal(r.PatientId, s.PatientId) && r.Sequence == s.RecordSequence {
				all = append(all, CommittedBlob{BlobKey(s.PatientId, r.Category, [32]byte(s.SharedSha256)), s.Size})
			}
		}
	}
	from := 0
	if after != "" {
		var err error
		if from, err = strconv.Atoi(after); err != nil || from > len(all) {
			return StateBlobs{}, fmt.Errorf("fake chain: bad after %q", after)
		}
	}
	page := StateBlobs{Height: f.head.Height, Blobs: all[from:min(from+fakeStatePage, len(all))]}
	if end := from + len(page.Blobs); end < len(all) {
		page.Next = strconv.Itoa(end)
	} else if f.stateCycle {
		page.Next = "0"
	}
	return page, nil
}

func accessKey(id []byte, seq uint64, who []byte) string {
	return fmt.Sprintf("%x/%d/%x", id, seq, who)
}

func (f *fakeChain) LastAccess(_ context.Context, id []byte, seq uint64, who []byte) (*emrv1.AccessEvent, error) {
	return f.lastAccess(accessKey(id, seq, who))
}

func (f *fakeChain) LastShareRead(_ context.Context, id []byte, share uint64, who []byte) (*emrv1.AccessEvent, error) {
	return f.lastAccess("share/" + accessKey(id, share, who))
}

func (f *fakeChain) lastAccess(key string) (*emrv1.AccessEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	ev, ok := f.access[key]
	if !ok {
		return nil, fmt.Errorf("%w: access", ErrNotFound)
	}
	return ev, nil
}

// shareRead commits who's read of share sh.
func (f *fakeChain) shareRead(sh *emrv1.Share, who *actor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.access["share/"+accessKey(sh.PatientId, sh.Sequence, who.Address())] = &emrv1.AccessEvent{
		PatientId: sh.PatientId, RecordSequence: sh.RecordSequence, ShareSequence: sh.Sequence, Accessor: who.Address(),
		Purpose: emrv1.Purpose_PURPOSE_RESEARCH, Height: f.head.Height, Time: timestamppb.New(f.head.Time),
	}
}

func (f *fakeChain) Organization(_ context.Context, id string) (*emrv1.Organization, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	o, ok := f.orgs[id]
	if !ok {
		return nil, fmt.Errorf("%w: organization", ErrNotFound)
	}
	return o, nil
}

func (f *fakeChain) Study(_ context.Context, id string) (*emrv1.Study, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	s, ok := f.studies[id]
	if !ok {
		return nil, fmt.Errorf("%w: study", ErrNotFound)
	}
	return s, nil
}

// actor is a test member: its signing key and its X25519 key (a storage
// service's replicas are sealed to it).
type actor struct {
	KeyRecipient
	member *emrv1.Member
}

// newActor is the keys of name, on no chain: a member's signing key and
// the X25519 key its answers are sealed to.
func newActor(name string) *actor {
	encSeed := sha256.Sum256([]byte("sidecar-test-enc/" + name))
	enc, err := ecdh.X25519().NewPrivateKey(encSeed[:])
	if err != nil {
		panic(err)
	}
	return &actor{KeyRecipient: KeyRecipient{KeySigner: KeySigner{Key: newKey(name)}, Enc: enc}}
}

func (f *fakeChain) addMember(name string, role emrv1.Role, org string) *actor {
	a := newActor(name)
	a.member = &emrv1.Member{
		Address: a.Address(), SignPubKey: a.PubKey(), EncPubKey: a.Enc.PublicKey().Bytes(), Role: role, OrganizationId: org,
		Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE,
	}
	f.mu.Lock()
	f.members[string(a.Address())] = a.member
	if _, ok := f.orgs[org]; !ok {
		f.orgs[org] = &emrv1.Organization{Id: org}
	}
	f.mu.Unlock()
	return a
}

func (f *fakeChain) setStatus(a *actor, st emrv1.MemberStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a.member.Status = st
}

func (f *fakeChain) enroll(owner *actor, id []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.patients[string(id)] = &emrv1.Patient{Id: id, Owner: owner.Address(), KeyVersion: 1}
}

func (f *fakeChain) grant(id []byte, to *actor, notAfter time.Time, rights ...emrv1.Right) *emrv1.Permission {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := &emrv1.Permission{PatientId: id, Grantee: to.Address(), Rights: rights, NotAfter: timestamppb.New(notAfter), GrantedHeight: f.head.Height}
	f.perms[string(id)] = append(f.perms[string(id)], p)
	return p
}

func (f *fakeChain) revoke(p *emrv1.Permission) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p.RevokedHeight = f.head.Height
}

// testCategory is the data category of the fake chain's records unless a
// test says otherwise.
const testCategory = "lab-results"

func (f *fakeChain) addRecord(id []byte, sum [32]byte, uploader *actor) *emrv1.Record {
	return f.addRecordIn(id, testCategory, sum, uploader)
}

func (f *fakeChain) addRecordIn(id []byte, category string, sum [32]byte, uploader *actor) *emrv1.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &emrv1.Record{PatientId: id, Sequence: f.nextRecord(id), Category: category, CiphertextSha256: sum[:], Uploader: uploader.Address(),
		Size: f.sizes[sum], Time: timestamppb.New(f.head.Time), Height: f.head.Height}
	f.records = append(f.records, r)
	return r
}

// uploaded notes the size of a blob put, for the records and shares of it.
func (f *fakeChain) uploaded(data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sizes[sha256.Sum256(data)] = uint64(len(data))
}

// nextRecord is the sequence the next record of patient id gets.
func (f *fakeChain) nextRecord(id []byte) uint64 {
	n := uint64(1)
	for _, r := range f.records {
		if bytes.Equal(r.PatientId, id) {
			n++
		}
	}
	return n
}

// addShare shares rec with study: sum is the re-encrypted ciphertext.
func (f *fakeChain) addShare(rec *emrv1.Record, study string, sum [32]byte, sharer *actor) *emrv1.Share {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &emrv1.Share{PatientId: rec.PatientId, Sequence: uint64(len(f.shares) + 1), RecordSequence: rec.Sequence, StudyId: study,
		SharedSha256: sum[:], Size: f.sizes[sum], Sharer: sharer.Address(), Time: timestamppb.New(f.head.Time), Height: f.head.Height}
	f.shares = append(f.shares, s)
	return s
}

func (f *fakeChain) recordAccess(r *emrv1.Record, who *actor, purpose emrv1.Purpose) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.access[accessKey(r.PatientId, r.Sequence, who.Address())] = &emrv1.AccessEvent{
		PatientId: r.PatientId, RecordSequence: r.Sequence, Accessor: who.Address(), Purpose: purpose,
		Height: f.head.Height, Time: timestamppb.New(f.head.Time),
	}
}

// emergencyAccess commits who's emergency read of r through emergency
// service via.
func (f *fakeChain) emergencyAccess(r *emrv1.Record, who, via *actor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.access[accessKey(r.PatientId, r.Sequence, who.Address())] = &emrv1.AccessEvent{
		PatientId: r.PatientId, RecordSequence: r.Sequence, Accessor: who.Address(), Purpose: emrv1.Purpose_PURPOSE_EMERGENCY,
		EmergencyService: via.Address(), EmergencyReason: emrv1.EmergencyReason_EMERGENCY_REASON_IMMEDIATE_THREAT,
		Height: f.head.Height, Time: timestamppb.New(f.head.Time),
	}
}

// edit changes the chain's objects under its lock, as a committed block
// would.
func (f *fakeChain) edit(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

// shift moves the time of every block by d: the validators' clock runs d
// ahead of the sidecar's, or, for a negative d, the node stopped following
// the chain -d ago.
func (f *fakeChain) shift(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for h, t := range f.times {
		f.times[h] = t.Add(d)
	}
	f.head.Time = f.head.Time.Add(d)
}

func (f *fakeChain) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.head.Height++
	f.head.Time = f.head.Time.Add(d)
	f.times[f.head.Height] = f.head.Time
}
