package dkimsign

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

var (
	genOnce sync.Once
	gen     []Generated
)

func keys(t testing.TB) ([]Key, map[string]string) {
	t.Helper()
	genOnce.Do(func() {
		var err error
		gen, err = GenerateKeys(nil)
		if err != nil {
			panic(err)
		}
	})
	records := map[string]string{}
	var ks []Key
	for _, g := range gen {
		sel := "s-" + string(g.Algorithm)
		k, err := LoadKey("example.test", sel, g.PEM)
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, k)
		records[sel+"._domainkey.example.test"] = g.TXT
	}
	return ks, records
}

func lookup(records map[string]string) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if v, ok := records[name]; ok {
			return []string{v}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
}

const msg = "From: Ana <ana@example.test>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: hello\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <1@example.test>\r\n" +
	"\r\n" +
	"Hi Bob,\r\n\r\nbody.\r\n"

func TestSignVerifies(t *testing.T) {
	ks, records := keys(t)
	var out bytes.Buffer
	if err := Sign(&out, strings.NewReader(msg), ks, nil); err != nil {
		t.Fatal(err)
	}
	signed := out.String()
	if !strings.HasSuffix(signed, msg) {
		t.Fatal("the message was changed, not only prepended to")
	}
	sigs := regexp.MustCompile(`(?m)^DKIM-Signature:`).FindAllString(signed, -1)
	if len(sigs) != 2 {
		t.Fatalf("%d signatures, want 2:\n%s", len(sigs), signed)
	}
	head := signed[:len(signed)-len(msg)]
	for _, want := range []string{"a=rsa-sha256", "a=ed25519-sha256", "c=relaxed/relaxed", "s=s-rsa", "s=s-ed25519", " t=", " x="} {
		if !strings.Contains(head, want) {
			t.Errorf("signatures lack %q:\n%s", want, head)
		}
	}
	if strings.Contains(head, " l=") {
		t.Errorf("l= in a signature:\n%s", head)
	}
	for _, l := range strings.Split(strings.TrimSuffix(head, "\r\n"), "\r\n") {
		if len(l) > 998 {
			t.Errorf("line over 998 characters: %q", l)
		}
	}
	vs, err := dkim.VerifyWithOptions(strings.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookup(records)})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("%d verifications", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("%s: %v", v.Domain, v.Err)
		}
		if d := v.Expiration.Sub(v.Time); d < Validity-time.Second || d > Validity+time.Second {
			t.Errorf("x= - t= = %v, want %v", d, Validity)
		}
	}

	// A changed body, or a field added after signing, breaks both.
	for name, bad := range map[string]string{
		"body":          signed + "P.S.\r\n",
		"added Subject": strings.Replace(signed, "Subject: hello\r\n", "Subject: hello\r\nSubject: urgent\r\n", 1),
		"added Cc":      strings.Replace(signed, "Subject: hello\r\n", "Subject: hello\r\nCc: eve@example.net\r\n", 1),
		"added From":    strings.Replace(signed, "To: bob", "From: eve@example.net\r\nTo: bob", 1),
	} {
		vs, err := dkim.VerifyWithOptions(strings.NewReader(bad), &dkim.VerifyOptions{LookupTXT: lookup(records)})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Err == nil {
				t.Errorf("%s: a signature still verifies", name)
			}
		}
	}
}

func TestOversign(t *testing.T) {
	hdr := []byte("From: a\r\nTo: b\r\nTo: c\r\nX-Other: d\r\n\r\n")
	got := oversign(hdr, []string{"From", "To", "Cc", "to"})
	want := []string{"From", "From", "To", "To", "To", "Cc"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %v, want %v", got, want)
	}
	got = oversign(hdr, []string{"Subject"})
	want = []string{"Subject", "From", "From"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("From not added: got %v", got)
	}
}

func TestKeys(t *testing.T) {
	_, records := keys(t)
	if v := records["s-rsa._domainkey.example.test"]; !strings.HasPrefix(v, "v=DKIM1; k=rsa; p=MIIBIjAN") {
		t.Errorf("RSA record %q", v)
	}
	if v := records["s-ed25519._domainkey.example.test"]; !strings.HasPrefix(v, "v=DKIM1; k=ed25519; p=") || len(v) != len("v=DKIM1; k=ed25519; p=")+44 {
		t.Errorf("Ed25519 record %q", v)
	}
	rsaTXT := records["s-rsa._domainkey.example.test"]
	parts := TXTStrings(rsaTXT)
	if len(parts) != 2 || strings.Join(parts, "") != rsaTXT || len(parts[0]) != 255 {
		t.Errorf("TXTStrings split %d bytes into %d parts", len(rsaTXT), len(parts))
	}

	// PKCS#1, as opendkim-genkey writes.
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	if _, err := LoadKey("d.test", "s", p1); err != nil {
		t.Errorf("PKCS#1: %v", err)
	}
	// Refused: too small, not a key, not a signing key type, no names.
	small := Key{Domain: "d.test", Selector: "s", Signer: smallRSA{}}
	if err := small.check(); err == nil {
		t.Error("512-bit RSA key accepted")
	}
	for name, c := range map[string]struct {
		d, s string
		pem  []byte
	}{
		"not PEM":     {"d.test", "s", []byte("hello")},
		"certificate": {"d.test", "s", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})},
		"no selector": {"d.test", "", p1},
	} {
		if _, err := LoadKey(c.d, c.s, c.pem); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := GenerateKey("dsa", nil); err == nil {
		t.Error("dsa generated")
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	if txt, err := TXTRecord(edPriv.Public()); err != nil || !strings.Contains(txt, "k=ed25519") {
		t.Errorf("TXTRecord: %q %v", txt, err)
	}
}

func TestSignErrors(t *testing.T) {
	ks, _ := keys(t)
	if err := Sign(&bytes.Buffer{}, strings.NewReader(msg), nil, nil); err == nil {
		t.Error("signed with no keys")
	}
	huge := "X: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n\r\nbody"
	if err := Sign(&bytes.Buffer{}, strings.NewReader(huge), ks, nil); !errors.Is(err, ErrHeaderTooLarge) {
		t.Errorf("huge header: %v", err)
	}
	// A message without a body still signs.
	if err := Sign(&bytes.Buffer{}, strings.NewReader("From: a@example.test\r\nSubject: x\r\n"), ks, nil); err != nil {
		t.Errorf("no body: %v", err)
	}
}

// smallRSA is a signer with a 512-bit RSA public key (Go no longer makes
// keys that small).
type smallRSA struct{}

func (smallRSA) Public() crypto.PublicKey {
	return &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 511), E: 65537}
}

func (smallRSA) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("no")
}

// BenchmarkSignatures is the cost of signing one message with both keys
// (one RSA-2048 and one Ed25519 signature), at 4 KB and 100 KB.
func BenchmarkSignatures(b *testing.B) {
	ks, _ := keys(b)
	for _, size := range []int{4 << 10, 100 << 10} {
		m := msg + strings.Repeat("All work and no play makes Jack a dull boy.\r\n", size/46)
		b.Run(strconv.Itoa(size>>10)+"KB", func(b *testing.B) {
			b.SetBytes(int64(len(m)))
			for b.Loop() {
				if _, err := Signatures(strings.NewReader(m), ks, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
