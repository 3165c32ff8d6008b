package mailauth

// DKIM interop in both directions with the two other implementations
// Debian ships: Python's dkimpy (python3-dkim) and OpenDKIM (opendkim,
// opendkim-tools). Both ask the same real test DNS server as correo does:
// dkimpy through a dnsfunc that queries it with dnspython, OpenDKIM through
// its libunbound resolver forwarded to it (ResolverConfiguration). No
// query leaves the loopback address.
//
// opendkim-testmsg, OpenDKIM's command-line tool, is not used to verify:
// it can only ask the resolvers in /etc/resolv.conf. Its signing mode
// always signs rsa-sha1, which RFC 8301 forbids verifiers to accept, so
// it checks that correo refuses that; OpenDKIM's rsa-sha256 and
// ed25519-sha256 signatures come from the filter itself in its test mode
// (opendkim -t), which signs and verifies files without an MTA.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"correo/internal/testutil"
	"correo/src/dkimsign"
)

// dkimpyScript signs or verifies with dkimpy, asking the test DNS server.
//
//	verify PORT MSGFILE         prints one line per signature: pass or fail
//	sign PORT MSGFILE KEYFILE DOMAIN SELECTOR ALGORITHM
//	                            prints the DKIM-Signature field
const dkimpyScript = `
import sys, dkim, dns.resolver

port = int(sys.argv[2])
res = dns.resolver.Resolver(configure=False)
res.nameservers = ['127.0.0.1']
res.port = port

def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    try:
        ans = res.resolve(n, 'TXT', lifetime=timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return b''
    return b''.join(b''.join(rr.strings) for rr in ans)

msg = open(sys.argv[3], 'rb').read()
if sys.argv[1] == 'verify':
    d = dkim.DKIM(msg)
    n = sum(1 for k, v in dkim.rfc822_parse(msg)[0] if k.lower() == b'dkim-signature')
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            sys.stderr.write('signature %d: %s\n' % (i, e))
            ok = False
        print('pass' if ok else 'fail')
else:
    key = open(sys.argv[4], 'rb').read()
    sig = dkim.sign(msg, sys.argv[6].encode(), sys.argv[5].encode(), key,
                    canonicalize=(b'relaxed', b'relaxed'), signature_algorithm=sys.argv[7].encode(),
                    include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])
    sys.stdout.write(sig.decode())
`

// interop is the shared setup: the test DNS server, and files in a
// temporary directory.
type interop struct {
	t    *testing.T
	dir  string
	port string
	v    *Verifier
}

func newInterop(t *testing.T) *interop {
	addr := startDNS(t, testZone(t)...)
	return &interop{t: t, dir: t.TempDir(), port: addr[strings.LastIndexByte(addr, ':')+1:],
		v: &Verifier{AuthServID: authServID, Resolver: NewResolver(addr)}}
}

func (x *interop) file(name string, data []byte) string {
	p := filepath.Join(x.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		x.t.Fatal(err)
	}
	return p
}

func (x *interop) run(name string, args ...string) string {
	x.t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		x.t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// python is Debian's python3, the one python3-dkim is installed for (a
// python3 earlier on PATH, such as pyenv's, may lack the module).
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", testutil.NeedCommand(t, "python3")} {
		if exec.Command(p, "-c", "import dkim, dns.resolver, nacl").Run() == nil {
			return p
		}
	}
	if os.Getenv(testutil.StrictEnv) != "" {
		t.Fatal("python3 cannot import dkim (python3-dkim), dns (python3-dnspython) and nacl (python3-nacl): run the project's test command, which installs them")
	}
	t.Skip("python3-dkim not installed")
	return ""
}

func (x *interop) dkimpyVerify(msg string) []string {
	x.t.Helper()
	py := python(x.t)
	script := x.file("dkimpy.py", []byte(dkimpyScript))
	return strings.Fields(x.run(py, script, "verify", x.port, x.file("msg.eml", []byte(msg))))
}

func (x *interop) dkimpySign(msg string, key []byte, k dkimsign.Key, alg string) string {
	x.t.Helper()
	py := python(x.t)
	script := x.file("dkimpy.py", []byte(dkimpyScript))
	return x.run(py, script, "sign", x.port, x.file("msg.eml", []byte(msg)), x.file("key", key), k.Domain, k.Selector, alg) + msg
}

