package sidecar

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// sealFor announces, on w, an answer of size bytes (a whole blob) sealed
// to to's key for r, as a peer does (a replica's, or a member's), and
// returns the seal to write it with.
func sealFor(w http.ResponseWriter, r *http.Request, to *actor, size int64) *transferSeal {
	context := BlobAnswerContext(r.URL.RequestURI(), "")
	if path, ok := strings.CutPrefix(r.URL.Path, ReplicaPathPrefix); ok {
		key, err := blobstore.ParseKey(path)
		if err != nil {
			panic(err)
		}
		context = replicaContext(key)
	}
	seal, err := newTransferSeal(to.Enc.PublicKey(), context)
	if err != nil {
		panic(err)
	}
	seal.setHeaders(w.Header(), size)
	return seal
}

// sealedAnswer answers r as a peer does: body sealed to to's key for r
// (sealFor), announced as a blob of size bytes.
func sealedAnswer(w http.ResponseWriter, r *http.Request, to *actor, body []byte, size int64) {
	seal := sealFor(w, r, to, size)
	enc, err := crypto.NewEncryptWriter(w, seal.dataKey, seal.context)
	if err != nil {
		panic(err)
	}
	enc.Write(body)
	enc.Close()
}

// TestRelayedReplicaIsUnreadable: a peer that passes a storage service's
// signed replica request on to a sidecar holding the blob (the request
// names no target) gets bytes it cannot read, not the blob's ciphertext;
// the storage service that signed the request reads them. Each answer is
// sealed under a fresh key.
func TestRelayedReplicaIsUnreadable(t *testing.T) {
	e := newEnv(t, nil)
	data := bytes.Repeat([]byte("encrypted discharge letter "), 5000) // several stream segments
	key := committedBlob(t, e, data)
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	nameStorageOrgs(e, "hospital-b")
	relayOrg := e.chain.addMember("sidecar-r", emrv1.Role_ROLE_STORAGE_SERVICE, "research-institute") // not named

	// The relay: a peer the storage service asks, which forwards the
	// signed request as it came and keeps what comes back.
	var kept [][]byte
	var keptHeader []http.Header
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, body, err := forward(e.ts.URL, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		kept, keptHeader = append(kept, body), append(keptHeader, resp.Header.Clone())
		answerWith(w, resp)
		w.Write(body)
	}))
	t.Cleanup(relay.Close)

	for range 2 {
		got, err := replicaGet(t, relay.URL, svc, key, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the storage service read %d of %d bytes through the relay: %v", len(got), len(data), err)
		}
	}
	if len(kept) != 2 {
		t.Fatalf("the relay kept %d answers", len(kept))
	}
	for i, body := range kept {
		if want := crypto.CiphertextSize(int64(len(data))); int64(len(body)) != want {
			t.Fatalf("answer %d: %d bytes, want the sealed size %d", i, len(body), want)
		}
		if bytes.Contains(body, data[:64]) {
			t.Fatalf("answer %d carries the blob's bytes in the clear", i)
		}
		envelope, err := base64.StdEncoding.DecodeString(keptHeader[i].Get(HeaderSealedEnvelope))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := crypto.OpenTransferKey(relayOrg.Enc, envelope, []byte(ReplicaPath(key))); !errors.Is(err, crypto.ErrDecrypt) {
			t.Fatalf("answer %d: the relay's own key opened the envelope: %v", i, err)
		}
	}
	if bytes.Equal(kept[0][:200], kept[1][:200]) {
		t.Fatal("two answers for the same blob begin alike: not sealed under fresh keys")
	}
}

// TestUnsealedOrMissealedReplicaIsRefused: a storage service keeps only a
// replica sealed to its own key for the blob it asked for, of the size
// announced, whole; anything else fails the copy and leaves nothing.
func TestUnsealedOrMissealedReplicaIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	nameStorageOrgs(e, "hospital-b")
	data := bytes.Repeat([]byte("encrypted pathology report "), 4000)
	key := committedBlob(t, e, data)
	other := committedBlob(t, e, []byte("another blob"))
	svc := e.chain.addMember("storage-b", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-b")
	stranger := e.chain.addMember("storage-x", emrv1.Role_ROLE_STORAGE_SERVICE, "hospital-x")
	size := int64(len(data))

	for _, c := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request)
		want  string
	}{
		{"the blob in the clear (a peer from before replicas were sealed)", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data)
		}, "came without " + HeaderSealedEnvelope},
		{"sealed to another storage service", func(w http.ResponseWriter, r *http.Request) {
			sealedAnswer(w, r, stranger, data, size)
		}, "the answer's envelope"},
		{"sealed for another blob", func(w http.ResponseWriter, r *http.Request) {
			r.URL.Path = ReplicaPath(other)
			sealedAnswer(w, r, svc, data, size)
		}, "the answer's envelope"},
		{"a size that is not one", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderSealedEnvelope, base64.StdEncoding.EncodeToString(make([]byte, crypto.EnvelopeSize)))
			w.Header().Set(HeaderSealedSize, "12k")
		}, HeaderSealedSize + ` "12k": not a size`},
		{"a blob size above the limit", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderSealedEnvelope, base64.StdEncoding.EncodeToString(make([]byte, crypto.EnvelopeSize)))
			w.Header().Set(HeaderSealedSize, strconv.Itoa(1<<20+1))
			w.Header().Set("Content-Length", strconv.FormatInt(crypto.CiphertextSize(1<<20+1), 10))
		}, "above the 1048576 expected"},
		{"a length that is not the sealed size", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderSealedEnvelope, base64.StdEncoding.EncodeToString(make([]byte, crypto.EnvelopeSize)))
			w.Header().Set(HeaderSealedSize, strconv.FormatInt(size, 10))
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.Write(data)
		}, "is " + strconv.FormatInt(crypto.CiphertextSize(size), 10) + " bytes long"},
		{"a stream cut at a segment boundary (as a peer cuts a damaged copy short)", func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			sealedAnswer(rec, r, svc, data, size)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			// The first segment, which was sealed as not the last, passed
			// off as a whole sealed blob of its size.
			w.Header().Set(HeaderSealedSize, strconv.Itoa(crypto.DefaultSegmentSize))
			cut := rec.Body.Bytes()[:crypto.CiphertextSize(crypto.DefaultSegmentSize)]
			w.Header().Set("Content-Length", strconv.Itoa(len(cut)))
			w.Write(cut)
		}, "corrupt"},
		{"other bytes, sealed right", func(w http.ResponseWriter, r *http.Request) {
			sealedAnswer(w, r, svc, bytes.Repeat([]byte("X"), len(data)), size)
		}, "does not hash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			peer := httptest.NewServer(http.HandlerFunc(c.serve))
			t.Cleanup(peer.Close)
			_, b := peerOf(t, e, func(o *Options) { o.Storage = svc }, peer.URL)
			_, err := b.replicate(context.Background(), key, e.chain.params.MaxBlobBytes)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("replicate: %v; want an error saying %q", err, c.want)
			}
			if _, err := b.store.Stat(context.Background(), key); !errors.Is(err, blobstore.ErrNotFound) {
				t.Fatalf("the refused copy was kept: %v", err)
			}
		})
	}
}
