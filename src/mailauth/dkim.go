package mailauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// checkDKIM verifies the first maxSigs DKIM-Signature fields of the message
// whose header is hdr (split into fields) and whose body is the rest of
// br, which it reads to the end. The error is only a read error.
func checkDKIM(ctx context.Context, dns dnsCtx, hdr []byte, fields []field, br *bufio.Reader, maxSigs int) ([]DKIMResult, error) {
	var sigs []map[string]string
	for _, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			sigs = append(sigs, tags(f.value()))
		}
	}
	body := &countReader{r: br}
	if len(sigs) == 0 {
		_, err := io.Copy(io.Discard, body)
		return nil, err
	}
	if len(sigs) > maxSigs {
		sigs = sigs[:maxSigs]
	}
	if !endsBlock(hdr) {
		// A message without a body may end without the empty line;
		// go-msgauth would take that for a read error.
		hdr = hdr[:len(hdr):len(hdr)]
		if !bytes.HasSuffix(hdr, []byte("\n")) {
			hdr = append(hdr, "\r\n"...) // the last field's line end
		}
		if !endsBlock(hdr) {
			hdr = append(hdr, "\r\n"...)
		}
	}
	verifs, err := dkim.VerifyWithOptions(io.MultiReader(bytes.NewReader(hdr), body), &dkim.VerifyOptions{
		LookupTXT:        dns.txtFunc(ctx),
		MaxVerifications: maxSigs,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// go-msgauth returns an error of its own only when reading the
		// message failed; its verdicts are then not to be trusted.
		return nil, err
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return nil, err
	}
	out := make([]DKIMResult, 0, len(verifs))
	for i, vf := range verifs {
		var t map[string]string
		if i < len(sigs) {
			t = sigs[i]
		} else {
			t = map[string]string{}
		}
		r := DKIMResult{
			Domain:     sanitize(strings.Join(strings.Fields(t["d"]), "")),
			Selector:   sanitize(strings.Join(strings.Fields(t["s"]), "")),
			Algorithm:  sanitize(strings.Join(strings.Fields(t["a"]), "")),
			Identifier: sanitize(vf.Identifier),
		}
		if b := base64Prefix(t["b"]); len(b) > 8 {
			r.B = b[:8]
		} else {
			r.B = b
		}
		switch e := vf.Err; {
		case e == nil:
			r.Result = ResultPass
		case dkim.IsTempFail(e):
			r.Result, r.Reason = ResultTempError, dkimReason(e)
		case dkim.IsPermFail(e):
			r.Result, r.Reason = ResultPermError, dkimReason(e)
		case strings.Contains(e.Error(), "body length"):
			r.Result, r.Reason = bodyLength(t["l"], body.n)
		default:
			r.Result, r.Reason = ResultFail, dkimReason(e)
		}
		out = append(out, r)
	}
	return out, nil
}

// bodyLength judges a signature with l=, which go-msgauth refuses to
// verify: an l= that is not a number, or counts more than the body holds,
// is a broken signature (permerror, RFC 6376 section 3.5 and 6.1.3); a
// plausible one still leaves anything appended after it unsigned, which
// this receiver does not accept (policy, RFC 8601 section 2.7.1).
func bodyLength(l string, bodyLen int64) (string, string) {
	l = strings.Join(strings.Fields(l), "")
	if l == "" || len(l) > 76 || strings.Trim(l, "0123456789") != "" {
		return ResultPermError, "malformed l= tag"
	}
	// The canonical body is at most the received body plus a final CRLF.
	if n, err := strconv.ParseUint(l, 10, 64); err != nil || n > uint64(bodyLen)+2 {
		return ResultPermError, "l= is longer than the body"
	}
	return ResultPolicy, "l= leaves part of the body unsigned"
}

// dkimReason is the library's error without its "dkim: " prefix.
func dkimReason(err error) string {
	return strings.TrimPrefix(err.Error(), "dkim: ")
}

// tags reads a DKIM-Signature's tag=value list leniently, for naming the
// signature in the results; the library does the strict parse.
func tags(v string) map[string]string {
	m := map[string]string{}
	for _, p := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := m[k]; !dup {
			m[k] = strings.TrimSpace(val)
		}
	}
	return m
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// endsBlock tells whether a header block ends with its empty line.
func endsBlock(hdr []byte) bool {
	return bytes.HasSuffix(hdr, []byte("\n\r\n")) || bytes.HasSuffix(hdr, []byte("\n\n")) ||
		string(hdr) == "\r\n" || string(hdr) == "\n"
}
