package load

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
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

// keyFile is the development key file of emrchaind (init/testnet write
// them; see `emrchaind init --help`).
type keyFile struct {
	Name           string `json:"name"`
	Address        string `json:"address"`
	SignPrivKey    []byte `json:"sign_priv_key"`
	Role           string `json:"role"`
	OrganizationID string `json:"organization_id"`
}

// readJSON decodes the JSON file at path into v; its errors name the file.
func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// registrar is a registrar's key and its organization.
type registrar struct {
	*signer
	org string
}

// readRegistrar reads a development key file of a registrar.
func readRegistrar(path string) (*registrar, error) {
	var k keyFile
	if err := readJSON(path, &k); err != nil {
		return nil, err
	}
	if len(k.SignPrivKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%s: sign_priv_key has %d bytes, want %d", path, len(k.SignPrivKey), ed25519.PrivateKeySize)
	}
	if k.Role != "registrar" {
		return nil, fmt.Errorf("%s: role %q, want registrar", path, k.Role)
	}
	priv := ed25519.PrivKey(k.SignPrivKey)
	pub := priv.PubKey().Bytes()
	s := &signer{name: k.Name, sign: priv, pub: pub, address: app.AddressOf(pub)}
	if got := fmt.Sprintf("%x", s.address); got != strings.ToLower(k.Address) {
		return nil, fmt.Errorf("%s: address %s does not match the key (%s)", path, k.Address, got)
	}
	return &registrar{signer: s, org: k.OrganizationID}, nil
}

// Target is the consortium a load runs against.
type Target struct {
	ChainID string
	// RPC are the validators' CometBFT RPC URLs (http://127.0.0.1:port).
	RPC []string
	// Registrars are development key files of registrars of hospitals,
	// who register the load's clinicians.
	Registrars []string
}

// testnetJSON is the part of DIR/testnet.json (emrchaind testnet) a load
// needs.
type testnetJSON struct {
	ChainID string `json:"chain_id"`
	Nodes   []struct {
		RPC string `json:"rpc"`
	} `json:"nodes"`
	Orgs []struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	} `json:"organizations"`
	Keys []struct {
		Role           string `json:"role"`
		OrganizationID string `json:"organization_id"`
		File           string `json:"file"`
	} `json:"keys"`
}

// ReadTestnet reads the target from DIR/testnet.json as `emrchaind
// testnet` writes it: every node's RPC and the registrars of its hospitals.
func ReadTestnet(dir string) (Target, error) {
	var d testnetJSON
	if err := readJSON(filepath.Join(dir, "testnet.json"), &d); err != nil {
		return Target{}, err
	}
	t := Target{ChainID: d.ChainID}
	for _, n := range d.Nodes {
		t.RPC = append(t.RPC, strings.Replace(n.RPC, "tcp://", "http://", 1))
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
	return t, t.validate()
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
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" {
		return fmt.Errorf("endpoint %q: only 127.0.0.1 targets are allowed", raw)
	}
	return nil
}
