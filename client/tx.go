package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Signer signs transactions: an ed25519 key (client/keyring's keys, test
// actors, an HSM).
type Signer interface {
	// PubKey is the 32-byte ed25519 public key.
	PubKey() []byte
	// Address is app.AddressOf(PubKey()).
	Address() []byte
	// Sign returns the 64-byte ed25519 signature of msg.
	Sign(msg []byte) ([]byte, error)
}

// Recipient is a Signer that also holds the member's X25519 private key,
// whose public key the chain has for it: a sidecar seals the ciphertext it
// serves to that key, so downloads need one (a *keyring.Key is one).
type Recipient interface {
	Signer
	EncPrivKey() *ecdh.PrivateKey
}

// TxResult is the outcome of a transaction.
type TxResult struct {
	Hash []byte
	// Height of the block that holds the transaction; 0 when not waited for.
	Height int64
	// Code 0 is success; otherwise an app result code (app/errors.go).
	Code      uint32
	Codespace string
	// Log is the chain's message. Unlike Code, it is not part of the
	// block's results hash, so it is informational even when verified.
	Log string
	// Verified is true when inclusion and Code were checked against
	// light-client-verified headers.
	Verified bool
	// Events the transaction emitted (not covered by the results hash:
	// informational, like Log).
	Events []TxEvent
}

// TxEvent is one event of a transaction result.
type TxEvent struct {
	Type       string
	Attributes []TxAttribute
}

// TxAttribute is one key/value of an event.
type TxAttribute struct{ Key, Value string }

// Attribute returns the values of every attribute key in the events of
// type typ.
func (r *TxResult) Attribute(typ, key string) []string {
	var out []string
	for _, e := range r.Events {
		if e.Type != typ {
			continue
		}
		for _, a := range e.Attributes {
			if a.Key == key {
				out = append(out, a.Value)
			}
		}
	}
	return out
}

// TxTimeoutBlocks is how many blocks past the head it was signed at a
// transaction Submit or SignTx signs may still be executed in (its
// timeout height): enough for a congested mempool, and a bound on how long
// a node that held a transaction back instead of passing it on can keep
// it valid.
const TxTimeoutBlocks = 100

// Sequence returns the sequence the next transaction of addr must carry.
// In verified mode it is proven: a node that reported a later one could
// make the signer sign a transaction it holds back, valid once the
// signer's sequence reaches it.
func (c *Client) Sequence(ctx context.Context, addr []byte) (uint64, error) {
	seq, _, err := c.sequenceAt(ctx, addr)
	return seq, err
}

// sequenceAt is Sequence and the height of the state it was read from.
//
// A verified read proves the state before the newest block (whose proof
// is the next header), so a transaction of the signer's in the newest
// block (sent by another of its processes or devices) is not in it yet.
// When the node's unproven answer says the sequence has moved past the
// proven one, the state of the node's newest block is proven once its
// next header is there (a moment after a block with transactions). A
// node that invented that answer gets the proven sequence of that state,
// and one that cannot prove it the older proven one: a sequence too low
// can only make the transaction fail.
func (c *Client) sequenceAt(ctx context.Context, addr []byte) (uint64, int64, error) {
	req := &emrv1.QueryAccountRequest{Address: fmt.Sprintf("%x", addr)}
	var resp emrv1.QueryAccountResponse
	info, err := c.QueryInfo(ctx, "Account", req, &resp)
	if err != nil {
		return 0, 0, fmt.Errorf("sequence of %X: %w", addr, err)
	}
	seq, height := resp.GetAccount().GetNextSequence(), info.Height
	if !c.cfg.Verify {
		return seq, height, nil
	}
	var hint emrv1.QueryAccountResponse
	if err := c.queryUnverified(ctx, 0, "Account", req, &hint); err != nil ||
		hint.GetAccount().GetNextSequence() <= seq || hint.Height <= height {
		return seq, height, nil
	}
	// The node may have made the proof of the hint's state meanwhile: a
	// fresh proven read of the newest provable state, before any wait for a
	// header (on an idle chain the next one after a proof block is an empty
	// block, seconds away).
	var newer emrv1.QueryAccountResponse
	ninfo, err := c.QueryInfo(ctx, "Account", req, &newer)
	if err == nil && ninfo.Height >= height {
		seq, height = newer.GetAccount().GetNextSequence(), ninfo.Height
		if seq >= hint.GetAccount().GetNextSequence() || height >= hint.Height {
			return seq, height, nil
		}
	}
	if err == nil || ctx.Err() == nil {
		newer.Reset()
		ninfo, err = c.QueryInfoAt(ctx, hint.Height, "Account", req, &newer)
	}
	switch {
	case err == nil:
		return newer.GetAccount().GetNextSequence(), ninfo.Height, nil
	case ctx.Err() != nil:
		return 0, 0, fmt.Errorf("sequence of %X: %w", addr, err)
	}
	return seq, height, nil
}

// SignTx builds and signs a transaction carrying msg, with the signer's
// next sequence and a timeout height TxTimeoutBlocks past the head.
func (c *Client) SignTx(ctx context.Context, s Signer, msg *emrv1.Msg) ([]byte, error) {
	seq, height, err := c.sequenceAt(ctx, s.Address())
	if err != nil {
		return nil, &notSentError{err}
	}
	tx, err := c.signTx(s, seq, timeoutAfter(height), msg)
	if err != nil {
		return nil, &notSentError{err}
	}
	return tx, nil
}

// notSentError: a transaction was never handed to a node: the reads
// before its signing, or the signing, failed, or the context had ended.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// NotSent reports whether err (from SignTx, Broadcast or Submit) says the
// transaction was never sent: what it carries (a consent's sealed key)
// reached no node. Other errors leave that open.
func NotSent(err error) bool {
	var ns *notSentError
	return errors.As(err, &ns)
}

// notApplied reports whether err (from Submit) proves that the transaction
// did not and will not take effect: it was never sent (NotSent), or it
// failed in a committed block. A node's refusal in CheckTx is that node's
// word (it may have kept the transaction, as with a wrong sequence, or
// another node may take it), and any other error (a wait cut short, a node
// that stopped answering) leaves open whether it was committed.
func notApplied(err error) bool {
	var ce *ChainError
	return NotSent(err) || errors.As(err, &ce) && ce.Tx && ce.Height > 0
}

// storedButFailed is the error of an upload or a share whose ciphertext is
// stored (stored says so) and whose transaction failed with err. It says
// of what (the record, the share) that it was not done (done: "added")
// only when err proves it (notApplied); otherwise that it may have been,
// and to look (check, a command) before trying again, or else (twice).
func storedButFailed(err error, stored, what, done, check, twice string) error {
	switch {
	case notApplied(err):
		return fmt.Errorf("%s but %s was not %s: %w", stored, what, done, err)
	case errors.Is(err, ErrTxRejected):
		return fmt.Errorf("%s, and a node refused %s: %w; a node's refusal is its own word, so see whether %s was %s (%s) before trying again, or %s",
			stored, what, err, what, done, check, twice)
	}
	return fmt.Errorf("%s, and %s may have been %s: %w; try again only once you know it was not (%s), or %s",
		stored, what, done, err, check, twice)
}

// SignTxWithSequence signs msg with an explicit sequence and no timeout
// height.
func (c *Client) SignTxWithSequence(s Signer, seq uint64, msg *emrv1.Msg) ([]byte, error) {
	return c.signTx(s, seq, 0, msg)
}

// timeoutAfter is the timeout height of a transaction signed when the
// head was at height.
func timeoutAfter(height int64) uint64 { return uint64(max(height, 0)) + TxTimeoutBlocks }

// signTx signs msg with sequence seq and timeout height timeout (0: none).
func (c *Client) signTx(s Signer, seq, timeout uint64, msg *emrv1.Msg) ([]byte, error) {
	if !bytes.Equal(app.AddressOf(s.PubKey()), s.Address()) {
		return nil, errors.New("signer's address does not match its public key")
	}
	return app.EncodeTx(&emrv1.TxBody{
		ChainId:       c.chainID,
		SignerPubKey:  s.PubKey(),
		Sequence:      seq,
		Msg:           msg,
		TimeoutHeight: timeout,
	}, s.Sign)
}

// Broadcast submits tx with broadcast_tx_sync. A CheckTx rejection is a
// *ChainError matching ErrTxRejected. With wait, it then polls the node
// until the transaction is in a committed block (within the timeout) and
// returns its result; a non-zero block result is also a *ChainError. In
// verified mode the inclusion and code are verified (TxStatus).
func (c *Client) Broadcast(ctx context.Context, tx []byte, wait bool) (*TxResult, error) {
	hash := app.TxHash(tx)
	if err := ctx.Err(); err != nil {
		return nil, &notSentError{err} // not a transaction that may yet be committed
	}
	bctx, cancel := c.withTimeout(ctx)
	res, err := c.rpc.BroadcastTxSync(bctx, tx)
	cancel()
	if cerr := checkTxRejection(err, hash); cerr != nil {
		return nil, cerr
	}
	switch {
	case err == nil:
		if res.Code != 0 {
			return nil, &ChainError{Tx: true, Hash: hash, Code: res.Code, Codespace: res.Codespace, Log: res.Log}
		}
		if len(res.Hash) > 0 && !bytes.Equal(res.Hash, hash) {
			return nil, fmt.Errorf("node reports hash %X for transaction %X", res.Hash, hash)
		}
	case wait && (errors.Is(err, context.DeadlineExceeded) || isAlreadyInCache(err)):
		// Maybe it did get in: look for it below.
	default:
		return nil, fmt.Errorf("broadcast to %s: %w", c.cfg.Node, err)
	}
	if !wait {
		return &TxResult{Hash: hash}, nil
	}
	var timeout uint64
	if dtx, err := app.DecodeTx(tx); err == nil {
		timeout = dtx.Body.GetTimeoutHeight()
	}
	return c.waitTx(ctx, hash, timeout)
}

// invalidTxRE parses CometBFT's mempool.ErrInvalidTx, which broadcast_tx_sync
// returns as an RPC error (not as a result with a code) when CheckTx fails.
var invalidTxRE = regexp.MustCompile(`(?s)is invalid: code=(\d+), data=[0-9A-Fa-f]*, log='(.*)', codespace='([^']*)'`)

// checkTxRejection turns a CheckTx rejection reported as an RPC error into
// a *ChainError; nil when err is something else.
func checkTxRejection(err error, hash []byte) error {
	if err == nil {
		return nil
	}
	m := invalidTxRE.FindStringSubmatch(err.Error())
	if m == nil {
		return nil
	}
	code, perr := strconv.ParseUint(m[1], 10, 32)
	if perr != nil || code == 0 {
		return nil
	}
	return &ChainError{Tx: true, Hash: hash, Code: uint32(code), Codespace: m[3], Log: m[2]}
}

func isAlreadyInCache(err error) bool {
	return err != nil && strings.Contains(err.Error(), "already exists in cache")
}

// NotCommittedError: a transaction was accepted but not seen in a block
// within the client's timeout. It may still be committed, but never past
// its timeout height, if it has one.
type NotCommittedError struct {
	Hash   []byte
	Within time.Duration
	// TimeoutHeight is the transaction's (0: none, or not known).
	TimeoutHeight uint64
	// Cause is why the wait stopped before the client's timeout (the
	// caller's context ended); nil when the timeout passed.
	Cause error
}

func (e *NotCommittedError) Error() string {
	what := fmt.Sprintf("transaction %X not committed within %s", e.Hash, e.Within)
	if e.Cause != nil {
		what = fmt.Sprintf("stopped waiting for transaction %X (%v)", e.Hash, e.Cause)
	}
	if e.TimeoutHeight == 0 {
		return fmt.Sprintf("%s: it may still be committed; check with: emrcli tx status %X", what, e.Hash)
	}
	return fmt.Sprintf("%s: it may still be committed, until block %d (its timeout height), never after; check with: emrcli tx status %X",
		what, e.TimeoutHeight, e.Hash)
}

// Unwrap is the cause (context.Canceled, say), if the caller stopped the
// wait.
func (e *NotCommittedError) Unwrap() error { return e.Cause }

// waitTx polls for hash (a transaction with timeout height timeout, 0 if
// none or unknown) until it is committed or the client's timeout passes.
func (c *Client) waitTx(ctx context.Context, hash []byte, timeout uint64) (*TxResult, error) {
	wctx, cancel := c.withTimeout(ctx)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := c.TxStatus(wctx, hash)
		if err == nil {
			if r.Code != 0 {
				return r, &ChainError{Tx: true, Hash: hash, Height: r.Height, Code: r.Code, Codespace: r.Codespace, Log: r.Log}
			}
			return r, nil
		}
		if wctx.Err() != nil {
			// The wait ran out or was stopped, maybe in the middle of a
			// look: the transaction may still be committed.
			return nil, &NotCommittedError{Hash: hash, Within: c.cfg.Timeout, TimeoutHeight: timeout, Cause: ctx.Err()}
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		select {
		case <-wctx.Done():
			return nil, &NotCommittedError{Hash: hash, Within: c.cfg.Timeout, TimeoutHeight: timeout, Cause: ctx.Err()}
		case <-tick.C:
		}
	}
}

// Submit signs msg with the signer's next sequence, broadcasts it and
// waits for its block.
//
// If the chain refuses it for a wrong sequence (another transaction of
// the same signer took it in between), Submit signs it again once, with
// the next sequence, but only when that cannot execute the message twice.
// Unverified, it trusts the node. Verified, the refusal may be the node's
// lie about a transaction it did pass on, so Submit first proves from
// verified state that the first transaction was not executed and never
// can be (resignSequence): the signer's sequence used by it has been
// taken, by a block that does not hold it. If that block holds it, the
// first transaction's own verified result is returned; if the sequence is
// still free (before the transaction's timeout height), or anything cannot
// be proven, the refusal is returned and nothing is signed again.
func (c *Client) Submit(ctx context.Context, s Signer, msg *emrv1.Msg) (*TxResult, error) {
	// The transaction is in no block at or below floor: it does not exist yet.
	floor := c.MinHeight()
	seq, height, err := c.sequenceAt(ctx, s.Address())
	if err != nil {
		return nil, &notSentError{err}
	}
	timeout := timeoutAfter(height)
	tx, err := c.signTx(s, seq, timeout, msg)
	if err != nil {
		return nil, &notSentError{err}
	}
	res, err := c.Broadcast(ctx, tx, true)
	if !errors.Is(err, app.ErrBadSequence) {
		return res, err
	}
	next, rerr := c.resignSequence(ctx, s.Address(), seq, timeout, app.TxHash(tx), floor)
	switch {
	case errors.Is(rerr, errTxExecuted):
		return c.waitTx(ctx, app.TxHash(tx), timeout)
	case rerr != nil:
		return nil, fmt.Errorf("%w (not signed again: %w)", err, rerr)
	}
	if tx, err = c.signTx(s, next, timeoutAfter(max(height, c.MinHeight())), msg); err != nil {
		return nil, err
	}
	return c.Broadcast(ctx, tx, true)
}

// errTxExecuted: the transaction refused for its sequence is in the block
// that used that sequence.
var errTxExecuted = errors.New("the transaction is in a block")

// resignSequence returns the sequence to sign a message again with, after
// its transaction (hash, with sequence seq and timeout height timeout of
// signer addr, made after state floor) was refused for a wrong sequence.
// Unverified, it is the node's next sequence. Verified, it must be proven
// that the transaction cannot execute: either the verified state is past
// its timeout height with seq still unused, or the signer's verified next
// sequence is past seq (so the transaction can never be valid again) and
// the block where it passed seq (found by verified reads of the account
// at past heights, after floor) does not hold the transaction.
// errTxExecuted when that block holds it.
func (c *Client) resignSequence(ctx context.Context, addr []byte, seq, timeout uint64, hash []byte, floor int64) (uint64, error) {
	if !c.cfg.Verify {
		return c.Sequence(ctx, addr)
	}
	req := &emrv1.QueryAccountRequest{Address: hex.EncodeToString(addr)}
	var acct emrv1.QueryAccountResponse
	info, err := c.QueryInfo(ctx, "Account", req, &acct)
	if err != nil {
		return 0, err
	}
	next := acct.GetAccount().GetNextSequence()
	if next <= seq {
		if uint64(info.Height) >= timeout {
			return next, nil // expired unexecuted: blocks past its timeout refuse it
		}
		return 0, fmt.Errorf("sequence %d is still unused at height %d, so the transaction may yet be committed, until height %d (its timeout height; never after)", seq, info.Height, timeout)
	}
	nextAt := func(h int64) (uint64, error) {
		var r emrv1.QueryAccountResponse
		if err := c.queryHistorical(ctx, h, "Account", req, &r); err != nil {
			return 0, fmt.Errorf("the signer's sequence at height %d: %w", h, err)
		}
		return r.GetAccount().GetNextSequence(), nil
	}
	// Invariant: the next sequence is past seq at hi, not at lo (or lo is
	// floor, where the transaction did not exist yet).
	lo, hi := floor, info.Height
	if lo > 0 {
		n, err := nextAt(lo)
		if err != nil {
			return 0, err
		}
		if n > seq {
			return next, nil // taken before the transaction was made
		}
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		n, err := nextAt(mid)
		if err != nil {
			return 0, err
		}
		if n > seq {
			hi = mid
		} else {
			lo = mid
		}
	}
	in, err := c.blockHolds(ctx, hi, hash)
	if err != nil {
		return 0, err
	}
	if in {
		return 0, errTxExecuted
	}
	return next, nil
}

// blockHolds reports whether the block at height, checked against the
// light-client-verified header, holds the transaction hash.
func (c *Client) blockHolds(ctx context.Context, height int64, hash []byte) (bool, error) {
	lb, err := c.verifiedBlock(ctx, height)
	if err != nil {
		return false, err
	}
	qctx, cancel := c.withTimeout(ctx)
	rb, err := c.rpc.Block(withAnswerBound(qctx, maxBlockAnswerBytes), &height)
	cancel()
	if err != nil {
		return false, fmt.Errorf("block %d: %w", height, err)
	}
	if rb.Block == nil || !bytes.Equal(rb.Block.Hash(), lb.Header.Hash()) || !bytes.Equal(rb.Block.Data.Hash(), lb.DataHash) {
		return false, verificationError("block %d is not the one its verified header commits to", height)
	}
	for _, tx := range rb.Block.Txs {
		if bytes.Equal(app.TxHash(tx), hash) {
			return true, nil
		}
	}
	return false, nil
}

// TxStatus looks a committed transaction up by hash (ErrNotFound when the
// node does not know it). In verified mode it checks, against
// light-client-verified headers, that the transaction is in the block's
// data (DataHash) and that its result code is the one committed in the
// next header's LastResultsHash.
func (c *Client) TxStatus(ctx context.Context, hash []byte) (*TxResult, error) {
	qctx, cancel := c.withTimeout(ctx)
	r, err := c.rpc.Tx(withAnswerBound(qctx, maxBlockAnswerBytes), hash, c.cfg.Verify)
	cancel()
	if isNotFoundRPC(err) {
		return nil, fmt.Errorf("%w: transaction %X", ErrNotFound, hash)
	}
	if err != nil {
		return nil, fmt.Errorf("transaction %X: %w", hash, err)
	}
	res := &TxResult{
		Hash: hash, Height: r.Height, Code: r.TxResult.Code, Codespace: r.TxResult.Codespace, Log: r.TxResult.Log,
	}
	for _, e := range r.TxResult.Events {
		ev := TxEvent{Type: e.Type}
		for _, a := range e.Attributes {
			ev.Attributes = append(ev.Attributes, TxAttribute{Key: a.Key, Value: a.Value})
		}
		res.Events = append(res.Events, ev)
	}
	if !c.cfg.Verify {
		return res, nil
	}
	if err := c.verifyTx(ctx, hash, r.Height, r.Index, r.Tx, r.Proof, r.TxResult.Code); err != nil {
		return nil, err
	}
	// LastResultsHash covers the code but not the codespace, so the node's
	// codespace is not taken: every transaction code in a block is the
	// state machine's (app/errors.go), in app.Codespace. A node cannot
	// make a verified failure miss errors.Is(err, app.ErrX).
	res.Codespace = ""
	if res.Code != 0 {
		res.Codespace = app.Codespace
	}
	res.Verified = true
	return res, nil
}

func (c *Client) verifyTx(ctx context.Context, hash []byte, height int64, index uint32, tx cmttypes.Tx, proof cmttypes.TxProof, code uint32) error {
	if !bytes.Equal(app.TxHash(tx), hash) {
		return verificationError("the node returned a transaction whose hash is %X, not %X", app.TxHash(tx), hash)
	}
	if height <= 0 {
		return verificationError("transaction %X at height %d", hash, height)
	}
	block, err := c.verifiedBlock(ctx, height)
	if err != nil {
		return err
	}
	if !bytes.Equal(proof.Data, tx) || proof.Proof.Index != int64(index) {
		return verificationError("the inclusion proof of transaction %X is for another transaction or position", hash)
	}
	if err := proof.Validate(block.DataHash); err != nil {
		return verificationError("transaction %X is not in block %d: %v", hash, height, err)
	}
	next, err := c.verifiedBlock(ctx, height+1)
	if err != nil {
		return err
	}
	qctx, cancel := c.withTimeout(ctx)
	br, err := c.rpc.BlockResults(withAnswerBound(qctx, maxBlockAnswerBytes), &height)
	cancel()
	if err != nil {
		return fmt.Errorf("results of block %d: %w", height, err)
	}
	results := cmttypes.NewResults(br.TxResults)
	if !bytes.Equal(results.Hash(), next.LastResultsHash) {
		return verificationError("the results of block %d do not match header %d's results hash", height, height+1)
	}
	// The results are one per transaction, so their verified count pins
	// the proof's: without it, the proof of position 2 of 3 also passes as
	// position 1 of 2 over the same root (the first pair's hash is its one
	// aunt either way), and the code read would be another transaction's.
	if proof.Proof.Total != int64(len(br.TxResults)) {
		return verificationError("the inclusion proof of transaction %X counts %d transactions, block %d has %d", hash, proof.Proof.Total, height, len(br.TxResults))
	}
	if int(index) >= len(br.TxResults) || br.TxResults[index].Code != code {
		return verificationError("the node reports code %d for transaction %X, the committed results say otherwise", code, hash)
	}
	return nil
}
