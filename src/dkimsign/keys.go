package dkimsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// Algorithm is a DKIM key type, as written in the k= tag of a key record.
type Algorithm string

const (
	RSA     Algorithm = "rsa"     // RSA-2048, rsa-sha256 signatures
	Ed25519 Algorithm = "ed25519" // RFC 8463, ed25519-sha256 signatures
)

// RSABits is the size of generated RSA keys: 2048, what RFC 8301 asks
// signers to use, and the largest whose key record still fits one 512-byte
// UDP answer once split into strings.
const RSABits = 2048

// Generated is a new key: its private half in PEM (PKCS#8, "PRIVATE KEY",
// the form OpenDKIM and dkimpy read too) and the value of the TXT record at
// <selector>._domainkey.<domain> ("v=DKIM1; k=...; p=...").
type Generated struct {
	Algorithm Algorithm
	PEM       []byte
	TXT       string
}

// GenerateKeys makes one RSA-2048 and one Ed25519 key, in that order: the
// pair a cluster domain signs with. random is the entropy source (nil:
// crypto/rand).
func GenerateKeys(random io.Reader) ([]Generated, error) {
	var out []Generated
	for _, a := range []Algorithm{RSA, Ed25519} {
		g, err := GenerateKey(a, random)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// GenerateKey makes one key of the given algorithm.
func GenerateKey(a Algorithm, random io.Reader) (Generated, error) {
	if random == nil {
		random = rand.Reader
	}
	var priv crypto.Signer
	var err error
	switch a {
	case RSA:
		priv, err = rsa.GenerateKey(random, RSABits)
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(random)
	default:
		return Generated{}, fmt.Errorf("dkimsign: unknown key algorithm %q (want %q or %q)", a, RSA, Ed25519)
	}
	if err != nil {
		return Generated{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Generated{}, err
	}
	txt, err := TXTRecord(priv.Public())
	if err != nil {
		return Generated{}, err
	}
	return Generated{Algorithm: a, PEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), TXT: txt}, nil
}

// TXTRecord is the DKIM key record (RFC 6376 section 3.6.1) for a public
// key: p= is the SubjectPublicKeyInfo for RSA, as OpenDKIM publishes it,
// and the bare 32 bytes for Ed25519 (RFC 8463 section 4).
func TXTRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("dkimsign: %T is neither an RSA nor an Ed25519 public key", pub)
}

// TXTStrings splits a record value into the strings of at most 255 bytes
// one TXT record is made of (RFC 1035 section 3.3.14); a resolver joins
// them back. An RSA-2048 key record needs two.
func TXTStrings(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

// LoadKey reads a PEM private key for signing as domain with selector:
// PKCS#8 ("PRIVATE KEY", RSA or Ed25519) or PKCS#1 ("RSA PRIVATE KEY", what
// opendkim-genkey writes).
func LoadKey(domain, selector string, pemBytes []byte) (Key, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return Key{}, errors.New("dkimsign: no PEM block in the key file")
	}
	var priv any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return Key{}, fmt.Errorf("dkimsign: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return Key{}, fmt.Errorf("dkimsign: %w", err)
	}
	k := Key{Domain: domain, Selector: selector}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		k.Signer = p
	case ed25519.PrivateKey:
		k.Signer = p
	default:
		return Key{}, fmt.Errorf("dkimsign: %T keys cannot sign DKIM (want RSA or Ed25519)", priv)
	}
	if err := k.check(); err != nil {
		return Key{}, err
	}
	return k, nil
}
