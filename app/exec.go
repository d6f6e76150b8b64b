package app

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// BlockInfo is what the state machine knows of the block it executes: its
// height and the time in its header. It is the only source of time.
type BlockInfo struct {
	Height int64
	Time   time.Time
	// Signers are the addresses of the validators whose signatures are in
	// the block's last commit. Only FinalizeBlock reads them, after the
	// transactions: they clear validators' unseen power (markSigned).
	Signers [][]byte
}

// Attribute is one key/value of an event; Index asks CometBFT to index it
// (tx_search).
type Attribute struct {
	Key, Value string
	Index      bool
}

// Event is emitted by a successful transaction.
type Event struct {
	Type       string
	Attributes []Attribute
}

// EventType is the type of every event emrchain emits; tx_search queries
// read e.g. "emrchain.patient='<hex>'".
const EventType = "emrchain"

// ActionAttribute (indexed) names what a transaction did: its message's
// MsgName ("add_record", "share_record", ...).
const ActionAttribute = "action"

// BlobAttribute is the (unindexed) event attribute that names, in lowercase
// hex, the SHA-256 of the ciphertext an AddRecord or ShareRecord references.
// Blob sidecars read it from block results to learn which blobs committed
// state references (offchain/sidecar); the state keeps no index by hash.
const BlobAttribute = "blob"

// BlobSizeAttribute (unindexed, decimal) is the size in bytes of the
// ciphertext BlobAttribute names, from the same event: a storage service
// bounds its copy of the blob by it, so that a blob committed before the
// consortium lowered params.max_blob_bytes is copied too
// (offchain/sidecar).
const BlobSizeAttribute = "blob_size"

// PatientAttribute (indexed, lowercase hex) names the patient a transaction
// acts on, and CategoryAttribute (unindexed) the data category of the
// record an AddRecord adds or a ShareRecord shares. The sidecars file a
// blob under both (offchain/sidecar/owner.go) and read them, next to
// BlobAttribute, from the same event.
const (
	PatientAttribute  = "patient"
	CategoryAttribute = "category"
)

// RecordAttribute (indexed) names the record a transaction adds, reads or
// shares: "<patient id in lowercase hex>/<sequence>", BlobRefName without
// its kind. Clients find a new record's sequence by it (client Upload).
const RecordAttribute = "record"

// Result is the outcome of one transaction. Code 0 is success.
type Result struct {
	Code      uint32
	Codespace string
	Log       string
	Events    []Event
	// ValidatorUpdates are the validator changes the transaction made (an
	// executed proposal), also when it ran without events.
	ValidatorUpdates []*emrv1.Validator
	// ParamsChanged: the transaction changed the params (an executed
	// proposal); they apply from the next block.
	ParamsChanged bool
}

// OK reports whether the transaction succeeded.
func (r Result) OK() bool { return r.Code == 0 }

func resultOf(err error) Result {
	return Result{Code: CodeOf(err), Codespace: Codespace, Log: err.Error()}
}

// txContext is one transaction being executed.
type txContext struct {
	st     state // the transaction's own cache
	block  BlockInfo
	params *emrv1.Params
	tx     *DecodedTx
	signer *emrv1.Member // nil only while enrolling
	event  Event
	quiet  bool // build no event (CheckTx)
	// validatorUpdates are the changes to the validator set made.
	validatorUpdates []*emrv1.Validator
	// paramsChanged: the params were changed.
	paramsChanged bool
}

