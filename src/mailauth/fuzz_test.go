package mailauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"correo/src/dkimsign"

	"github.com/emersion/go-msgauth/authres"
)

// The fuzzers feed untrusted input (a whole message, an envelope sender, a
// header block) to Check and StripForged with a resolver that answers from
// a fixed table, so they run without a network. Their seeds are in
// testdata/fuzz; MAILAUTH_WRITE_SEEDS=1 go test -run TestWriteFuzzSeeds
// writes them again.

// fuzzKey is a fixed Ed25519 key, so seeds signed with it stay valid
// signatures (until their x=).
var fuzzKey = dkimsign.Key{Domain: "example.test", Selector: "fz",
	Signer: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))}

type fixedResolver map[string][]string

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func key(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func (f fixedResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := f[key(name)]; ok {
		if len(v) == 1 && v[0] == "SERVFAIL" {
			return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
		}
		return v, nil
	}
	return nil, notFound(name)
}

func (f fixedResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if key(name) == "example.test" {
		return []*net.MX{{Host: "mx.example.test.", Pref: 10}}, nil
	}
	return nil, notFound(name)
}

func (f fixedResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if key(host) == "mx.example.test" {
		return []net.IPAddr{{IP: net.ParseIP("192.0.2.10")}}, nil
	}
	return nil, notFound(host)
}

func (f fixedResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return nil, notFound(addr)
}

func fuzzResolver() fixedResolver {
	txt, err := dkimsign.TXTRecord(fuzzKey.Signer.Public())
	if err != nil {
		panic(err)
	}
	return fixedResolver{
		"example.test":                 {"v=spf1 mx include:inc.example.test -all"},
		"inc.example.test":             {"v=spf1 ip4:192.0.2.0/24 include:example.test ~all"},
		"_dmarc.example.test":          {"v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=s; pct=100"},
		"fz._domainkey.example.test":   {txt},
		"bad._domainkey.example.test":  {"v=DKIM1; k=rsa; p=%%%"},
		"sf._domainkey.example.test":   {"SERVFAIL"},
		"quar.test":                    {"v=spf1 a:x.quar.test a:y.quar.test a:z.quar.test -all"},
		"_dmarc.quar.test":             {"v=DMARC1; p=quarantine"},
		"_dmarc.broken.test":           {"v=DMARC1; p=maybe"},
		"multi.test":                   {"v=spf1 -all", "v=spf1 +all"},
		"temp.test":                    {"SERVFAIL"},
		"_dmarc.temp.test":             {"SERVFAIL"},
		"many.test":                    {"v=spf1 " + strings.Repeat("a:n.many.test ", 12) + "-all"},
		"redirect.test":                {"v=spf1 redirect=%{d}.redirect.test"},
		"example.co.uk":                {"v=spf1 exists:%{i}.%{l}.%{o}._spf.%{d} -all"},
		"_dmarc.example.co.uk":         {"v=DMARC1; p=reject"},
		"s1._domainkey.example.co.uk":  {txt},
		"_dmarc.sub.quar.test":         {"v=DMARC1; p=none"},
		"rev._domainkey.example.test":  {"v=DKIM1; p="},
		"sha1._domainkey.example.test": {"v=DKIM1; h=sha1; p=" + strings.TrimPrefix(txt, "v=DKIM1; k=ed25519; p=")},
	}
}

func fuzzVerifier() *Verifier {
	return &Verifier{AuthServID: authServID, Resolver: fuzzResolver(), MaxHeaderBytes: 64 << 10, MaxSignatures: 4}
}

// fuzzSeeds are messages and envelope senders worth starting from.
func fuzzSeeds() [][2]string {
	plain := message("ceo@example.test", "", body)
	var signed bytes.Buffer
	if err := dkimsign.Sign(&signed, strings.NewReader(plain), []dkimsign.Key{fuzzKey}, nil); err != nil {
		panic(err)
	}
	s := signed.String()
	return [][2]string{
		{plain, "a@example.test"},
		{s, "bounce@other.test"},
		{s + "tampered\r\n", "a@example.test"},
		{strings.Replace(s, "s=fz", "s=bad", 1), ""},
		{strings.Replace(s, "s=fz", "s=sf", 1), "a@temp.test"},
		{strings.Replace(s, "s=fz", "s=rev", 1), "a@multi.test"},
		{strings.Replace(s, "DKIM-Signature: ", "DKIM-Signature: l=99999999999999999999; ", 1), "a@many.test"},
		{strings.Replace(s, "DKIM-Signature: ", "DKIM-Signature: x=-1; ", 1), "a@redirect.test"},
		{"DKIM-Signature: v=1; a=ed25519-sha256; d=example.test; s=fz; h=from; bh=; b=\r\n" + plain, "x@quar.test"},
		{"DKIM-Signature: ;;;==;\r\n\t=\r\nFrom: a@quar.test\r\n\r\n", "x@sub.quar.test"},
		{"From: \"x\" <a@example.test>, b@example.co.uk\r\nFrom: c@broken.test\r\n\r\nhi", "a@example.co.uk"},
		{"From: =?utf-8?q?ceo=40example.test?= <\"weird\\\"@\"@example.test>\r\n\r\n", "<>"},
		{"Authentication-Results: mx.correo.test; dkim=pass\r\nFrom: a@example.test\r\n", "a@example.test"},
		{"From a@b Mon Jan 1\r\nFrom: a@example.test\r\n \r\n\tcontinued\r\n\r\n", "postmaster"},
		{"\r\n", ""},
		{"", ""},
		{"From: a@example.test\n\nbare LF\n", "a@[192.0.2.1]"},
		{"X: " + strings.Repeat("y", 70<<10) + "\r\n\r\n", "a@example.test"},
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s[0]), s[1])
	}
	v := fuzzVerifier()
	f.Fuzz(func(t *testing.T, msg []byte, mailFrom string) {
		res, err := v.Check(context.Background(), Input{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mx.example.test",
			MailFrom: mailFrom, Message: bytes.NewReader(msg)})
		if err != nil {
			t.Fatalf("Check of an in-memory message failed: %v", err)
		}
		checkFuzzResult(t, res)
	})
}

