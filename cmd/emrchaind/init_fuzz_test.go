package main

import (
	"path/filepath"
	"strings"
	"testing"

	cmtcfg "github.com/cometbft/cometbft/config"
)

// FuzzParseOrg: an --org flag is refused or read as a non-empty id without
// a colon, a non-empty name and a known kind, which written back as
// id:name:kind reads the same.
func FuzzParseOrg(f *testing.F) {
	for _, seed := range []string{"hosp-a:Hospital A:hospital", "lab1:Lab: North:LAB", "x::hospital", ":name:hospital", "a:b:", "a:b:unknown", "a:b:organization_kind_research", "a:b:c:pharmacy", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		org, err := parseOrg(s)
		if err != nil {
			if org != nil {
				t.Fatalf("%q refused (%v) with %v", s, err, org)
			}
			return
		}
		if org.Id == "" || strings.Contains(org.Id, ":") || org.Name == "" || org.Kind == 0 {
			t.Fatalf("%q read as %v", s, org)
		}
		word := strings.ToLower(strings.TrimPrefix(org.Kind.String(), "ORGANIZATION_KIND_"))
		again, err := parseOrg(org.Id + ":" + org.Name + ":" + word)
		if err != nil || again.Id != org.Id || again.Name != org.Name || again.Kind != org.Kind {
			t.Fatalf("%q read as %v, written back read as %v (%v)", s, org, again, err)
		}
	})
}

// FuzzInitMoniker: a moniker init accepts is written into config.toml by
// CometBFT's template and read back by start as the same moniker, which
// start's check accepts too.
func FuzzInitMoniker(f *testing.F) {
	for _, seed := range []string{"node0", "St Mary's (ward 3)", `a"b`, `a\b`, `a\u0041`, "a\nb", "a\tb", "   ", "", "hôpital", "a'''b", "[x]", "#1", strings.Repeat("n", maxMonikerLen+1)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, moniker string) {
		if checkMoniker(moniker) != nil || checkTemplateValue(moniker) != nil {
			return
		}
		home := t.TempDir()
		conf := cmtcfg.DefaultConfig()
		conf.SetRoot(home)
		conf.Moniker = moniker
		cmtcfg.EnsureRoot(home)
		cmtcfg.WriteConfigFile(filepath.Join(home, "config", "config.toml"), conf)
		got, err := loadCometConfig(home)
		if err != nil {
			t.Fatalf("moniker %q: config.toml does not load: %v", moniker, err)
		}
		if got.Moniker != moniker {
			t.Fatalf("moniker %q read back as %q", moniker, got.Moniker)
		}
		if err := checkMoniker(got.Moniker); err != nil {
			t.Fatalf("moniker %q accepted by init, refused by start: %v", moniker, err)
		}
	})
}
