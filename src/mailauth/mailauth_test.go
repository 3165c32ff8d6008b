package mailauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/src/dkimsign"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"github.com/miekg/dns"
)

const authServID = "mx.correo.test"

var (
	goodIP = netip.MustParseAddr("192.0.2.10")   // in every test domain's SPF
	badIP  = netip.MustParseAddr("198.51.100.7") // in none
)

// testKeys are example.test's signing keys, made once per test run.
type testKeys struct {
	rsa, ed         dkimsign.Key
	rsaTXT, edTXT   string
	rsaPEM, edPEM   []byte
	other           dkimsign.Key // other.test's, for a valid signature not aligned with the From
	otherTXT        string
	unpublished     dkimsign.Key // a selector with no record
	malformedRecord dkimsign.Key // a selector whose record's p= is not base64
	servfailKey     dkimsign.Key // a selector whose lookup fails
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func getKeys(t testing.TB) testKeys {
	keysOnce.Do(func() {
		gen, err := dkimsign.GenerateKeys(nil)
		if err != nil {
			panic(err)
		}
		load := func(d, s string, pem []byte) dkimsign.Key {
			k, err := dkimsign.LoadKey(d, s, pem)
			if err != nil {
				panic(err)
			}
			return k
		}
		keys.rsa = load("example.test", "rsa", gen[0].PEM)
		keys.rsaTXT, keys.rsaPEM = gen[0].TXT, gen[0].PEM
		keys.ed = load("example.test", "ed", gen[1].PEM)
		keys.edTXT, keys.edPEM = gen[1].TXT, gen[1].PEM
		o, err := dkimsign.GenerateKey(dkimsign.Ed25519, nil)
		if err != nil {
			panic(err)
		}
		keys.other = load("other.test", "s1", o.PEM)
		keys.otherTXT = o.TXT
		keys.unpublished = load("example.test", "nokey", gen[1].PEM)
		keys.malformedRecord = load("example.test", "badkey", gen[1].PEM)
		keys.servfailKey = load("example.test", "sf", gen[1].PEM)
	})
	return keys
}

// testZone is every record the tests use.
func testZone(t testing.TB) []dns.RR {
	k := getKeys(t)
	spf := "v=spf1 ip4:192.0.2.0/24 -all"
	rrs := []dns.RR{
		// SPF, one domain per result.
		txtRR("spf-pass.test", spf),
		txtRR("spf-soft.test", "v=spf1 ip4:192.0.2.0/24 ~all"),
		txtRR("spf-neutral.test", "v=spf1 ?all"),
		aRR("spf-none.test", "192.0.2.99"), // the name exists, no TXT
		servfail("spf-servfail.test"),
		txtRR("spf-loop.test", "v=spf1 include:spf-loop2.test -all"),
		txtRR("spf-loop2.test", "v=spf1 include:spf-loop.test -all"),
		txtRR("spf-void.test", "v=spf1 a:v1.spf-void.test a:v2.spf-void.test a:v3.spf-void.test ip4:192.0.2.0/24 -all"),
		txtRR("spf-mx.test", "v=spf1 mx -all"),
		mxRR("spf-mx.test", 10, "mx.spf-mx.test"),
		aRR("mx.spf-mx.test", "192.0.2.10"),
		txtRR("spf-dup.test", spf),
		txtRR("spf-dup.test", "v=spf1 -all"),
		txtRR("spf-syntax.test", "v=spf1 foo:bar -all"),
		txtRR("helo.spf-pass.test", spf),

		// example.test: p=reject, sp=quarantine, keys rsa (split over
		// two strings) and ed, and a few broken selectors.
		txtRR("example.test", spf),
		txtRR("mail.example.test", spf),
		txtRR("_dmarc.example.test", "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.test"),
		txtRR("rsa._domainkey.example.test", dkimsign.TXTStrings(k.rsaTXT)...),
		txtRR("ed._domainkey.example.test", k.edTXT),
		txtRR("badkey._domainkey.example.test", "v=DKIM1; k=ed25519; p=!!not*base64!!"),
		servfail("sf._domainkey.example.test"),
		servfail("sf.example.test"),
		txtRR("sub.example.test", spf),
		txtRR("other.test", spf),
		txtRR("s1._domainkey.other.test", k.otherTXT),

		txtRR("quar.test", spf),
		txtRR("_dmarc.quar.test", "v=DMARC1; p=quarantine"),
		txtRR("nonepol.test", spf),
		txtRR("_dmarc.nonepol.test", "v=DMARC1; p=none"),
		txtRR("strict.test", spf),
		txtRR("mail.strict.test", spf),
		txtRR("_dmarc.strict.test", "v=DMARC1; p=reject; adkim=s; aspf=s"),
		txtRR("dmarc-servfail.test", spf),
		servfail("_dmarc.dmarc-servfail.test"),
		txtRR("pct.test", spf),
		txtRR("_dmarc.pct.test", "v=DMARC1; p=reject; pct=0"),
		txtRR("badrec.test", spf),
		txtRR("_dmarc.badrec.test", "v=DMARC1; p=bogus"),
	}
	// More than 10 DNS-querying terms: a:h1 ... a:h11.
	var many []string
	for i := 1; i <= 11; i++ {
		h := fmt.Sprintf("h%d.spf-many.test", i)
		many = append(many, "a:"+h)
		rrs = append(rrs, aRR(h, fmt.Sprintf("203.0.113.%d", i)))
	}
	rrs = append(rrs, txtRR("spf-many.test", "v=spf1 "+strings.Join(many, " ")+" ip4:192.0.2.0/24 -all"))
	return rrs
}

func newVerifier(t testing.TB) *Verifier {
	return &Verifier{AuthServID: authServID, Resolver: NewResolver(startDNS(t, testZone(t)...)), Timeout: 10 * time.Second}
}

// message builds a message From the given address with extra header
// lines (each ending in CRLF) and a body.
func message(from, extra, body string) string {
	return "From: Someone <" + from + ">\r\n" +
		"To: user@correo.test\r\n" +
		"Subject: test\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"Message-ID: <1@" + from[strings.IndexByte(from, '@')+1:] + ">\r\n" +
		extra + "\r\n" + body
}

const body = "Hello,\r\n\r\nthis is the body.\r\n"

func sign(t testing.TB, msg string, ks ...dkimsign.Key) string {
	t.Helper()
	var b bytes.Buffer
	if err := dkimsign.Sign(&b, strings.NewReader(msg), ks, nil); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// signWith signs with go-msgauth directly, for options dkimsign never
// uses (an expiry in the past, l=).
func signWith(t testing.TB, msg string, k dkimsign.Key, exp time.Time) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: k.Domain, Selector: k.Selector, Signer: k.Signer,
		Hash: crypto.SHA256, HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "Subject"}, Expiration: exp})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// setTag replaces (or adds) tag=value in the first DKIM-Signature field.