// execTx runs one transaction against view. A rule violation is returned as
// a failed Result and leaves view untouched; the error return is reserved
// for storage faults (a broken invariant).
// dtx is raw already decoded, or nil. With report false the result carries
// no events: nobody reads CheckTx's, and their hex strings cost it about 7 %
// of its CPU under load.
func (a *App) execTx(view store.KV, b BlockInfo, raw []byte, dtx *DecodedTx, report bool) (Result, error) {
	if uint64(len(raw)) > a.params.MaxTxBytes {
		return resultOf(fmt.Errorf("%w: %d bytes, the limit is %d", ErrTxTooLarge, len(raw), a.params.MaxTxBytes)), nil
	}
	var err error
	verified := false // a cached transaction's signature was verified for this chain
	if dtx == nil {
		if dtx, verified, err = a.sigs.decode(raw); err != nil {
			return resultOf(err), nil
		}
	}
	// The chain first: a transaction for another chain is refused without
	// a signature check, and never cached.
	if dtx.Body.ChainId != a.chainID {
		return resultOf(fmt.Errorf("%w: transaction is for %q, this chain is %q", ErrWrongChain, dtx.Body.ChainId, a.chainID)), nil
	}
	if !verified {
		if err := a.sigs.verify(dtx); err != nil {
			return resultOf(err), nil
		}
	}
	if limit := dtx.Body.TimeoutHeight; limit != 0 && uint64(b.Height) > limit {
		return resultOf(fmt.Errorf("%w: block %d is past the transaction's timeout height %d, so it can never execute: sign and send it again", ErrTxExpired, b.Height, limit)), nil
	}
	cache := store.NewCache(view)
	ctx := &txContext{
		st:     state{cache},
		block:  b,
		params: a.params,
		tx:     dtx,
		event:  Event{Type: EventType},
		quiet:  !report,
	}
	ctx.attr(ActionAttribute, MsgName(dtx.Body.Msg))
	ctx.attrHex("signer", dtx.Signer)
	err = ctx.authenticate()
	if err == nil {
		err = ctx.dispatch()
	}
	if err == nil {
		err = ctx.st.setNextSequence(dtx.Signer, dtx.Body.Sequence+1)
	}
	if err != nil {
		cache.Discard()
		if CodeOf(err) == ErrInternal.Code() {
			return Result{}, fmt.Errorf("tx %X: %w", dtx.Hash, err)
		}
		return resultOf(err), nil
	}
	if err := cache.Write(); err != nil {
		return Result{}, fmt.Errorf("tx %X: write: %w", dtx.Hash, err)
	}
	res := Result{ValidatorUpdates: ctx.validatorUpdates, ParamsChanged: ctx.paramsChanged}
	if !ctx.quiet {
		res.Events = []Event{ctx.event}
	}
	return res, nil
}

// authenticate checks the signer's sequence and standing. The signature was
// verified before.
func (ctx *txContext) authenticate() error {
	signer := ctx.tx.Signer
	next, err := ctx.st.nextSequence(signer)
	if err != nil {
		return err
	}
	if ctx.tx.Body.Sequence != next {
		return fmt.Errorf("%w: signer %X must use sequence %d, the transaction has %d", ErrBadSequence, signer, next, ctx.tx.Body.Sequence)
	}
	member, err := ctx.st.member(signer)
	if err != nil {
		return err
	}
	if _, enrolling := ctx.tx.Body.Msg.Sum.(*emrv1.Msg_EnrollPatient); enrolling {
		if member != nil {
			return fmt.Errorf("%w: account %X is already a %s", ErrAlreadyExists, signer, RoleName(member.Role))
		}
		return nil
	}
	if member == nil {
		return fmt.Errorf("%w: %X is not a member of the consortium", ErrUnknownSigner, signer)
	}
	if !bytes.Equal(member.SignPubKey, ctx.tx.Body.SignerPubKey) {
		return fmt.Errorf("%w: signer key does not match member %X", ErrBadSignature, signer)
	}
	if !IsActive(member) {
		return fmt.Errorf("%w: member %X is %s and can sign nothing", ErrSignerSuspended, signer, StatusName(member.Status))
	}
	ctx.signer = member
	return nil
}

func (ctx *txContext) dispatch() error {
	switch m := ctx.tx.Body.Msg.Sum.(type) {
	case *emrv1.Msg_RegisterMember:
		return ctx.registerMember(m.RegisterMember)
	case *emrv1.Msg_SetMemberStatus:
		return ctx.setMemberStatus(m.SetMemberStatus)
	case *emrv1.Msg_EnrollPatient:
		return ctx.enrollPatient(m.EnrollPatient)
	case *emrv1.Msg_Grant:
		return ctx.grant(m.Grant)
	case *emrv1.Msg_Revoke:
		return ctx.revoke(m.Revoke)
	case *emrv1.Msg_RotateKey:
		return ctx.rotateKey(m.RotateKey)
	case *emrv1.Msg_AddRecord:
		return ctx.addRecord(m.AddRecord)
	case *emrv1.Msg_RecordAccess:
		return ctx.recordAccess(m.RecordAccess)
	case *emrv1.Msg_RegisterStudy:
		return ctx.registerStudy(m.RegisterStudy)
	case *emrv1.Msg_ShareRecord:
		return ctx.shareRecord(m.ShareRecord)
	case *emrv1.Msg_Propose:
		return ctx.propose(m.Propose)
	case *emrv1.Msg_Approve:
		return ctx.approve(m.Approve)
	case *emrv1.Msg_Withdraw:
		return ctx.withdraw(m.Withdraw)
	}
	// DecodeTx validated the message type.
	return fmt.Errorf("%w: unhandled message %T", ErrTxDecode, ctx.tx.Body.Msg.Sum)
}

