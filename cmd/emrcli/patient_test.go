package main

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/client"
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
	kr, k := keyringWith(t, "ada")
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
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	end := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	read, write, share := emrv1.Right_RIGHT_READ, emrv1.Right_RIGHT_WRITE, emrv1.Right_RIGHT_SHARE
	old := &emrv1.Permission{Rights: []emrv1.Right{read, share}, Categories: []string{"imaging", "lab-results"},
		NotAfter: timestamppb.New(end), StudyId: "onc-1"}
	for _, tc := range []struct {
		name string
		g    client.GrantSpec
		want []string
	}{
		{"the same", client.GrantSpec{Rights: []emrv1.Right{read, share}, Categories: []string{"lab-results", "imaging"}, NotAfter: end, StudyID: "onc-1"}, nil},
		{"more of everything", client.GrantSpec{Rights: []emrv1.Right{read, write, share}, NotAfter: end.AddDate(1, 0, 0), StudyID: "onc-1"}, nil},
		{"a start already passed", client.GrantSpec{Rights: []emrv1.Right{read, share}, NotBefore: now.Add(-time.Hour), NotAfter: end, StudyID: "onc-1"}, nil},
		{"a right", client.GrantSpec{Rights: []emrv1.Right{share}, NotAfter: end, StudyID: "onc-1"}, []string{"the read right"}},
		{"a category", client.GrantSpec{Rights: []emrv1.Right{read, share}, Categories: []string{"imaging"}, NotAfter: end, StudyID: "onc-1"}, []string{"category lab-results"}},
		{"the end", client.GrantSpec{Rights: []emrv1.Right{read, share}, NotAfter: end.Add(-time.Hour), StudyID: "onc-1"}, []string{"the time until 2027-06-01T00:00:00Z"}},
		{"the start", client.GrantSpec{Rights: []emrv1.Right{read, share}, NotBefore: now.AddDate(0, 1, 0), NotAfter: end, StudyID: "onc-1"}, []string{"the time before 2026-12-23T12:00:00Z"}},
		{"the study", client.GrantSpec{Rights: []emrv1.Right{read, share}, NotAfter: end, StudyID: "onc-2"}, []string{"sharing with study onc-1"}},
		{"plain sharing", client.GrantSpec{Rights: []emrv1.Right{read, share}, NotAfter: end, StudyID: "onc-1", Anonymise: true}, []string{"sharing without anonymisation"}},
		{"the share right, not its study", client.GrantSpec{Rights: []emrv1.Right{read}, NotAfter: end}, []string{"the share right"}},
	} {
		if got := consentLost(old, tc.g, now); !slices.Equal(got, tc.want) {
			t.Errorf("%s: lost %q, want %q", tc.name, got, tc.want)
		}
	}
	all := &emrv1.Permission{Rights: []emrv1.Right{read}, NotAfter: timestamppb.New(end)}
	if got := consentLost(all, client.GrantSpec{Rights: []emrv1.Right{read}, Categories: []string{"imaging"}, NotAfter: end}, now); !slices.Equal(got, []string{"every category but imaging"}) {
		t.Errorf("all categories narrowed: %q", got)
	}
	// A consent that starts later than now loses nothing to a grant that
	// starts at the same time.
	later := &emrv1.Permission{Rights: []emrv1.Right{read}, NotBefore: timestamppb.New(now.AddDate(0, 1, 0)), NotAfter: timestamppb.New(end)}
	if got := consentLost(later, client.GrantSpec{Rights: []emrv1.Right{read}, NotBefore: now.AddDate(0, 1, 0), NotAfter: end}, now); len(got) != 0 {
		t.Errorf("the same later start: %q", got)
	}
}