// opendkimConf writes an opendkim configuration whose resolver asks only
// the test DNS server: libunbound forwarding "." to it, loopback allowed,
// and "test." out of unbound's default local zones (RFC 6761 names it
// answers NXDOMAIN for itself).
func (x *interop) opendkimConf(extra string) string {
	ub := x.file("unbound.conf", fmt.Appendf(nil,
		"server:\n\tdo-not-query-localhost: no\n\tlocal-zone: \"test.\" nodefault\nforward-zone:\n\tname: \".\"\n\tforward-addr: 127.0.0.1@%s\n", x.port))
	return x.file("opendkim.conf", []byte("Syslog no\nRequireSafeKeys false\nResolverConfiguration "+ub+"\n"+extra))
}

// opendkimVerify runs the filter's test mode on msg and returns its
// verdict line.
func (x *interop) opendkimVerify(msg string) string {
	x.t.Helper()
	bin := testutil.NeedCommand(x.t, "opendkim")
	conf := x.opendkimConf("Mode v\n")
	return strings.TrimSpace(x.run(bin, "-x", conf, "-t", x.file("msg.eml", []byte(msg))))
}

// opendkimSign has the filter sign msg with a PEM key and returns the
// signed message.
func (x *interop) opendkimSign(msg string, key []byte, k dkimsign.Key, alg string) string {
	x.t.Helper()
	bin := testutil.NeedCommand(x.t, "opendkim")
	kf := x.file("od.key", key)
	conf := x.opendkimConf(fmt.Sprintf("Mode s\nDomain %s\nSelector %s\nKeyFile %s\nSignatureAlgorithm %s\nCanonicalization relaxed/relaxed\n",
		k.Domain, k.Selector, kf, alg))
	out := x.run(bin, "-x", conf, "-t", x.file("msg.eml", []byte(msg)))
	// "opendkim: FILE:" then the field, folded with CRLF or LF.
	_, sig, ok := strings.Cut(out, ":\n")
	if !ok || !strings.HasPrefix(sig, "DKIM-Signature:") {
		x.t.Fatalf("opendkim did not sign:\n%s", out)
	}
	return crlf(strings.TrimRight(sig, "\r\n")+"\n") + msg
}

// crlf makes every line end in CRLF.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func (x *interop) check(msg string) Result {
	x.t.Helper()
	res, err := x.v.Check(context.Background(), Input{ClientIP: badIP, Helo: "x", MailFrom: "a@spf-pass.test", Message: strings.NewReader(msg)})
	if err != nil {
		x.t.Fatal(err)
	}
	return res
}

// interopMessage has the fields every signer signs, Date included
// (libopendkim refuses a message without one).
func interopMessage() string {
	return message("ceo@example.test", "", "Dear reader,\r\n\r\nthis travels between three DKIM implementations.\r\n")
}

func TestInteropCorreoSignsDkimpyVerifies(t *testing.T) {
	x := newInterop(t)
	k := getKeys(t)
	signed := sign(t, interopMessage(), k.ed, k.rsa)
	if got := x.dkimpyVerify(signed); strings.Join(got, " ") != "pass pass" {
		t.Fatalf("dkimpy on correo's Ed25519 and RSA signatures: %v\n%s", got, signed)
	}
	if got := x.dkimpyVerify(signed + "tampered\r\n"); strings.Join(got, " ") != "fail fail" {
		t.Fatalf("dkimpy on a modified body: %v", got)
	}
	// Oversigning: a second Subject added on the way breaks both.
	added := strings.Replace(signed, "Subject: test\r\n", "Subject: test\r\nSubject: urgent\r\n", 1)
	if got := x.dkimpyVerify(added); strings.Join(got, " ") != "fail fail" {
		t.Fatalf("dkimpy with a field added: %v", got)
	}
}

