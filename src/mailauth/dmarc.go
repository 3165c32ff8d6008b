package mailauth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// orgDomain is a domain's organizational domain (RFC 7489 section 3.2): the
// public suffix it is under, from the Public Suffix List, plus one label.
// A name that is itself a public suffix, or that the list cannot place,
// is its own.
func orgDomain(d string) string {
	o, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return o
}

// aligned tells whether an authenticated domain is aligned with the From
// domain: equal in strict mode, the same organizational domain in relaxed
// mode (RFC 7489 section 3.1).
func aligned(authDomain, from string, mode dmarc.AlignmentMode) bool {
	a := strings.TrimSuffix(strings.ToLower(authDomain), ".")
	if a == "" {
		return false
	}
	if a == from {
		return true
	}
	if mode == dmarc.AlignmentStrict {
		return false
	}
	return orgDomain(a) == orgDomain(from)
}

// domainEval is the DMARC evaluation of one author domain.
type domainEval struct {
	DMARCResult
	pct int // pct=, 100 when absent
}

// rank orders results from best to worst for a message with several
// author domains: the message gets its worst domain's.
func rank(result string) int {
	switch result {
	case ResultPass:
		return 0
	case ResultNone:
		return 1
	case ResultPermError:
		return 2
	case ResultTempError:
		return 3
	case ResultFail:
		return 4
	}
	return 2
}

func strictness(p Policy) int {
	switch p {
	case PolicyReject:
		return 2
	case PolicyQuarantine:
		return 1
	}
	return 0
}

// sample is pct='s draw: a number in [0, 100). A variable for tests.
var sample = func() int { return rand.IntN(100) }

// evalDMARC evaluates every author domain and sets res's DMARC result,
// policy, alignment and disposition.
func (v *Verifier) evalDMARC(ctx context.Context, dns dnsCtx, fields []field, res *Result) {
	res.Policy = PolicyNone
	domains, nFrom := authorDomains(fields)
	switch {
	case nFrom == 0:
		res.DMARC = DMARCResult{Result: ResultPermError, Reason: "no From field"}
		return
	case len(domains) == 0:
		res.DMARC = DMARCResult{Result: ResultPermError, Reason: "no domain in From"}
		return
	case len(domains) > maxAuthorDomains:
		res.DMARC = DMARCResult{Result: ResultPermError,
			Reason: fmt.Sprintf("more than %d author domains", maxAuthorDomains)}
		res.Disposition = Reject
		res.ReplyCode, res.ReplyEnhanced = 550, "5.7.1"
		res.ReplyText = fmt.Sprintf("The From fields name more than %d domains", maxAuthorDomains)
		return
	}
	var worst *domainEval
	for _, d := range domains {
		e := evalDomain(ctx, dns, d, res.SPF, res.DKIM)
		if worst == nil || rank(e.Result) > rank(worst.Result) ||
			e.Result == ResultFail && worst.Result == ResultFail && strictness(e.Published) > strictness(worst.Published) {
			worst = &e
		}
	}
	res.DMARC = worst.DMARCResult
	res.Aligned = worst.Result == ResultPass
	if worst.Result != ResultFail {
		return
	}
	p := worst.Published
	if worst.pct < 100 && sample() >= worst.pct {
		// Sampled out: the next milder policy (RFC 7489 section 6.6.4).
		switch p {
		case PolicyReject:
			p = PolicyQuarantine
		case PolicyQuarantine:
			p = PolicyNone
		}
	}
	res.Policy = p
	switch p {
	case PolicyReject:
		res.Disposition = Reject
		res.ReplyCode, res.ReplyEnhanced = 550, "5.7.1"
		res.ReplyText = fmt.Sprintf("Message refused by the DMARC policy of %s: neither SPF nor DKIM authenticates the From domain %s",
			asciiDomain(worst.PolicyDomain), asciiDomain(worst.From))
	case PolicyQuarantine:
		res.Disposition = Quarantine
	}
}

// evalDomain looks up the DMARC record for one author domain (at the
// domain, then at its organizational domain: RFC 7489 section 6.6.3) and
// checks alignment.
func evalDomain(ctx context.Context, dns dnsCtx, from string, spf SPFResult, dk []DKIMResult) domainEval {
	e := domainEval{DMARCResult: DMARCResult{From: from}, pct: 100}
	opts := &dmarc.LookupOptions{LookupTXT: dns.txtFunc(ctx)}
	recDomain := from
	rec, err := dmarc.LookupWithOptions(from, opts)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := orgDomain(from); org != from {
			recDomain = org
			rec, err = dmarc.LookupWithOptions(org, opts)
		}
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		e.Result = ResultNone
		return e
	case dmarc.IsTempFail(err):
		e.Result, e.Reason = ResultTempError, "DNS error looking up the DMARC record"
		return e
	case err != nil:
		e.Result = ResultPermError
		e.Reason = strings.TrimPrefix(err.Error(), "dmarc: ")
		return e
	}
	e.PolicyDomain = recDomain
	e.Published = Policy(rec.Policy)
	if recDomain != from && rec.SubdomainPolicy != "" {
		e.Published = Policy(rec.SubdomainPolicy)
	}
	if rec.Percent != nil {
		e.pct = *rec.Percent
	}

	e.SPFAligned = spf.Result == ResultPass && aligned(spf.Domain, from, rec.SPFAlignment)
	couldPass := spf.Result == ResultTempError && aligned(spf.Domain, from, rec.SPFAlignment)
	for _, s := range dk {
		if !aligned(s.Domain, from, rec.DKIMAlignment) {
			continue
		}
		switch s.Result {
		case ResultPass:
			e.DKIMAligned = true
		case ResultTempError:
			couldPass = true
		}
	}
	switch {
	case e.SPFAligned || e.DKIMAligned:
		e.Result = ResultPass
	case couldPass:
		// An aligned check could not be made: never fail a message for
		// a DNS outage. Accepted, noted in Authentication-Results.
		e.Result, e.Reason = ResultTempError, "an aligned SPF or DKIM check met a DNS error"
	default:
		e.Result = ResultFail
	}
	return e
}

// asciiDomain is a domain as an SMTP reply can carry it: ASCII; an
// internationalized name loses its non-ASCII letters (the reply is for
// people, the Authentication-Results field keeps the name).
func asciiDomain(d string) string {
	return strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return -1
		}
		return r
	}, token(d))
}
