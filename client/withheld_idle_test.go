package client_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/clienttest"
	"github.com/emrchain/emrchain/client/keyring"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestWithheldHeadOnAnIdleChain: on an idle chain with an empty-block
// interval (emrchaind's default: 10 s; here 30 s) a transaction's block N
// is followed at once by its proof block N+1, then by nothing for the
// interval, and header N's time is the commit of N-1, long before. A node
// that reports head N (so serves state N-1, without block N's
// transaction) beside an honest witness at N+1 is refused or caught up:
// the witness is one block ahead, but its head seconds newer. The check
// skipped any witness within witnessLead (2) blocks, and the read missed
// the transaction with no error (the session-46 re-review).
func TestWithheldHeadOnAnIdleChain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs emrchaind")
	}
	w := setup(t, "--empty-blocks-interval", "30s")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	rpc := w.rpc(t)
	head := func() int64 { return w.node.Height(ctx) }
	// Let the chain go idle, then wait a while so that the next block's
	// header time (the commit time of the idle head) is old.
	for last := head(); ; {
		time.Sleep(4 * time.Second)
		if h := head(); h == last {
			break
		} else {
			last = h
		}
	}
	honest := w.mustClient(t, w.node.RPC)
	clinician, _ := keyring.Generate("clinician")
	res, err := honest.Submit(ctx, w.registrar, &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
		SignPubKey: clinician.PubKey(), EncPubKey: clinician.EncPubKey(), Role: emrv1.Role_ROLE_CLINICIAN,
		OrganizationId: "dev-hospital", CredentialRef: "licence:IDLE-1",
	}}})
	if err != nil || res.Code != 0 {
		t.Fatalf("register: %+v %v", res, err)
	}
	n := res.Height // block N: state N holds the member
	time.Sleep(1500 * time.Millisecond)
	top := head()
	hN, err := rpc.Header(ctx, &n)
	if err != nil {
		t.Fatal(err)
	}
	hTop, err := rpc.Header(ctx, &top)
	if err != nil {
		t.Fatal(err)
	}
	gap := hTop.Header.Time.Sub(hN.Header.Time)
	t.Logf("member registered in block %d; honest head %d, %s newer than header %d", n, top, gap.Round(time.Millisecond), n)
	if gap <= 2*time.Second {
		t.Skipf("the chain was not idle long enough (gap %s): the scenario needs > lightMaxBlockLag", gap)
	}
	// The node reports head N (status N, so it serves state N-1) and
	// withholds the rest; the witness is the honest node under another name.
	withholding := clienttest.NewProxy(t, w.node.RPC)
	withholding.SetRewrite(staleNode{upstream: w.node.RPC, height: func() int64 { return n - 1 }, lieStatus: true}.rewrite)
	witness := strings.Replace(w.node.RPC, "127.0.0.1", "localhost", 1)
	members, info, err := w.witnessedClient(t, ctx, withholding.URL, witness).AllMembers(ctx, "dev-hospital", emrv1.Role_ROLE_CLINICIAN)
	if errors.Is(err, client.ErrStale) && strings.Contains(err.Error(), "witness "+witness) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	found := slices.ContainsFunc(members, func(m *emrv1.Member) bool { return string(m.Address) == string(clinician.Address()) })
	if !found {
		t.Fatalf("node withholding block %d (head %d claimed), honest witness at head %d whose header is %s newer (> lightMaxBlockLag 2s): read served state %d without the member registered in block %d, no error; want ErrStale or a state >= %d",
			n, n, top, gap.Round(time.Millisecond), info.Height, n, n)
	}
}