func TestInteropCorreoSignsOpenDKIMVerifies(t *testing.T) {
	x := newInterop(t)
	k := getKeys(t)
	for _, c := range []struct {
		key  dkimsign.Key
		want string
	}{
		{k.rsa, "verification (s=rsa, d=example.test, 2048-bit key) succeeded"},
		{k.ed, "verification (s=ed, d=example.test, 0-bit key) succeeded"}, // it counts no bits in Ed25519 keys
	} {
		signed := sign(t, interopMessage(), c.key)
		if got := x.opendkimVerify(signed); !strings.HasSuffix(got, c.want) {
			t.Errorf("opendkim on correo's %s signature: %q, want %q", c.key.Selector, got, c.want)
		}
		if got := x.opendkimVerify(signed + "tampered\r\n"); !strings.Contains(got, "failed") {
			t.Errorf("opendkim on a modified body: %q", got)
		}
	}
	// Both signatures at once, as correo sends them.
	if got := x.opendkimVerify(sign(t, interopMessage(), k.ed, k.rsa)); !strings.Contains(got, "succeeded") {
		t.Errorf("opendkim on both signatures: %q", got)
	}
}

func TestInteropOpenDKIMSignsCorreoVerifies(t *testing.T) {
	x := newInterop(t)
	k := getKeys(t)
	for _, c := range []struct {
		key dkimsign.Key
		pem []byte
		alg string
	}{
		{k.rsa, k.rsaPEM, "rsa-sha256"},
		{k.ed, k.edPEM, "ed25519-sha256"},
	} {
		t.Run(c.alg, func(t *testing.T) {
			x.t = t
			signed := x.opendkimSign(interopMessage(), c.pem, c.key, c.alg)
			if !strings.Contains(signed, "a="+c.alg) {
				t.Fatalf("opendkim did not sign %s:\n%s", c.alg, signed)
			}
			checkResult(t, x.check(signed), want{spf: "fail", dkim: []string{"pass"}, dmarc: "pass", act: Accept,
				in: "dkim=pass header.a=" + c.alg})
			checkResult(t, x.check(signed+"tampered\r\n"), want{spf: "fail", dkim: []string{"fail"}, dmarc: "fail",
				act: Reject, pol: PolicyReject, in: "body hash did not verify"})
		})
	}
}

func TestInteropOpenDKIMTestmsgSHA1Refused(t *testing.T) {
	x := newInterop(t)
	k := getKeys(t)
	bin := testutil.NeedCommand(t, "opendkim-testmsg")
	cmd := exec.Command(bin, "-C", "-d", k.rsa.Domain, "-s", k.rsa.Selector, "-k", x.file("rsa.key", k.rsaPEM))
	cmd.Stdin = strings.NewReader(interopMessage())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("opendkim-testmsg: %v", err)
	}
	signed := crlf(string(out))
	if !strings.Contains(signed, "a=rsa-sha1") {
		t.Fatalf("opendkim-testmsg no longer signs rsa-sha1: update this test\n%s", signed)
	}
	// RFC 8301 section 3.1: rsa-sha1 signatures are not valid.
	checkResult(t, x.check(signed), want{spf: "fail", dkim: []string{"permerror"}, dmarc: "fail", act: Reject,
		pol: PolicyReject, in: "hash algorithm too weak"})
}

func TestInteropDkimpySignsCorreoVerifies(t *testing.T) {
	x := newInterop(t)
	k := getKeys(t)
	seed := ed25519Seed(t, k.ed)
	for _, c := range []struct {
		key dkimsign.Key
		pem []byte
		alg string
	}{
		{k.rsa, k.rsaPEM, "rsa-sha256"},
		{k.ed, seed, "ed25519-sha256"}, // dkimpy takes the base64 seed
	} {
		t.Run(c.alg, func(t *testing.T) {
			x.t = t
			signed := crlf(x.dkimpySign(interopMessage(), c.pem, c.key, c.alg))
			checkResult(t, x.check(signed), want{spf: "fail", dkim: []string{"pass"}, dmarc: "pass", act: Accept,
				in: "dkim=pass header.a=" + c.alg})
			checkResult(t, x.check(signed+"tampered\r\n"), want{spf: "fail", dkim: []string{"fail"}, dmarc: "fail",
				act: Reject, pol: PolicyReject})
			// And correo's own view of dkimpy's field agrees with dkimpy.
			if got := x.dkimpyVerify(signed); strings.Join(got, " ") != "pass" {
				t.Errorf("dkimpy on its own signature: %v", got)
			}
		})
	}
}

func ed25519Seed(t *testing.T, k dkimsign.Key) []byte {
	priv, ok := k.Signer.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("%T is not an Ed25519 key", k.Signer)
	}
	return []byte(base64.StdEncoding.EncodeToString(priv.Seed()))
}