func checkFuzzResult(t *testing.T, res Result) {
	h := res.Header
	if !strings.HasPrefix(h, "Authentication-Results: "+authServID+";\r\n\t") || !strings.HasSuffix(h, "\r\n") {
		t.Fatalf("malformed field %q", h)
	}
	body := strings.TrimSuffix(h, "\r\n")
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\r':
			if i+2 >= len(body) || body[i+1] != '\n' || body[i+2] != '\t' {
				t.Fatalf("line end that is not a fold at %d in %q", i, h)
			}
		case '\n':
			if i == 0 || body[i-1] != '\r' {
				t.Fatalf("bare LF at %d in %q", i, h)
			}
		case 0:
			t.Fatalf("NUL in %q", h)
		}
	}
	v := strings.TrimPrefix(strings.ReplaceAll(h, "\r\n", ""), "Authentication-Results:")
	if id, results, err := authres.Parse(v); err != nil || id != authServID || len(results) < 3 {
		t.Fatalf("authres.Parse: %q, %d results, %v in %q", id, len(results), err, h)
	}
	if len(res.DKIM) > 4 {
		t.Fatalf("%d signatures verified, MaxSignatures is 4", len(res.DKIM))
	}
	switch res.Disposition {
	case Accept, Quarantine:
		if res.ReplyCode != 0 {
			t.Fatalf("%s with reply %d", res.Disposition, res.ReplyCode)
		}
	case Reject:
		if res.ReplyCode/100 != 5 || res.ReplyText == "" || strings.ContainsAny(res.ReplyText, "\r\n") {
			t.Fatalf("reject reply %d %q", res.ReplyCode, res.ReplyText)
		}
	default:
		t.Fatalf("disposition %d", res.Disposition)
	}
	if res.Disposition == Reject && res.DMARC.Result == ResultTempError {
		t.Fatal("rejected on a temperror")
	}
	if res.Aligned != (res.DMARC.Result == ResultPass) {
		t.Fatalf("Aligned %v with dmarc=%s", res.Aligned, res.DMARC.Result)
	}
}

func FuzzStripForged(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s[0]))
	}
	f.Add([]byte("Authentication-Results: (c (nested) \\) ) \"mx.correo.test\" 1; none\r\nA: b\r\n\r\n"))
	f.Add([]byte(" leading continuation\r\nAuthentication-Results:mx.correo.test\r\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		out := StripForged(hdr, authServID)
		if len(out) > len(hdr) {
			t.Fatalf("output longer than input")
		}
		if again := StripForged(out, authServID); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
		var kept []byte
		for _, fl := range splitFields(hdr) {
			ours := strings.EqualFold(fl.name, "Authentication-Results") && strings.EqualFold(authServIDOf(fl.value()), authServID)
			if !ours {
				kept = append(kept, fl.raw...)
			}
		}
		if !bytes.HasPrefix(out, kept) {
			t.Fatalf("a field other than ours was changed or dropped: %q from %q", out, hdr)
		}
		for _, fl := range splitFields(out) {
			if strings.EqualFold(fl.name, "Authentication-Results") && strings.EqualFold(authServIDOf(fl.value()), authServID) {
				t.Fatalf("forged field kept: %q", fl.raw)
			}
		}
	})
}

// TestWriteFuzzSeeds writes fuzzSeeds to testdata/fuzz, the committed
// corpus, when MAILAUTH_WRITE_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("MAILAUTH_WRITE_SEEDS") == "" {
		t.Skip("set MAILAUTH_WRITE_SEEDS=1 to rewrite testdata/fuzz")
	}
	for i, s := range fuzzSeeds() {
		write := func(name, content string) {
			dir := filepath.Join("testdata", "fuzz", name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("FuzzCheck", "go test fuzz v1\n[]byte("+strconv.Quote(s[0])+")\nstring("+strconv.Quote(s[1])+")\n")
		write("FuzzStripForged", "go test fuzz v1\n[]byte("+strconv.Quote(s[0])+")\n")
	}
}
