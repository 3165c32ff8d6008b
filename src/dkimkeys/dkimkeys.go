// Package dkimkeys keeps the cluster's DKIM keys: the public records file
// the profile names (read by Go and Nix alike, so both publish the same
// zone) and the private keys on the relay hosts, one file per selector.
//
// Each `correoctl dkim new DOMAIN` makes one RSA-2048 and one Ed25519 key
// (RFC 8463: receivers that know Ed25519 use it, the others RSA), each
// under its own selector. Rotation needs no other command: a key is
// published in the zone from the moment it is made, and the relays sign
// with the newest key of each algorithm once it has been published for
// the profile's dkim_publish_wait, so receivers' resolvers have it before
// the first signature. `correoctl dkim retire DOMAIN` then removes the
// keys that a newer key has replaced: out of the zone, private key
// deleted.
package dkimkeys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"correo/src/dkimsign"
)

// Algorithm is a DKIM key type (the k= tag).
type Algorithm string

const (
	RSA     Algorithm = "rsa"
	Ed25519 Algorithm = "ed25519"
)

// Algorithms lists them in the order keys are made and signatures added.
var Algorithms = []Algorithm{Ed25519, RSA}

// Record is one public key as the records file holds it.
type Record struct {
	Domain    string    `toml:"domain"`
	Selector  string    `toml:"selector"`
	Algorithm Algorithm `toml:"algorithm"`
	// PublicKey is the p= value: base64 of the SubjectPublicKeyInfo for
	// RSA (RFC 6376 3.6.1), of the raw 32-byte key for Ed25519 (RFC 8463).
	PublicKey string `toml:"public_key"`
	// Created is when the key was made and published.
	Created time.Time `toml:"created"`
}

// TXT is the record's DNS text, "v=DKIM1; k=...; p=...".
func (r Record) TXT() string {
	return "v=DKIM1; k=" + string(r.Algorithm) + "; p=" + r.PublicKey
}

// Owner is the record's name below the domain: selector._domainkey.
func (r Record) Owner() string { return r.Selector + "._domainkey" }

// File is the records file: every published key of every domain.
type File struct {
	Keys []Record `toml:"key"`
}

// Load reads a records file; one that does not exist yet holds no keys.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("DKIM records file: %w", err)
	}
	return Parse(data, path)
}

// Parse reads and checks the records file format.
func Parse(data []byte, source string) (*File, error) {
	var f File
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, fmt.Errorf("DKIM records file %s: %w", source, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		return nil, fmt.Errorf("DKIM records file %s: unknown key %s (expected domain, selector, algorithm, public_key, created)", source, u[0])
	}
	seen := map[string]bool{}
	for i, r := range f.Keys {
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("DKIM records file %s: key[%d]: %w", source, i, err)
		}
		id := r.Domain + " " + r.Selector
		if seen[id] {
			return nil, fmt.Errorf("DKIM records file %s: key[%d]: selector %s of %s appears twice", source, i, r.Selector, r.Domain)
		}
		seen[id] = true
	}
	return &f, nil
}

func (r Record) check() error {
	if !validSelector(r.Selector) {
		return fmt.Errorf("selector %q is not a DNS label (letters, digits and '-', at most 63)", r.Selector)
	}
	if r.Created.IsZero() {
		return fmt.Errorf("selector %s has no created time", r.Selector)
	}
	raw, err := base64.StdEncoding.DecodeString(r.PublicKey)
	if err != nil {
		return fmt.Errorf("selector %s: public_key is not base64: %v", r.Selector, err)
	}
	switch r.Algorithm {
	case Ed25519:
		if len(raw) != ed25519.PublicKeySize {
			return fmt.Errorf("selector %s: an Ed25519 public key is %d bytes, not %d", r.Selector, ed25519.PublicKeySize, len(raw))
		}
	case RSA:
		k, err := x509.ParsePKIXPublicKey(raw)
		if err != nil {
			return fmt.Errorf("selector %s: public_key is not an RSA SubjectPublicKeyInfo: %v", r.Selector, err)
		}
		rk, ok := k.(*rsa.PublicKey)
		if !ok || rk.N.BitLen() < 1024 {
			return fmt.Errorf("selector %s: public_key is not an RSA key of at least 1024 bits (RFC 8301)", r.Selector)
		}
	default:
		return fmt.Errorf("selector %s: unknown algorithm %q: expected %q or %q", r.Selector, r.Algorithm, RSA, Ed25519)
	}
	return nil
}

func validSelector(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Marshal writes the file in a stable form, with a header saying what it
// is.
func (f *File) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("# DKIM public keys of the cluster's domains, written by `correoctl dkim`;\n")
	b.WriteString("# the zone publishes each one. Private keys live on the relay hosts.\n")
	for _, r := range f.Keys {
		// created is a string, not a TOML datetime: Nix's fromTOML reads
		// the file too, and older Nix has no datetimes.
		fmt.Fprintf(&b, "\n[[key]]\ndomain = %q\nselector = %q\nalgorithm = %q\npublic_key = %q\ncreated = %q\n",
			r.Domain, r.Selector, r.Algorithm, r.PublicKey, r.Created.UTC().Format(time.RFC3339))
	}
	return b.Bytes()
}

// Save writes the file atomically (temporary file, fsync, rename).
func (f *File) Save(path string) error {
	return writeFileAtomic(path, f.Marshal(), 0o644, -1)
}

