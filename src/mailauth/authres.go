package mailauth

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// header formats res as an Authentication-Results field (RFC 8601): the
// authserv-id, then one result per line, spf, each dkim signature, dmarc.
// The dmarc result carries a comment with the published policy and what
// was done ("(p=reject dis=none)"), as large receivers write it.
func (v *Verifier) header(res Result) string {
	id := token(v.AuthServID)
	if id == "" {
		id = "localhost"
	}
	var items []string

	spf := &authres.SPFResult{Value: authres.ResultValue(res.SPF.Result), Reason: reason(res.SPF.Reason)}
	if res.SPF.Identity == "helo" {
		spf.Helo = token(res.SPF.Domain)
	} else {
		spf.From = token(res.SPF.Domain)
	}
	items = append(items, formatOne(spf))

	if len(res.DKIM) == 0 {
		items = append(items, formatOne(&authres.DKIMResult{Value: authres.ResultNone}))
	}
	for _, d := range res.DKIM {
		items = append(items, formatOne(&authres.GenericResult{
			Method: "dkim",
			Value:  authres.ResultValue(d.Result),
			Params: map[string]string{
				"reason":   reason(d.Reason),
				"header.d": token(d.Domain),
				"header.s": token(d.Selector),
				"header.a": token(d.Algorithm),
				"header.b": base64Prefix(d.B),
			},
		}))
	}

	dm := formatOne(&authres.DMARCResult{Value: authres.ResultValue(res.DMARC.Result),
		Reason: reason(res.DMARC.Reason), From: token(res.DMARC.From)})
	if res.DMARC.Published != "" {
		dis := "none"
		switch res.Disposition {
		case Quarantine:
			dis = "quarantine"
		case Reject:
			dis = "reject"
		}
		head, tail, _ := strings.Cut(dm, " ")
		dm = strings.TrimSpace(head + " (p=" + string(res.DMARC.Published) + " dis=" + dis + ") " + tail)
	}
	items = append(items, dm)

	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(id)
	for _, it := range items {
		b.WriteString(";\r\n")
		b.WriteString(fold("\t"+it, 77)) // 77: room for the ';' after it
	}
	b.WriteString("\r\n")
	return b.String()
}

// formatOne is go-msgauth's formatting of one result, without the
// authserv-id and separator Format puts before it.
func formatOne(r authres.Result) string {
	s := authres.Format("", []authres.Result{r})
	return strings.TrimSpace(strings.TrimPrefix(s, "; "))
}

// fold breaks a line longer than width at spaces (RFC 5322 section 2.2.3):
// each continuation starts with a tab. A word longer than width stays
// whole.
func fold(line string, width int) string {
	var b strings.Builder
	for len(line) > width {
		i := strings.LastIndexByte(line[:width], ' ')
		if i <= 1 {
			i = strings.IndexByte(line[1:], ' ')
			if i < 0 {
				break
			}
			i++
		}
		b.WriteString(line[:i])
		b.WriteString("\r\n\t")
		line = line[i+1:]
	}
	b.WriteString(line)
	return b.String()
}

// base64Prefix keeps the base64 characters of a header.b value.
func base64Prefix(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '/' {
			return r
		}
		return -1
	}, s)
}
