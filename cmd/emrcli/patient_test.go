package main

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/client/keyring"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestKEKMadeByAnotherRun: two emrcli runs of one patient load the key;
// one rotation makes KEK version 2. The other run finds that version in the
// keyring instead of making a second, different one (which the keyring
// would refuse, and whose grantees could not read), and a command that only
// uses KEKs finds it too.
func TestKEKMadeByAnotherRun(t *testing.T) {
	home := t.TempDir()
	// load is one emrcli run: a keyring of its own, the key loaded.
	load := func() (*keyring.Keyring, *keyring.Key) {
		kr, err := keyring.Open(keyring.BackendTest, home, nil)
		if err != nil {
			t.Fatal(err)
		}
		k, err := kr.Get("ada")
		if err != nil {
			t.Fatal(err)
		}
		return kr, k
	}
	kr0, err := keyring.Open(keyring.BackendTest, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr0.Add("ada"); err != nil {
		t.Fatal(err)
	}
	krA, kA := load()
	krB, kB := load()
	made, err := ensureKEK(krA, kA, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ensureKEK(krB, kB, 2)
	if err != nil || !bytes.Equal(got, made) {
		t.Fatalf("the other run's version 2: %x %v, want the one already made", got, err)
	}
	krC, kC := load()
	if _, err := ensureKEK(krA, kA, 3); err != nil {
		t.Fatal(err)
	}
	if kek, err := existingKEK(krC, kC)(3); err != nil || kek == nil {
		t.Fatalf("version 3, made after this run loaded the key: %v", err)
	}
	if _, err := existingKEK(krC, kC)(4); err == nil {
		t.Fatal("a version nobody made was found")
	}
}

// TestKEKFuncsHandOutCopies: the client clears a KEK a KEKFunc returned
// once it has unwrapped with it (a download does), so the KEKFuncs of
// emrcli must return copies. When they returned the keyring's own slice, a
// download zeroed the patient's KEK in memory: a later upload in the same
// process wrapped its data key under thirty-two zero bytes, and a later
// save wrote the zeros to the keyring file.
func TestKEKFuncsHandOutCopies(t *testing.T) {
	kr, err := keyring.Open(keyring.BackendTest, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kr.Add("ada")
	if err != nil {
		t.Fatal(err)
	}
	made, err := ensureKEK(kr, k, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(made)
	clear(made) // as the client does with a KEK it was handed
	for name, get := range map[string]func() ([]byte, error){
		"ensureKEK":   func() ([]byte, error) { return ensureKEK(kr, k, 1) },
		"existingKEK": func() ([]byte, error) { return existingKEK(kr, k)(1) },
	} {
		kek, err := get()
		if err != nil || !bytes.Equal(kek, want) {
			t.Fatalf("%s after the caller cleared what it was handed: %x, %v; want the KEK %x", name, kek, err, want)
		}
		clear(kek)
	}
	if kek, ok := k.KEK(1); !ok || !bytes.Equal(kek, want) {
		t.Fatalf("the keyring's KEK after callers cleared theirs: %x", kek)
	}
}

// TestConsentLost: what a grant would take away from a standing consent it
// replaces, for every part of a consent; nothing when it gives as much.
func TestConsentLost(t *testing.T) {
	end := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	read, write, share := emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE, emrv1.Right_RIGHT_SHARE
	old := &emrv1.Permission{Rights: []emrv1.Right{read, share}, Categories: []string{"imaging", "lab-results"},
		NotAfter: timestamppb.New(end), StudyId: "onc-1"}
	for _, tc := range []struct {
		name      string
		rights    []emrv1.Right
		cats      []string
		notAfter  time.Time
		study     string
		anonymise bool
		want      []string
	}{
		{"the same", []emrv1.Right{read, share}, []string{"lab-results", "imaging"}, end, "onc-1", false, nil},
		{"more of everything", []emrv1.Right{read, write, share}, nil, end.AddDate(1, 0, 0), "onc-1", false, nil},
		{"a right", []emrv1.Right{share}, nil, end, "onc-1", false, []string{"the read right"}},
		{"a category", []emrv1.Right{read, share}, []string{"imaging"}, end, "onc-1", false, []string{"category lab-results"}},
		{"time", []emrv1.Right{read, share}, nil, end.Add(-time.Hour), "onc-1", false, []string{"the time until 2027-06-01T00:00:00Z"}},
		{"the study", []emrv1.Right{read, share}, nil, end, "onc-2", false, []string{"sharing with study onc-1"}},
		{"plain sharing", []emrv1.Right{read, share}, nil, end, "onc-1", true, []string{"sharing without anonymisation"}},
		{"the share right, not its study", []emrv1.Right{read}, nil, end, "", false, []string{"the share right"}},
	} {
		got := consentLost(old, tc.rights, tc.cats, tc.notAfter, tc.study, tc.anonymise)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: lost %q, want %q", tc.name, got, tc.want)
		}
	}
	all := &emrv1.Permission{Rights: []emrv1.Right{read}, NotAfter: timestamppb.New(end)}
	if got := consentLost(all, []emrv1.Right{read}, []string{"imaging"}, end, "", false); !slices.Equal(got, []string{"every category but imaging"}) {
		t.Errorf("all categories narrowed: %q", got)
	}
}
