// Package mailauth checks who sent an incoming message: SPF (RFC 7208) for
// the SMTP client and envelope sender, DKIM (RFC 6376, RFC 8463) for the
// signatures in the message, and DMARC (RFC 7489) for the From domain, with
// identifier alignment against the organizational domain. It writes the
// results as one Authentication-Results field (RFC 8601) under the
// cluster's authserv-id and says what to do with the message: accept it,
// file it as junk (a failing p=quarantine domain) or refuse it at the end
// of DATA (a failing p=reject domain, 550 5.7.1).
//
// The protocols are libraries': blitiri.com.ar/go/spf for SPF, with its
// lookup limits (10 DNS-querying terms, 2 void lookups); go-msgauth's dkim
// for signatures, dmarc for the policy record and authres to format the
// field. This package adds the parts they leave to the caller: the DNS
// they ask (Resolver), the organizational domain (the Public Suffix List
// in golang.org/x/net/publicsuffix), alignment, p versus sp and pct, how a
// temporary DNS failure is treated (never as a failure: a temperror is
// accepted and noted), bounds on hostile input, and removing
// Authentication-Results a sender forged with our id (StripForged).
//
// The smtpd side reads, in order: Check on the received message; refuse
// with the Result's reply when Disposition is Reject; otherwise write
// Result.Header, then the message's header through StripForged, then the
// body; deliver to Junk when Disposition is Quarantine.
package mailauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults for the Verifier's zero fields.
const (
	// DefaultTimeout bounds one Check's DNS work. An SMTP client waits
	// 10 minutes for the reply to DATA (RFC 5321 section 4.5.3.2.6);
	// this is far within that, and past it a lookup counts as temperror.
	DefaultTimeout = 20 * time.Second
	// DefaultMaxHeaderBytes bounds the header block. Postfix's
	// header_size_limit is 100 KB; legitimate mail has a few KB.
	DefaultMaxHeaderBytes = 256 << 10
	// DefaultMaxSignatures is how many DKIM signatures are verified;
	// each costs a DNS lookup and a pass over the body. Mail with more
	// (a list adds one to the author's) is rare; the rest are ignored.
	DefaultMaxSignatures = 5
	// maxAuthorDomains bounds the distinct From domains evaluated.
	maxAuthorDomains = 8
)

// Verifier checks incoming messages. Its fields are read-only once it is
// in use; one Verifier serves any number of concurrent Checks.
type Verifier struct {
	// AuthServID names this cluster in Authentication-Results (RFC 8601
	// section 2.5), usually the MX pool's name. Required.
	AuthServID string
	// Resolver is the DNS asked; nil is net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds the DNS work of one Check (0: DefaultTimeout).
	Timeout time.Duration
	// MaxHeaderBytes bounds the header block (0: DefaultMaxHeaderBytes).
	// A message whose header is longer is refused (552 5.3.4): it is not
	// mail, and one From field hidden past the limit must not slip by
	// its domain's DMARC policy.
	MaxHeaderBytes int
	// MaxSignatures bounds the DKIM signatures verified (0:
	// DefaultMaxSignatures); later ones are ignored.
	MaxSignatures int
}

// Input is one message as received.
type Input struct {
	ClientIP netip.Addr // the SMTP client's address
	Helo     string     // the EHLO/HELO argument
	MailFrom string     // the reverse-path without <>; "" for the null sender
	Message  io.Reader  // the message as received, header and body; read to the end
}

// Policy is a DMARC policy (the p= and sp= tags).
type Policy string

const (
	PolicyNone       Policy = "none"
	PolicyQuarantine Policy = "quarantine"
	PolicyReject     Policy = "reject"
)

// Action is what the receiving side does with the message.
type Action int

