package dkimkeys

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewSaveLoadSign(t *testing.T) {
	dir := t.TempDir()
	recs := filepath.Join(dir, "dkim.toml")
	keys := filepath.Join(dir, "keys")
	f, err := Load(recs)
	if err != nil || len(f.Keys) != 0 {
		t.Fatalf("a records file not made yet: %v %v", f, err)
	}
	day1 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	first, err := New(f, keys, "correo.example", day1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || first[0].Selector != "c20261203a-ed25519" || first[1].Selector != "c20261203a-rsa" {
		t.Fatalf("first keys: %+v", first)
	}
	f.Keys = append(f.Keys, first...)
	// A second pair the same day gets the next letter.
	again, err := New(f, keys, "correo.example", day1.Add(time.Hour), -1)
	if err != nil || again[0].Selector != "c20261203b-ed25519" {
		t.Fatalf("second pair the same day: %+v %v", again, err)
	}
	if err := f.Save(recs); err != nil {
		t.Fatal(err)
	}
	g, err := Load(recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Keys) != 2 || g.Keys[1] != first[1] {
		t.Fatalf("reloaded %+v, want %+v", g.Keys, first)
	}
	for _, r := range first {
		st, err := os.Stat(KeyPath(keys, r.Domain, r.Selector))
		if err != nil || st.Mode().Perm() != 0o640 {
			t.Fatalf("private key of %s: %v %v", r.Selector, st, err)
		}
		k, err := LoadPrivate(keys, r)
		if err != nil {
			t.Fatal(err)
		}
		// The private half signs what the published half verifies.
		if r.Algorithm == Ed25519 {
			sig, _ := k.Sign(rand.Reader, []byte("x"), crypto.Hash(0))
			if !ed25519.Verify(k.Public().(ed25519.PublicKey), []byte("x"), sig) {
				t.Error("Ed25519 key does not verify")
			}
		} else {
			h := sha256.Sum256([]byte("x"))
			if _, err := k.Sign(rand.Reader, h[:], crypto.SHA256); err != nil {
				t.Error(err)
			}
		}
		txt := r.TXT()
		if !strings.HasPrefix(txt, "v=DKIM1; k="+string(r.Algorithm)+"; p=") {
			t.Errorf("TXT %q", txt)
		}
	}
	// A private key for another public key is refused.
	if _, err := LoadPrivate(keys, Record{Domain: first[0].Domain, Selector: first[0].Selector, PublicKey: again[0].PublicKey}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched private key: %v", err)
	}
	// Open to others: refused.
	p := KeyPath(keys, first[0].Domain, first[0].Selector)
	os.Chmod(p, 0o644)
	if _, err := LoadPrivate(keys, first[0]); err == nil || !strings.Contains(err.Error(), "chmod 640") {
		t.Errorf("world-readable key: %v", err)
	}
}

// TestRotation: a new key is published at once, signed with after the
// wait, and the old one is then superseded (retire removes it).
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	f := &File{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old, _ := New(f, dir, "d.example", t0, -1)
	f.Keys = append(f.Keys, old...)
	wait := time.Hour
	if s := f.Signing("d.example", t0, wait); len(s) != 2 || s[0] != old[0] || s[1] != old[1] {
		t.Fatalf("a domain's first keys sign at once: %+v", s)
	}
	t1 := t0.Add(30 * 24 * time.Hour)
	fresh, _ := New(f, dir, "d.example", t1, -1)
	f.Keys = append(f.Keys, fresh...)
	if s := f.Signing("d.example", t1.Add(time.Minute), wait); s[0] != old[0] || s[1] != old[1] {
		t.Errorf("a key younger than the wait signs already: %+v", s)
	}
	if len(f.Superseded("d.example", t1.Add(time.Minute), wait)) != 0 {
		t.Error("keys superseded before the new ones sign")
	}
	later := t1.Add(2 * time.Hour)
	if s := f.Signing("d.example", later, wait); s[0] != fresh[0] || s[1] != fresh[1] {
		t.Errorf("after the wait: %+v", s)
	}
	gone := f.Superseded("d.example", later, wait)
	if len(gone) != 2 || gone[0] != old[0] || gone[1] != old[1] {
		t.Fatalf("superseded: %+v", gone)
	}
	f.Remove(gone)
	if len(f.Keys) != 2 || f.Keys[0] != fresh[0] {
		t.Errorf("after retiring: %+v", f.Keys)
	}
	if len(f.Signing("other.example", later, wait)) != 0 {
		t.Error("a domain without keys signs")
	}
}

func TestParseRefuses(t *testing.T) {
	good := `[[key]]
domain = "d.example"
selector = "s1"
algorithm = "ed25519"
public_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
created = "2026-12-03T10:00:00Z"
`
	if _, err := Parse([]byte(good), "g"); err != nil {
		t.Fatalf("good file: %v", err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{`selector = "s1"`, `selector = "S_1"`, "not a DNS label"},
		{`algorithm = "ed25519"`, `algorithm = "dsa"`, "unknown algorithm"},
		{`algorithm = "ed25519"`, `algorithm = "rsa"`, "not an RSA SubjectPublicKeyInfo"},
		{`public_key = "11qY`, `public_key = "!!qY`, "not base64"},
		{`public_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`, `public_key = "AAAA"`, "is 32 bytes"},
		{`created = "2026-12-03T10:00:00Z"`, ``, "no created time"},
		{`domain = "d.example"`, "domain = \"d.example\"\nextra = 1", "unknown key"},
	} {
		bad := strings.Replace(good, tc.from, tc.to, 1)
		if _, err := Parse([]byte(bad), "b"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s → %s: err %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
	if _, err := Parse([]byte(good+"\n"+good), "b"); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate selector: %v", err)
	}
}

// Ensure makes keys only for domains without any, and keeps the others:
// a cluster booted again on its state must sign with the same selectors.
func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	recs, keys := filepath.Join(dir, "dkim.toml"), filepath.Join(dir, "keys")
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	f, err := Ensure(recs, keys, []string{"a.example"}, now, -1)
	if err != nil || len(f.Keys) != 2 {
		t.Fatalf("first Ensure: %+v %v", f, err)
	}
	g, err := Ensure(recs, keys, []string{"a.example", "b.example"}, now.Add(time.Hour), -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Keys) != 4 || g.Keys[0] != f.Keys[0] || g.Keys[1] != f.Keys[1] {
		t.Fatalf("second Ensure changed a.example's keys or missed b.example's: %+v", g.Keys)
	}
	onDisk, err := Load(recs)
	if err != nil || len(onDisk.Keys) != 4 {
		t.Fatalf("records file after Ensure: %+v %v", onDisk, err)
	}
	for _, r := range onDisk.Keys {
		if _, err := LoadPrivate(keys, r); err != nil {
			t.Error(err)
		}
	}
}