// Of returns a domain's keys, oldest first.
func (f *File) Of(domain string) []Record {
	var out []Record
	for _, r := range f.Keys {
		if r.Domain == domain {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Signing picks, per algorithm, the key a relay signs a domain's mail
// with at now: the newest one published at least wait ago, or, when none
// is that old (a domain's first keys), the oldest one.
func (f *File) Signing(domain string, now time.Time, wait time.Duration) []Record {
	var out []Record
	for _, alg := range Algorithms {
		var pick *Record
		keys := f.Of(domain)
		for i := range keys {
			k := &keys[i]
			if k.Algorithm != alg {
				continue
			}
			if pick == nil || !now.Before(k.Created.Add(wait)) {
				pick = k
			}
		}
		if pick != nil {
			out = append(out, *pick)
		}
	}
	return out
}

// Superseded lists the keys of a domain that no relay signs with any
// longer: those older than the signing key of their algorithm.
func (f *File) Superseded(domain string, now time.Time, wait time.Duration) []Record {
	signing := f.Signing(domain, now, wait)
	var out []Record
	for _, k := range f.Of(domain) {
		for _, s := range signing {
			if k.Algorithm == s.Algorithm && k.Created.Before(s.Created) {
				out = append(out, k)
			}
		}
	}
	return out
}

// Remove drops records from the file.
func (f *File) Remove(gone []Record) {
	keep := f.Keys[:0]
	for _, k := range f.Keys {
		drop := false
		for _, g := range gone {
			if g.Domain == k.Domain && g.Selector == k.Selector {
				drop = true
			}
		}
		if !drop {
			keep = append(keep, k)
		}
	}
	f.Keys = keep
}

// KeyPath is where a selector's private key lives under the key
// directory: DIR/DOMAIN/SELECTOR.pem.
func KeyPath(dir, domain, selector string) string {
	return filepath.Join(dir, domain, selector+".pem")
}

// New makes a domain's next pair of keys: an Ed25519 and an RSA-2048 key,
// their private halves written under dir (0640, group gid when gid >= 0:
// the relays' key group, as for the cluster key) and their records
// returned for the records file. Selectors are cYYYYMMDD<letter>-ed25519
// and -rsa, the letter counting keys made the same day.
func New(f *File, dir, domain string, now time.Time, gid int) ([]Record, error) {
	day := "c" + now.UTC().Format("20060102")
	letter := byte('a')
	for ; letter <= 'z'; letter++ {
		taken := false
		for _, k := range f.Keys {
			if k.Domain == domain && strings.HasPrefix(k.Selector, day+string(letter)+"-") {
				taken = true
			}
		}
		if !taken {
			break
		}
	}
	if letter > 'z' {
		return nil, fmt.Errorf("26 key pairs of %s made today already: retire some and try tomorrow", domain)
	}
	var out []Record
	for _, alg := range Algorithms {
		g, err := dkimsign.GenerateKey(dkimsign.Algorithm(alg), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("making the %s key: %w", alg, err)
		}
		_, pub, _ := strings.Cut(g.TXT, "; p=")
		r := Record{Domain: domain, Selector: day + string(letter) + "-" + string(alg), Algorithm: alg,
			PublicKey: pub, Created: now.UTC().Truncate(time.Second)}
		path := KeyPath(dir, domain, r.Selector)
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("DKIM key directory: %w", err)
		}
		if gid >= 0 {
			os.Chown(filepath.Dir(path), 0, gid)
			os.Chown(dir, 0, gid)
		}
		if err := writeFileAtomic(path, g.PEM, 0o640, gid); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// LoadPrivate reads a selector's private key and checks that it is the
// half of the record's public key; like the cluster key, it must not be
// readable by others.
func LoadPrivate(dir string, r Record) (crypto.Signer, error) {
	path := KeyPath(dir, r.Domain, r.Selector)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("DKIM private key of %s selector %s: %w (it is made by `correoctl dkim new %s`; copy %s to every relay host)", r.Domain, r.Selector, err, r.Domain, dir)
	}
	if st.Mode().Perm()&0o027 != 0 {
		return nil, fmt.Errorf("DKIM private key %s is open to others or writable by its group (mode %04o): run chmod 640 %s", path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("DKIM private key %s: not a PEM PRIVATE KEY (PKCS #8)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("DKIM private key %s: %w", path, err)
	}
	var pub []byte
	switch k := k.(type) {
	case ed25519.PrivateKey:
		pub = k.Public().(ed25519.PublicKey)
	case *rsa.PrivateKey:
		if pub, err = x509.MarshalPKIXPublicKey(&k.PublicKey); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("DKIM private key %s: unsupported key type %T", path, k)
	}
	if base64.StdEncoding.EncodeToString(pub) != r.PublicKey {
		return nil, fmt.Errorf("DKIM private key %s does not match the public key published for selector %s: the records file and the key directory disagree", path, r.Selector)
	}
	return k.(crypto.Signer), nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, fsynced before the rename, then fsyncs the directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode, gid int) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err == nil && gid >= 0 {
		err = tmp.Chown(0, gid)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Ensure gives every domain without a key its first pair: the records
// file at recordsPath gains their records and dir their private keys.
// Domains that have keys keep them, so a cluster booted again on the same
// state signs with the same selectors. It is what a test or a local boot
// does in place of `correoctl dkim new` for each domain.
func Ensure(recordsPath, dir string, domains []string, now time.Time, gid int) (*File, error) {
	f, err := Load(recordsPath)
	if err != nil {
		return nil, err
	}
	changed := false
	for _, d := range domains {
		if len(f.Of(d)) > 0 {
			continue
		}
		recs, err := New(f, dir, d, now, gid)
		if err != nil {
			return nil, fmt.Errorf("the first DKIM keys of %s: %w", d, err)
		}
		f.Keys = append(f.Keys, recs...)
		changed = true
	}
	if changed {
		if err := f.Save(recordsPath); err != nil {
			return nil, err
		}
	}
	return f, nil
}