const (
	Accept     Action = iota // deliver as usual
	Quarantine               // deliver to the recipient's Junk folder
	Reject                   // refuse at the end of DATA with the Result's reply
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Quarantine:
		return "quarantine"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Result values, as RFC 8601 spells them.
const (
	ResultNone      = "none"
	ResultPass      = "pass"
	ResultFail      = "fail"
	ResultSoftFail  = "softfail"
	ResultNeutral   = "neutral"
	ResultPolicy    = "policy"
	ResultTempError = "temperror"
	ResultPermError = "permerror"
)

// SPFResult is the SPF check of the envelope sender.
type SPFResult struct {
	Result   string // none neutral pass fail softfail temperror permerror
	Domain   string // the domain checked: MAIL FROM's, or HELO's for the null sender
	Identity string // "mailfrom" or "helo"
	Reason   string // why, for temperror and permerror
}

// DKIMResult is the check of one DKIM-Signature field.
type DKIMResult struct {
	Result     string // pass fail policy temperror permerror
	Domain     string // d=
	Selector   string // s=
	Algorithm  string // a=
	Identifier string // i=, or "@" + d= when absent
	B          string // the start of b=, to tell signatures apart (RFC 6008)
	Reason     string // why, when not pass
}

// DMARCResult is the DMARC evaluation of the author domain.
type DMARCResult struct {
	Result       string // none pass fail temperror permerror
	From         string // the RFC5322.From domain evaluated
	PolicyDomain string // where the record was found: From's domain or its organizational domain
	Published    Policy // p=, or sp= for a subdomain of PolicyDomain; "" without a record
	SPFAligned   bool   // SPF passed for a domain aligned with From
	DKIMAligned  bool   // a signature passed for a domain aligned with From
	Reason       string
}

// Result is everything Check found and what to do.
type Result struct {
	SPF   SPFResult
	DKIM  []DKIMResult // one per signature verified; empty: the message is not signed
	DMARC DMARCResult

	// Policy is the DMARC policy applied: the published one, made
	// milder when pct= sampled this message out; none unless DMARC
	// failed.
	Policy Policy
	// Aligned is DMARC's pass: SPF or DKIM passed for the From domain.
	Aligned bool

	// Header is the Authentication-Results field to prepend, name and
	// folded value and final CRLF.
	Header string

	Disposition Action
	// The reply for Reject: code, enhanced status code and text, as
	// "550 5.7.1 <text>".
	ReplyCode     int
	ReplyEnhanced string
	ReplyText     string
}

// Check verifies one message. It reads in.Message to the end. The error is
// only that of reading the message (a temporary failure for the caller: the
// message was not checked); DNS failures are temperror results instead.
func (v *Verifier) Check(ctx context.Context, in Input) (Result, error) {
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r Resolver = v.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	dns := dnsCtx{r}

	spfc := make(chan SPFResult, 1)
	go func() { spfc <- checkSPF(ctx, dns, in) }()

	var res Result
	maxHdr := v.MaxHeaderBytes
	if maxHdr <= 0 {
		maxHdr = DefaultMaxHeaderBytes
	}
	br := bufio.NewReaderSize(in.Message, 64<<10)
	hdr, err := ReadHeader(br, maxHdr)
	switch {
	case errors.Is(err, ErrHeaderTooLarge):
		if _, err := io.Copy(io.Discard, br); err != nil {
			return Result{}, err
		}
		reason := fmt.Sprintf("header block over %d bytes", maxHdr)
		res.SPF = <-spfc
		res.DKIM = []DKIMResult{{Result: ResultPermError, Reason: reason}}
		res.DMARC = DMARCResult{Result: ResultPermError, Reason: reason}
		res.Policy = PolicyNone
		res.Disposition = Reject
		res.ReplyCode, res.ReplyEnhanced = 552, "5.3.4"
		res.ReplyText = fmt.Sprintf("Message header block is larger than %d bytes", maxHdr)
		res.Header = v.header(res)
		return res, nil
	case err != nil:
		return Result{}, err
	}
	fields := splitFields(hdr)

	maxSigs := v.MaxSignatures
	if maxSigs <= 0 {
		maxSigs = DefaultMaxSignatures
	}
	res.DKIM, err = checkDKIM(ctx, dns, hdr, fields, br, maxSigs)
	if err != nil {
		return Result{}, err
	}
	res.SPF = <-spfc
	v.evalDMARC(ctx, dns, fields, &res)
	res.Header = v.header(res)
	return res, nil
}

// sanitize makes a value taken from the message or the envelope safe to
// write into a header field: no control characters (a CR or LF would end
// the field), no more than 255 bytes.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 255 {
		s = s[:255]
		for len(s) > 0 && s[len(s)-1]&0xc0 == 0x80 { // do not cut a UTF-8 sequence
			s = s[:len(s)-1]
		}
		if len(s) > 0 && s[len(s)-1] >= 0xc0 {
			s = s[:len(s)-1]
		}
	}
	return s
}

// token is sanitize for a value that names something (a domain, a
// selector, an algorithm): only letters, digits, '.', '-' and '_', and
// non-ASCII letters of internationalized names, so that it needs no
// quoting and no reader can mistake it for a separator. A value from a
// hostile message loses the rest.
func token(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		case r >= 0x80 && unicode.IsPrint(r) && r != utf8.RuneError && !unicode.IsSpace(r):
			return r
		}
		return -1
	}, sanitize(s))
}

// reason is sanitize for a free-text reason: no separators or quotes,
// which readers that split the field naively would trip on.
func reason(s string) string {
	return strings.NewReplacer(";", ",", `"`, "'", `\`, "/").Replace(sanitize(s))
}
