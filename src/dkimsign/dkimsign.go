// Package dkimsign signs outgoing mail with DKIM (RFC 6376): one
// DKIM-Signature per key, so a cluster domain can sign with RSA-2048 and
// Ed25519 together (RFC 8463) and a verifier uses whichever it knows. It
// also makes the keys and the DNS TXT value each selector publishes.
//
// The signatures are what large senders use today: rsa-sha256 or
// ed25519-sha256, relaxed/relaxed canonicalization, no l= (a body length
// lets anyone append to a signed message), t= the signing time and x= a
// week later (long enough for any retry schedule, short enough that an old
// message replayed later no longer verifies), and an oversigned header
// list: every listed field that the message has is signed once per
// occurrence and once more, and every listed field it lacks is signed as
// absent, so a field added on the way breaks the signature instead of
// riding on it.
//
// The cryptography and canonicalization are github.com/emersion/go-msgauth's
// dkim package; this package chooses the options and handles several keys.
package dkimsign

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// Key is one signing key: the d= domain, the s= selector its public half is
// published under (<Selector>._domainkey.<Domain>), and the private key, an
// *rsa.PrivateKey or an ed25519.PrivateKey.
type Key struct {
	Domain   string
	Selector string
	Signer   crypto.Signer
}

// DefaultHeaders is the header list signed when Sign is given none: the
// fields a reader sees or a client threads by (RFC 6376 section 5.4.1).
var DefaultHeaders = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding",
}

// Validity is how long a signature is valid: its x= is t= plus this.
const Validity = 7 * 24 * time.Hour

// The fields are formatted by go-msgauth: the h= list stays on one line
// (folding inside it would change what was signed), so a line can pass
// RFC 5322's recommended 78 characters, never its limit of 998.

// MaxHeaderBytes bounds the header block Sign and Signatures read before
// the body; a longer one is refused (ErrHeaderTooLarge) rather than held in
// memory. Submitted mail has headers of a few kilobytes.
const MaxHeaderBytes = 1 << 20

// ErrHeaderTooLarge is returned for a header block over MaxHeaderBytes.
var ErrHeaderTooLarge = errors.New("dkimsign: message header block too large")

// Sign writes to w the message read from r with one DKIM-Signature field
// per key prepended, in keys' order. headers is the list of fields to sign
// (nil: DefaultHeaders); From is added if missing, as RFC 6376 requires.
// The message is held in memory; Signatures does the same work streaming.
func Sign(w io.Writer, r io.Reader, keys []Key, headers []string) error {
	var buf bytes.Buffer
	sigs, err := Signatures(io.TeeReader(r, &buf), keys, headers)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, sigs); err != nil {
		return err
	}
	_, err = buf.WriteTo(w)
	return err
}

// Signatures reads the whole message from r and returns the DKIM-Signature
// fields (each folded, each ending in CRLF) to prepend to it, one per key.
// It keeps only the header block in memory, so a caller that already has
// the message on disk (a queue file) can sign it without a second copy.
func Signatures(r io.Reader, keys []Key, headers []string) (string, error) {
	if len(keys) == 0 {
		return "", errors.New("dkimsign: no keys")
	}
	if headers == nil {
		headers = DefaultHeaders
	}
	br := bufio.NewReader(r)
	hdr, err := readHeader(br, MaxHeaderBytes)
	if err != nil {
		return "", err
	}
	hkeys := oversign(hdr, headers)

	t := time.Now()
	signers := make([]*dkim.Signer, len(keys))
	ws := make([]io.Writer, len(keys))
	for i, k := range keys {
		if err := k.check(); err != nil {
			return "", err
		}
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             hkeys,
			Expiration:             t.Add(Validity),
		})
		if err != nil {
			return "", fmt.Errorf("dkimsign: key %s._domainkey.%s: %w", k.Selector, k.Domain, err)
		}
		signers[i], ws[i] = s, s
	}
	closeAll := func() {
		for _, s := range signers {
			s.Close()
		}
	}
	mw := io.MultiWriter(ws...)
	if !endsBlock(hdr) {
		// A message that is all header (RFC 5322 allows it) is
		// signed as if the empty line were there, as a verifier reads
		// it; go-msgauth needs it.
		if !bytes.HasSuffix(hdr, []byte("\n")) {
			hdr = append(hdr, "\r\n"...) // the last field's line end
		}
		if !endsBlock(hdr) {
			hdr = append(hdr, "\r\n"...)
		}
	}
	if _, err := mw.Write(hdr); err != nil {
		closeAll()
		return "", err
	}
	if _, err := io.Copy(mw, br); err != nil {
		closeAll()
		return "", err
	}
	var out strings.Builder
	for i, s := range signers {
		if err := s.Close(); err != nil {
			for _, s := range signers[i+1:] {
				s.Close()
			}
			return "", fmt.Errorf("dkimsign: key %s._domainkey.%s: %w", keys[i].Selector, keys[i].Domain, err)
		}
		out.WriteString(s.Signature())
	}
	return out.String(), nil
}

func (k Key) check() error {
	if k.Domain == "" || k.Selector == "" {
		return errors.New("dkimsign: a key needs a domain and a selector")
	}
	if k.Signer == nil {
		return fmt.Errorf("dkimsign: key %s._domainkey.%s has no private key", k.Selector, k.Domain)
	}
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 1024 {
			return fmt.Errorf("dkimsign: key %s._domainkey.%s: RSA keys under 1024 bits are not valid DKIM keys (RFC 8301)", k.Selector, k.Domain)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("dkimsign: key %s._domainkey.%s: %T is neither RSA nor Ed25519", k.Selector, k.Domain, k.Signer)
	}
	return nil
}

// readHeader reads the header block up to and including the empty line
// that ends it (or to the end of a message that has no body).
func readHeader(br *bufio.Reader, max int) ([]byte, error) {
	var hdr []byte
	partial := false // the last read ended inside a long line
	for {
		line, err := br.ReadSlice('\n')
		if len(hdr)+len(line) > max {
			return nil, ErrHeaderTooLarge
		}
		hdr = append(hdr, line...)
		switch {
		case err == bufio.ErrBufferFull:
			partial = true
			continue
		case err == io.EOF:
			return hdr, nil
		case err != nil:
			return nil, err
		}
		if !partial && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
			return hdr, nil
		}
		partial = false
	}
}

// endsBlock tells whether a header block ends with its empty line.
func endsBlock(hdr []byte) bool {
	return bytes.HasSuffix(hdr, []byte("\n\r\n")) || bytes.HasSuffix(hdr, []byte("\n\n")) ||
		string(hdr) == "\r\n" || string(hdr) == "\n"
}

// oversign lists each wanted field once per occurrence in the header and
// once more: the extra entry signs "no further field of this name".
func oversign(hdr []byte, wanted []string) []string {
	count := map[string]int{}
	for _, name := range fieldNames(hdr) {
		count[strings.ToLower(name)]++
	}
	var out []string
	seen := map[string]bool{}
	hasFrom := false
	for _, h := range wanted {
		l := strings.ToLower(strings.TrimSpace(h))
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		if l == "from" {
			hasFrom = true
		}
		for i := 0; i <= count[l]; i++ {
			out = append(out, h)
		}
	}
	if !hasFrom {
		for i := 0; i <= count["from"]; i++ {
			out = append(out, "From")
		}
	}
	return out
}

// fieldNames returns the name of every field in a header block, in order.
func fieldNames(hdr []byte) []string {
	var names []string
	for _, line := range strings.Split(string(hdr), "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if name, _, ok := strings.Cut(line, ":"); ok {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names
}