func setTag(t testing.TB, msg, tag, value string) string {
	t.Helper()
	start := strings.Index(msg, "DKIM-Signature:")
	if start < 0 {
		t.Fatal("no DKIM-Signature")
	}
	end := start
	for {
		i := strings.Index(msg[end:], "\r\n")
		end += i + 2
		if msg[end] != ' ' && msg[end] != '\t' {
			break
		}
	}
	f := msg[start:end]
	re := regexp.MustCompile(`([:;]\s*)` + tag + `=[^;]*`)
	if re.MatchString(f) {
		f = re.ReplaceAllString(f, "${1}"+tag+"="+value)
		if !strings.HasSuffix(f, "\r\n") {
			f += "\r\n" // the value replaced was the last one
		}
	} else {
		f = strings.Replace(f, "DKIM-Signature: ", "DKIM-Signature: "+tag+"="+value+"; ", 1)
	}
	return msg[:start] + f + msg[end:]
}

type want struct {
	spf   string
	dkim  []string // each signature's result, in order
	dmarc string
	act   Action
	pol   Policy // applied policy
	in    string // a substring of the Authentication-Results field
}

func TestCheck(t *testing.T) {
	k := getKeys(t)
	v := newVerifier(t)
	plain := func(from string) string { return message(from, "", body) }
	signedBoth := sign(t, plain("ceo@example.test"), k.ed, k.rsa)
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)

	cases := []struct {
		name     string
		ip       netip.Addr
		helo     string
		mailFrom string
		msg      string
		want     want
	}{
		// SPF: every result.
		{"spf pass, dmarc pass by SPF", goodIP, "mta.example.test", "bounce@example.test", plain("ceo@example.test"),
			want{spf: "pass", dmarc: "pass", act: Accept, in: "spf=pass smtp.mailfrom=example.test"}},
		{"spf fail", badIP, "x", "a@spf-pass.test", plain("a@spf-pass.test"),
			want{spf: "fail", dmarc: "none", act: Accept, in: "spf=fail"}},
		{"spf softfail", badIP, "x", "a@spf-soft.test", plain("a@spf-soft.test"),
			want{spf: "softfail", dmarc: "none", act: Accept}},
		{"spf neutral", badIP, "x", "a@spf-neutral.test", plain("a@spf-neutral.test"),
			want{spf: "neutral", dmarc: "none", act: Accept}},
		{"spf none", badIP, "x", "a@spf-none.test", plain("a@spf-none.test"),
			want{spf: "none", dmarc: "none", act: Accept}},
		{"spf none nxdomain", badIP, "x", "a@nowhere.test", plain("a@nowhere.test"),
			want{spf: "none", dmarc: "none", act: Accept}},
		{"spf temperror servfail", goodIP, "x", "a@spf-servfail.test", plain("a@spf-servfail.test"),
			want{spf: "temperror", dmarc: "none", act: Accept, in: "spf=temperror"}},
		{"spf permerror include loop", goodIP, "x", "a@spf-loop.test", plain("a@spf-loop.test"),
			want{spf: "permerror", dmarc: "none", act: Accept, in: `reason="more than 10 DNS lookups"`}},
		{"spf permerror more than 10 lookups", goodIP, "x", "a@spf-many.test", plain("a@spf-many.test"),
			want{spf: "permerror", dmarc: "none", act: Accept, in: `reason="more than 10 DNS lookups"`}},
		{"spf permerror void lookups", goodIP, "x", "a@spf-void.test", plain("a@spf-void.test"),
			want{spf: "permerror", dmarc: "none", act: Accept, in: `reason="more than 2 void DNS lookups"`}},
		{"spf permerror two records", goodIP, "x", "a@spf-dup.test", plain("a@spf-dup.test"),
			want{spf: "permerror", dmarc: "none", act: Accept}},
		{"spf permerror syntax", goodIP, "x", "a@spf-syntax.test", plain("a@spf-syntax.test"),
			want{spf: "permerror", dmarc: "none", act: Accept}},
		{"spf mx mechanism", goodIP, "x", "a@spf-mx.test", plain("a@spf-mx.test"),
			want{spf: "pass", dmarc: "none", act: Accept}},
		{"null sender checks HELO", goodIP, "helo.spf-pass.test", "", plain("a@spf-pass.test"),
			want{spf: "pass", dmarc: "none", act: Accept, in: "spf=pass smtp.helo=helo.spf-pass.test"}},
		{"address literal HELO, null sender", goodIP, "[192.0.2.10]", "", plain("a@spf-pass.test"),
			want{spf: "none", dmarc: "none", act: Accept}},

		// DKIM.
		{"dkim pass both keys, dmarc pass by DKIM", badIP, "x", "a@spf-pass.test", signedBoth,
			want{spf: "fail", dkim: []string{"pass", "pass"}, dmarc: "pass", act: Accept,
				in: "dkim=pass header.a=ed25519-sha256 header.b="}},
		{"dkim fail modified body, p=reject", badIP, "x", "a@spf-pass.test", signedBoth + "appended\r\n",
			want{spf: "fail", dkim: []string{"fail", "fail"}, dmarc: "fail", act: Reject, pol: PolicyReject,
				in: "dmarc=fail (p=reject dis=reject) header.from=example.test"}},
		{"dkim none: not signed", badIP, "x", "a@spf-pass.test", plain("a@spf-pass.test"),
			want{spf: "fail", dmarc: "none", act: Accept, in: "dkim=none"}},
		{"dkim permerror malformed signature field", goodIP, "x", "a@example.test",
			"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; b\r\n" + plain("a@example.test"),
			want{spf: "pass", dkim: []string{"permerror"}, dmarc: "pass", act: Accept, in: "dkim=permerror"}},
		{"dkim permerror missing tags", goodIP, "x", "a@example.test",
			"DKIM-Signature: v=1; d=example.test; s=ed\r\n" + plain("a@example.test"),
			want{spf: "pass", dkim: []string{"permerror"}, dmarc: "pass", act: Accept}},
		{"dkim permerror absurd l=", badIP, "x", "a@spf-pass.test",
			setTag(t, sign(t, plain("ceo@example.test"), k.ed), "l", "99999999999999999999999999"),
			want{spf: "fail", dkim: []string{"permerror"}, dmarc: "fail", act: Reject, pol: PolicyReject, in: "l= is longer than the body"}},
		{"dkim permerror l= beyond the body", badIP, "x", "a@spf-pass.test",
			setTag(t, sign(t, plain("ceo@example.test"), k.ed), "l", "5000"),
			want{spf: "fail", dkim: []string{"permerror"}, dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"dkim policy l= within the body", badIP, "x", "a@spf-pass.test",
			setTag(t, sign(t, plain("ceo@example.test"), k.ed), "l", "10"),
			want{spf: "fail", dkim: []string{"policy"}, dmarc: "fail", act: Reject, pol: PolicyReject, in: "dkim=policy"}},
		{"dkim permerror x= in the past", badIP, "x", "a@spf-pass.test",
			signWith(t, plain("ceo@example.test"), k.ed, past),
			want{spf: "fail", dkim: []string{"permerror"}, dmarc: "fail", act: Reject, pol: PolicyReject, in: "signature has expired"}},
		{"dkim pass x= in the future", badIP, "x", "a@spf-pass.test",
			signWith(t, plain("ceo@example.test"), k.ed, future),
			want{spf: "fail", dkim: []string{"pass"}, dmarc: "pass", act: Accept}},
		{"dkim permerror absurd x=", badIP, "x", "a@spf-pass.test",
			setTag(t, sign(t, plain("ceo@example.test"), k.ed), "x", "999999999999999999999999999999"),
			want{spf: "fail", dkim: []string{"permerror"}, dmarc: "fail", act: Reject, pol: PolicyReject, in: "malformed expiration"}},
		{"dkim permerror bad base64 b=", badIP, "x", "a@spf-pass.test",
			setTag(t, sign(t, plain("ceo@example.test"), k.ed), "b", "!!!!not-base64****"),
			want{spf: "fail", dkim: []string{"permerror"}, dmarc: "fail", act: Reject, pol: PolicyReject, in: "malformed signature"}},
		{"dkim permerror no key record", badIP, "x", "a@spf-pass.test",
			sign(t, plain("ceo@example.test"), k.unpublished),
			want{spf: "fail", dkim: []string{"permerror"}, dmarc: "fail", act: Reject, pol: PolicyReject, in: "no key"}},
		{"dkim permerror malformed key record", badIP, "x", "a@spf-pass.test",
			sign(t, plain("ceo@example.test"), k.malformedRecord),
			want{spf: "fail", dkim: []string{"permerror"}, dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"dkim temperror key lookup fails: dmarc temperror, accepted", badIP, "x", "a@spf-pass.test",
			sign(t, plain("ceo@example.test"), k.servfailKey),
			want{spf: "fail", dkim: []string{"temperror"}, dmarc: "temperror", act: Accept, in: "dmarc=temperror"}},
		{"one good signature among broken ones", badIP, "x", "a@spf-pass.test",
			"DKIM-Signature: garbage\r\n" + sign(t, plain("ceo@example.test"), k.unpublished, k.ed),
			want{spf: "fail", dkim: []string{"permerror", "permerror", "pass"}, dmarc: "pass", act: Accept}},

		// DMARC.
		{"forged From at a p=reject domain", goodIP, "x", "attacker@spf-pass.test", plain("ceo@example.test"),
			want{spf: "pass", dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"valid signature of another domain is not aligned", badIP, "x", "a@spf-pass.test",
			sign(t, plain("ceo@quar.test"), k.other),
			want{spf: "fail", dkim: []string{"pass"}, dmarc: "fail", act: Quarantine, pol: PolicyQuarantine,
				in: "dmarc=fail (p=quarantine dis=quarantine) header.from=quar.test"}},
		{"p=quarantine fail", badIP, "x", "a@quar.test", plain("a@quar.test"),
			want{spf: "fail", dmarc: "fail", act: Quarantine, pol: PolicyQuarantine}},
		{"p=none fail", badIP, "x", "a@nonepol.test", plain("a@nonepol.test"),
			want{spf: "fail", dmarc: "fail", act: Accept, pol: PolicyNone, in: "(p=none dis=none)"}},
		{"subdomain takes sp=", badIP, "x", "a@sub.example.test", plain("a@sub.example.test"),
			want{spf: "fail", dmarc: "fail", act: Quarantine, pol: PolicyQuarantine}},
		{"subdomain passes by relaxed SPF alignment", goodIP, "x", "a@sub.example.test", plain("a@example.test"),
			want{spf: "pass", dmarc: "pass", act: Accept}},
		{"relaxed SPF alignment with a subdomain", goodIP, "x", "bounce@mail.example.test", plain("a@example.test"),
			want{spf: "pass", dmarc: "pass", act: Accept}},
		{"strict SPF alignment refuses a subdomain", goodIP, "x", "bounce@mail.strict.test", plain("a@strict.test"),
			want{spf: "pass", dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"strict SPF alignment, exact domain", goodIP, "x", "bounce@strict.test", plain("a@strict.test"),
			want{spf: "pass", dmarc: "pass", act: Accept}},
		{"strict DKIM alignment refuses the parent's signature", badIP, "x", "a@spf-pass.test",
			sign(t, plain("a@sub.strict.test"), k.ed),
			want{spf: "fail", dkim: []string{"pass"}, dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"dmarc record lookup fails: temperror, accepted", badIP, "x", "a@spf-pass.test", plain("a@dmarc-servfail.test"),
			want{spf: "fail", dmarc: "temperror", act: Accept}},
		{"spf temperror aligned: dmarc temperror, accepted", goodIP, "x", "a@sf.example.test", plain("a@example.test"),
			want{spf: "temperror", dmarc: "temperror", act: Accept}},
		{"spf temperror not aligned: dmarc fail", goodIP, "x", "a@spf-servfail.test", plain("a@example.test"),
			want{spf: "temperror", dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"pct=0 turns reject into quarantine", badIP, "x", "a@pct.test", plain("a@pct.test"),
			want{spf: "fail", dmarc: "fail", act: Quarantine, pol: PolicyQuarantine}},
		{"malformed DMARC record: permerror, no policy", badIP, "x", "a@badrec.test", plain("a@badrec.test"),
			want{spf: "fail", dmarc: "permerror", act: Accept}},
		{"second From field at a p=reject domain", goodIP, "x", "a@spf-pass.test",
			"From: ceo@example.test\r\n" + plain("a@spf-pass.test"),
			want{spf: "pass", dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"two addresses in one From", goodIP, "x", "a@spf-pass.test",
			strings.Replace(plain("a@spf-pass.test"), "From: Someone <a@spf-pass.test>", "From: a@spf-pass.test, ceo@example.test", 1),
			want{spf: "pass", dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"unparseable From read leniently", goodIP, "x", "a@spf-pass.test",
			strings.Replace(plain("a@spf-pass.test"), "From: Someone <a@spf-pass.test>", `From: "bank <ceo@example.test>`, 1),
			want{spf: "pass", dmarc: "fail", act: Reject, pol: PolicyReject}},
		{"no From field", goodIP, "x", "a@spf-pass.test", "Subject: x\r\n\r\nbody\r\n",
			want{spf: "pass", dmarc: "permerror", act: Accept}},
		{"header without body", goodIP, "x", "a@example.test", "From: a@example.test\r\nSubject: x\r\n",
			want{spf: "pass", dmarc: "pass", act: Accept}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := v.Check(context.Background(), Input{ClientIP: c.ip, Helo: c.helo, MailFrom: c.mailFrom, Message: strings.NewReader(c.msg)})
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, c.want)
		})
	}
}

func checkResult(t *testing.T, res Result, w want) {
	t.Helper()
	var dk []string
	for _, d := range res.DKIM {
		dk = append(dk, d.Result)
	}
	if w.pol == "" {
		w.pol = PolicyNone
	}
	if res.SPF.Result != w.spf || fmt.Sprint(dk) != fmt.Sprint(w.dkim) || res.DMARC.Result != w.dmarc ||
		res.Disposition != w.act || res.Policy != w.pol {
		t.Errorf("got spf=%s dkim=%v dmarc=%s policy=%s %s, want spf=%s dkim=%v dmarc=%s policy=%s %s\n%s",
			res.SPF.Result, dk, res.DMARC.Result, res.Policy, res.Disposition, w.spf, w.dkim, w.dmarc, w.pol, w.act, res.Header)
	}
	if res.Aligned != (w.dmarc == "pass") {
		t.Errorf("Aligned = %v with dmarc=%s", res.Aligned, res.DMARC.Result)
	}
	unfolded := strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(res.Header)
	if w.in != "" && !strings.Contains(unfolded, w.in) {
		t.Errorf("Authentication-Results lacks %q:\n%s", w.in, res.Header)
	}
	checkHeader(t, res.Header)
	t.Logf("%s", res.Header)
	if res.Disposition == Reject {
		t.Logf("%d %s %s", res.ReplyCode, res.ReplyEnhanced, res.ReplyText)
	}
	if res.Disposition == Reject && (res.ReplyCode/100 != 5 || res.ReplyEnhanced == "" || res.ReplyText == "") {
		t.Errorf("reject without a reply: %d %s %q", res.ReplyCode, res.ReplyEnhanced, res.ReplyText)
	}
}

// checkHeader checks the field is well formed: named, folded into lines of
// at most 78 characters, CRLF-terminated, and readable by go-msgauth's
// parser with our authserv-id.
func checkHeader(t *testing.T, h string) {
	t.Helper()
	if !strings.HasPrefix(h, "Authentication-Results: "+authServID+";") || !strings.HasSuffix(h, "\r\n") {
		t.Fatalf("malformed field %q", h)
	}
	lines := strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n")
	for i, l := range lines {
		if len(l) > 78 && strings.Contains(l, " ") {
			t.Errorf("line %d longer than 78: %q", i, l)
		}
		if i > 0 && !strings.HasPrefix(l, "\t") {
			t.Errorf("continuation line %d not indented: %q", i, l)
		}
		if strings.ContainsAny(l, "\r\n") {
			t.Errorf("stray line end in %q", l)
		}
	}
	v := strings.TrimPrefix(strings.ReplaceAll(h, "\r\n", ""), "Authentication-Results:")
	id, _, err := authres.Parse(v)
	if err != nil || id != authServID {
		t.Errorf("authres.Parse: id %q err %v in %q", id, err, h)
	}
}

func TestHugeHeader(t *testing.T) {
	v := newVerifier(t)
	var b strings.Builder
	b.WriteString("From: ceo@example.test\r\n")
	for b.Len() < 1<<20 {
		b.WriteString("X-Filler: " + strings.Repeat("x", 990) + "\r\n")
	}
	b.WriteString("\r\nbody\r\n")
	res, err := v.Check(context.Background(), Input{ClientIP: goodIP, Helo: "x", MailFrom: "a@example.test", Message: strings.NewReader(b.String())})
	if err != nil {
		t.Fatal(err)
	}
	if res.Disposition != Reject || res.ReplyCode != 552 || res.ReplyEnhanced != "5.3.4" || res.DMARC.Result != "permerror" {
		t.Fatalf("got %s %d %s dmarc=%s", res.Disposition, res.ReplyCode, res.ReplyEnhanced, res.DMARC.Result)
	}
	checkHeader(t, res.Header)

	// One line of 1 MB with no line end at all.
	res, err = v.Check(context.Background(), Input{ClientIP: goodIP, Helo: "x", MailFrom: "a@example.test",
		Message: strings.NewReader("Subject: " + strings.Repeat("y", 1<<20))})
	if err != nil || res.Disposition != Reject || res.ReplyCode != 552 {
		t.Fatalf("got %v %s %d", err, res.Disposition, res.ReplyCode)
	}
}

func TestManySignaturesBounded(t *testing.T) {
	k := getKeys(t)
	v := newVerifier(t)
	v.MaxSignatures = 3
	msg := sign(t, message("ceo@example.test", "", body), k.ed)
	for range 50 {
		msg = sign(t, msg, k.unpublished)
	}
	res, err := v.Check(context.Background(), Input{ClientIP: badIP, Helo: "x", MailFrom: "a@spf-pass.test", Message: strings.NewReader(msg)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DKIM) != 3 {
		t.Fatalf("%d signatures verified, want 3", len(res.DKIM))
	}
	checkHeader(t, res.Header)
}

func TestDeadResolver(t *testing.T) {
	v := &Verifier{AuthServID: authServID, Resolver: NewResolver(deadAddr(t)), Timeout: 5 * time.Second}
	k := getKeys(t)
	res, err := v.Check(context.Background(), Input{ClientIP: goodIP, Helo: "x", MailFrom: "a@example.test",
		Message: strings.NewReader(sign(t, message("ceo@example.test", "", body), k.ed))})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, want{spf: "temperror", dkim: []string{"temperror"}, dmarc: "temperror", act: Accept})
}

func TestTimeout(t *testing.T) {
	// A context already past its deadline: every lookup fails at once,
	// and nothing is refused for it.
	v := newVerifier(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := v.Check(ctx, Input{ClientIP: goodIP, Helo: "x", MailFrom: "a@example.test",
		Message: strings.NewReader(message("ceo@example.test", "", body))})
	if err != nil {
		t.Fatal(err)
	}
	if res.Disposition != Accept || res.SPF.Result != "temperror" || res.DMARC.Result != "temperror" {
		t.Fatalf("got spf=%s dmarc=%s %s", res.SPF.Result, res.DMARC.Result, res.Disposition)
	}
}

func TestReadError(t *testing.T) {
	v := newVerifier(t)
	_, err := v.Check(context.Background(), Input{ClientIP: goodIP, Helo: "x", MailFrom: "a@example.test",
		Message: &failingReader{strings.NewReader(message("ceo@example.test", "", body))}})
	if err == nil {
		t.Fatal("a read error was not reported")
	}
}

type failingReader struct{ r *strings.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.r.Len() == 0 {
		return 0, fmt.Errorf("disk on fire")
	}
	return f.r.Read(p[:min(len(p), 10)])
}

func TestStripForged(t *testing.T) {
	cases := []struct{ name, in, out string }{
		{"ours removed",
			"Authentication-Results: mx.correo.test; dkim=pass\r\nSubject: x\r\n\r\nbody",
			"Subject: x\r\n\r\nbody"},
		{"case-insensitive id and name, folded field",
			"Received: x\r\nauthentication-results: MX.Correo.TEST;\r\n\tspf=pass smtp.mailfrom=a@b\r\nSubject: x\r\n\r\n",
			"Received: x\r\nSubject: x\r\n\r\n"},
		{"comment before the id, version after it",
			"Authentication-Results: (forged) mx.correo.test 1; none\r\n\r\n",
			"\r\n"},
		{"quoted id",
			"Authentication-Results: \"mx.correo.test\"; none\r\n\r\n",
			"\r\n"},
		{"foreign id kept",
			"Authentication-Results: mx.google.test; dkim=pass\r\nSubject: x\r\n\r\n",
			"Authentication-Results: mx.google.test; dkim=pass\r\nSubject: x\r\n\r\n"},
		{"id that merely starts with ours kept",
			"Authentication-Results: mx.correo.test.evil; dkim=pass\r\n\r\n",
			"Authentication-Results: mx.correo.test.evil; dkim=pass\r\n\r\n"},
		{"body untouched",
			"Subject: x\r\n\r\nAuthentication-Results: mx.correo.test; none\r\n",
			"Subject: x\r\n\r\nAuthentication-Results: mx.correo.test; none\r\n"},
		{"several, bare LF",
			"Authentication-Results: mx.correo.test; a=b\nX: 1\nAuthentication-Results: other; c=d\nAuthentication-Results:mx.correo.test;e=f\n\n",
			"X: 1\nAuthentication-Results: other; c=d\n\n"},
		{"no blank line", "Authentication-Results: mx.correo.test; none\r\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(StripForged([]byte(c.in), authServID)); got != c.out {
				t.Errorf("got %q, want %q", got, c.out)
			}
		})
	}
	if got := string(StripForged([]byte(cases[0].in), "")); got != cases[0].in {
		t.Errorf("empty id stripped something: %q", got)
	}
}

func TestReadHeader(t *testing.T) {
	for _, c := range []struct{ in, hdr, rest string }{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n\r\n", "body\r\n"},
		{"A: 1\n\nbody", "A: 1\n\n", "body"},
		{"A: 1\r\n", "A: 1\r\n", ""},
		{"\r\nbody", "\r\n", "body"},
		{"A: " + strings.Repeat("z", 100000) + "\r\n\r\nb", "A: " + strings.Repeat("z", 100000) + "\r\n\r\n", "b"},
	} {
		br := bufioReader(c.in)
		h, err := ReadHeader(br, 0)
		rest := readAll(br)
		if err != nil || string(h) != c.hdr || rest != c.rest {
			t.Errorf("ReadHeader(%.20q) = %.20q, %v, rest %.20q", c.in, h, err, rest)
		}
	}
	if _, err := ReadHeader(bufioReader("A: 12345\r\n\r\n"), 5); err != ErrHeaderTooLarge {
		t.Errorf("limit: %v", err)
	}
}

func TestAlignment(t *testing.T) {
	for _, c := range []struct {
		auth, from string
		strict     bool
		want       bool
	}{
		{"example.test", "example.test", true, true},
		{"mail.example.test", "example.test", false, true},
		{"mail.example.test", "example.test", true, false},
		{"example.test", "news.example.test", false, true},
		{"a.example.co.uk", "b.example.co.uk", false, true},
		{"example.co.uk", "other.co.uk", false, false},
		{"co.uk", "example.co.uk", false, false},
		{"EXAMPLE.test.", "example.test", true, true},
		{"", "example.test", false, false},
	} {
		mode := dmarc.AlignmentMode(dmarc.AlignmentRelaxed)
		if c.strict {
			mode = dmarc.AlignmentStrict
		}
		if got := aligned(c.auth, c.from, mode); got != c.want {
			t.Errorf("aligned(%q, %q, %s) = %v", c.auth, c.from, mode, got)
		}
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(s), 16) }

func readAll(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}
