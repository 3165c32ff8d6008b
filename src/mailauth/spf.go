package mailauth

import (
	"context"
	"errors"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"
)

// checkSPF checks the MAIL FROM identity, or the HELO identity for the
// null sender (RFC 7208 section 2.4), with the RFC's limits: 10 terms that
// query DNS and 2 void lookups, past which the result is permerror.
func checkSPF(ctx context.Context, dns dnsCtx, in Input) SPFResult {
	helo := strings.TrimSuffix(strings.TrimSpace(in.Helo), ".")
	sender := in.MailFrom
	res := SPFResult{Identity: "mailfrom"}
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		res.Domain = sender[i+1:]
	} else {
		// The null sender, or a bare local part: the HELO identity,
		// with "postmaster" for the macros' local part (section 4.3).
		res.Identity = "helo"
		res.Domain = helo
		sender = "postmaster@" + helo
	}
	res.Domain = strings.TrimSuffix(strings.ToLower(res.Domain), ".")
	if res.Domain == "" || strings.HasPrefix(res.Domain, "[") {
		// No domain to ask about (an address literal HELO): "none",
		// as for a domain without a record.
		res.Result = ResultNone
		res.Reason = "no domain to check"
		return res
	}
	var ip net.IP
	if in.ClientIP.IsValid() {
		ip = net.IP(in.ClientIP.Unmap().AsSlice())
	}
	r, err := spf.CheckHostWithSender(ip, helo, sender,
		spf.WithResolver(dns), spf.WithContext(ctx))
	res.Result = string(r)
	switch r {
	case spf.TempError, spf.PermError:
		if err != nil {
			res.Reason = spfReason(err)
		}
	}
	return res
}

// spfReason words the library's error for the A-R reason.
func spfReason(err error) string {
	switch {
	case errors.Is(err, spf.ErrLookupLimitReached):
		return "more than 10 DNS lookups"
	case errors.Is(err, spf.ErrVoidLookupLimitReached):
		return "more than 2 void DNS lookups"
	case errors.Is(err, spf.ErrMultipleRecords):
		return "several SPF records"
	case errors.Is(err, spf.ErrInvalidIPAddress):
		return "no valid client address"
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsTimeout {
			return "DNS timeout"
		}
		return "DNS error: " + de.Err
	}
	return err.Error()
}