// attr adds an attribute CometBFT indexes: who and what a transaction is
// about (action, signer, patient, member, grantee, record, study), what an
// auditor searches by with tx_search.
func (ctx *txContext) attr(key, value string) {
	if !ctx.quiet {
		ctx.event.Attributes = append(ctx.event.Attributes, Attribute{Key: key, Value: value, Index: true})
	}
}

// attrHex is attr with value in lowercase hex.
func (ctx *txContext) attrHex(key string, value []byte) {
	if !ctx.quiet {
		ctx.attr(key, hex.EncodeToString(value))
	}
}

// attrRecord adds the indexed "record" attribute naming a patient's record
// (recordRef).
func (ctx *txContext) attrRecord(patient []byte, seq uint64) {
	if !ctx.quiet {
		ctx.attr(RecordAttribute, recordRef(patient, seq))
	}
}

// detail adds an attribute that is reported but not indexed (each indexed
// attribute is one more write into the node's tx index per transaction).
func (ctx *txContext) detail(key, value string) {
	if !ctx.quiet {
		ctx.event.Attributes = append(ctx.event.Attributes, Attribute{Key: key, Value: value})
	}
}

// detailHex is detail with value in lowercase hex.
func (ctx *txContext) detailHex(key string, value []byte) {
	if !ctx.quiet {
		ctx.detail(key, hex.EncodeToString(value))
	}
}

// ownedPatient loads a patient and insists the signer owns it.
func (ctx *txContext) ownedPatient(id []byte) (*emrv1.Patient, error) {
	p, err := ctx.patient(id)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p.Owner, ctx.tx.Signer) {
		return nil, fmt.Errorf("%w: only the patient's owner may do this", ErrUnauthorized)
	}
	return p, nil
}

// patient loads an existing patient.
func (ctx *txContext) patient(id []byte) (*emrv1.Patient, error) {
	p, err := ctx.st.patient(id)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%w: no patient %x", ErrNotFound, id)
	}
	ctx.attrHex(PatientAttribute, id)
	return p, nil
}

// authorize checks that the signer may use right on category of patient p
// at the block's time: the owner always may; anyone else needs a permission.
func (ctx *txContext) authorize(p *emrv1.Patient, right emrv1.Right, category string) (*emrv1.Permission, error) {
	if bytes.Equal(p.Owner, ctx.tx.Signer) {
		return nil, nil
	}
	perm, err := ctx.st.permission(p.Id, ctx.tx.Signer)
	if err != nil {
		return nil, err
	}
	if err := CheckPermission(perm, ctx.signer, right, category, ctx.block.Time); err != nil {
		return nil, err
	}
	return perm, nil
}

func (ctx *txContext) knownCategory(c string) error { return KnownCategory(ctx.params, c) }

// KnownCategory refuses a record category p does not list
// (ErrUnknownCategory): the chain's rule, which clients check before they
// upload.
func KnownCategory(p *emrv1.Params, c string) error {
	if slices.Contains(p.Categories, c) {
		return nil
	}
	return fmt.Errorf("%w: %q (known: %v)", ErrUnknownCategory, c, p.Categories)
}

// CheckBlobSize refuses a ciphertext of size bytes past p's
// max_blob_bytes (ErrTooLarge): the chain's rule for a record's or a
// share's file, which clients check before they upload.
func CheckBlobSize(p *emrv1.Params, size uint64) error {
	if size > p.MaxBlobBytes {
		return fmt.Errorf("%w: file is %d bytes, the limit is %d", ErrTooLarge, size, p.MaxBlobBytes)
	}
	return nil
}

// RoleName names a role in messages: "clinician", "emergency service".
func RoleName(r emrv1.Role) string {
	switch r {
	case emrv1.Role_ROLE_PATIENT:
		return "patient"
	case emrv1.Role_ROLE_CLINICIAN:
		return "clinician"
	case emrv1.Role_ROLE_RESEARCHER:
		return "researcher"
	case emrv1.Role_ROLE_REGISTRAR:
		return "registrar"
	case emrv1.Role_ROLE_AUDITOR:
		return "auditor"
	case emrv1.Role_ROLE_EMERGENCY_SERVICE:
		return "emergency service"
	case emrv1.Role_ROLE_STORAGE_SERVICE:
		return "storage service"
	}
	return r.String()
}
