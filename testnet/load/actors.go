package load

import (
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client/keyring"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/testnet/manifest"
)

// signer holds one member's keys. Load actors derive theirs from a name, so
// a run is reproducible from its prefix.
type signer struct {
	name    string
	sign    ed25519.PrivKey
	pub     []byte
	encPub  []byte
	address []byte
}

func newSigner(name string) *signer {
	seed := sha256.Sum256([]byte("emrchain/load/sign/" + name))
	sign := ed25519.GenPrivKeyFromSecret(seed[:])
	encSeed := sha256.Sum256([]byte("emrchain/load/enc/" + name))
	enc, err := ecdh.X25519().NewPrivateKey(encSeed[:])
	if err != nil {
		panic(err) // any 32 bytes are an X25519 private key
	}
	pub := sign.PubKey().Bytes()
	return &signer{name: name, sign: sign, pub: pub, encPub: enc.PublicKey().Bytes(), address: app.AddressOf(pub)}
}

// tx signs msg as a transaction with sequence seq.
func (s *signer) tx(chainID string, seq uint64, msg *emrv1.Msg) ([]byte, error) {
	return app.EncodeTx(&emrv1.TxBody{ChainId: chainID, SignerPubKey: s.pub, Sequence: seq, Msg: msg}, s.sign.Sign)
}

// registrar is a registrar's key and its organization.
type registrar struct {
	*signer
	org string
}

// readRegistrar reads a development key file of a registrar (checked by
// keyring.ParseDevKey, the parser emrcli imports them with).
func readRegistrar(path string) (*registrar, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := keyring.ParseDevKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if k.Role != "registrar" {
		return nil, fmt.Errorf("%s: role %q, want registrar", path, k.Role)
	}
	priv := ed25519.PrivKey(k.SignPrivKey)
	pub := priv.PubKey().Bytes()
	s := &signer{name: k.Name, sign: priv, pub: pub, address: app.AddressOf(pub)}
	return &registrar{signer: s, org: k.OrganizationID}, nil
}

// Target is the consortium a load runs against.
type Target struct {
	ChainID string
	// RPC are the validators' CometBFT RPC URLs (http://127.0.0.1:port).
	RPC []string
	// GRPC are the same validators' gRPC servers (127.0.0.1:port), in the
	// same order; none means the load submits over JSON-RPC.
	GRPC []string
	// Registrars are development key files of registrars of hospitals,
	// who register the load's clinicians.
	Registrars []string
}

// ReadTestnet reads the target from DIR/testnet.json as `emrchaind
// testnet` writes it: every node's RPC and gRPC server (the latter only if
// every node has one) and the registrars of its hospitals.
// manifest.Read checks the file; Run checks the target it is merged into
// (loopback endpoints only).
func ReadTestnet(dir string) (Target, error) {
	d, err := manifest.Read(dir)
	if err != nil {
		return Target{}, err
	}
	t := Target{ChainID: d.ChainID}
	for _, n := range d.Nodes {
		t.RPC = append(t.RPC, strings.Replace(n.RPC, "tcp://", "http://", 1))
		t.GRPC = append(t.GRPC, n.GRPC)
	}
	if slices.Contains(t.GRPC, "") {
		t.GRPC = nil // not every node serves gRPC: submit over JSON-RPC
	}
	hospital := map[string]bool{}
	for _, o := range d.Orgs {
		hospital[o.ID] = o.Kind == "hospital"
	}
	for _, k := range d.Keys {
		if k.Role == "registrar" && hospital[k.OrganizationID] {
			f := k.File
			if !filepath.IsAbs(f) {
				f = filepath.Join(dir, f)
			}
			t.Registrars = append(t.Registrars, f)
		}
	}
	return t, nil
}

func (t Target) validate() error {
	if t.ChainID == "" {
		return errors.New("no chain id")
	}
	if len(t.RPC) == 0 {
		return errors.New("no RPC endpoint")
	}
	for _, r := range t.RPC {
		if err := checkLoopback(r); err != nil {
			return err
		}
	}
	if len(t.GRPC) > 0 && len(t.GRPC) != len(t.RPC) {
		return fmt.Errorf("%d gRPC endpoints for %d RPC endpoints: want one per node, in the same order", len(t.GRPC), len(t.RPC))
	}
	for _, g := range t.GRPC {
		if err := checkLoopbackAddr(g); err != nil {
			return err
		}
	}
	return nil
}

// checkLoopback refuses any endpoint but 127.0.0.1 (or localhost): a load
// tool must never be pointed at somebody else's network by mistake.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "tcp":
	default:
		return fmt.Errorf("endpoint %q: want http://127.0.0.1:PORT", raw)
	}
	if !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("endpoint %q: only 127.0.0.1 targets are allowed", raw)
	}
	return nil
}

// isLoopbackHost: the only hosts a load may target.
func isLoopbackHost(h string) bool { return h == "127.0.0.1" || h == "localhost" }
