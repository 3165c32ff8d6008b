// Package milter is the client side of the Sendmail milter protocol
// (version 6, as Sendmail 8.14+, Postfix and rspamd speak it): smtpd
// hands each received message to the milters of its role, in order, and
// learns whether to accept, reject, tempfail, discard or quarantine it,
// and which header fields to add, insert, change or delete.
//
// # When milters run
//
// smtpd calls Chain.Check once per message, after DATA and before its
// reply to it. Every event is replayed to each milter then: connect
// (client address and name), HELO, MAIL FROM with its ESMTP arguments,
// each accepted RCPT, DATA, the header fields, the body in chunks of at
// most 64 KB with CRLF line endings, and the end of message. A real MTA
// sends each event as it happens and can refuse a single recipient; here
// a refusal at any step, a recipient's included, refuses the whole
// message (after DATA, SMTP has no per-recipient answer).
//
// # Answers
//
// A milter's accept (SMFIR_ACCEPT) ends that milter's part; the next
// milters still run. Reject, tempfail and SMFIR_REPLYCODE end the chain
// with that reply ("550 5.7.1 text": the code must be 4xx or 5xx, a
// missing or mismatched enhanced code becomes x.7.1, a missing text a
// default), and header changes collected so far are dropped. Discard
// ends the chain: smtpd answers 250 and drops the message. Quarantine
// (SMFIR_QUARANTINE) lets the message through, to be filed in the
// recipients' Junk folder; the next milters still run. SMFIR_CONN_FAIL
// is a tempfail.
//
// Header changes are returned, never applied to the message by Check:
// Rewrite applies them while copying the message. They apply in order,
// milter after milter, each index counted on the header as the previous
// changes left it (Sendmail's behaviour); every milter is shown the
// message as received.
//
// correo offers milters header changes and quarantine only. It never
// lets a filter rewrite a body (SMFIR_REPLBODY) or the envelope
// (SMFIR_ADDRCPT, SMFIR_DELRCPT, SMFIR_CHGFROM): a body rewritten after
// the fact breaks DKIM signatures and hides what the sender sent, and
// recipients are decided by smtpd's own checks. A milter that sends them
// anyway is not failed for it: the message passes unchanged in those
// respects and a warning is logged.
//
// # Failures
//
// A milter that cannot be reached, does not answer within its Timeout
// (per exchange: one command and its reply, or the whole end of
// message; SMFIR_PROGRESS does not extend it), answers garbage, or
// closes the connection early has failed, and its Config.OnFailure
// applies: FailTempfail (the default) ends the chain with 451 4.7.1, so
// the client retries and nothing is lost; FailAccept passes the message
// on to the next milter unfiltered by this one, with a warning. Every
// failure is logged at warn level with the trace id and the milter's
// name; each milter's answer for each message at debug level.
package milter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"correo/src/logging"
)

// Policy is what a milter's failure does to the message.
type Policy int

const (
	// FailTempfail answers 451 4.7.1: the client tries again later.
	FailTempfail Policy = iota
	// FailAccept lets the message through without this milter's check.
	FailAccept
)

func (p Policy) String() string {
	if p == FailAccept {
		return "accept"
	}
	return "tempfail"
}

// ParsePolicy reads a policy as a profile writes it: "tempfail" or
// "accept".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "tempfail":
		return FailTempfail, nil
	case "accept":
		return FailAccept, nil
	}
	return 0, fmt.Errorf("milter failure policy %q: want tempfail or accept", s)
}

// Config is one milter of a role.
type Config struct {
	// Name identifies the milter in logs and verdicts.
	Name string
	// Addr is "tcp:HOST:PORT" (also Postfix's "inet:HOST:PORT" and
	// Sendmail's "inet:PORT@HOST") or "unix:/PATH" ("local:/PATH").
	Addr string
	// Timeout bounds each exchange with the milter (default 30 s).
	Timeout time.Duration
	// ConnectTimeout bounds connecting (default 10 s).
	ConnectTimeout time.Duration
	// OnFailure applies when the milter is down, slow or broken.
	OnFailure Policy
}

const (
	defaultTimeout        = 30 * time.Second
	defaultConnectTimeout = 10 * time.Second
)

// Action is what smtpd does with a message.
type Action int

const (
	// Accept: queue the message (with the header changes).
	Accept Action = iota
	// Reject: answer Code (5xx), Enhanced, Text; the message is not queued.
	Reject
	// Tempfail: answer Code (4xx), Enhanced, Text; the client retries.
	Tempfail
	// Discard: answer 250 and drop the message.
	Discard
	// Quarantine: queue the message (with the header changes) to be
	// filed in the recipients' Junk folder.
	Quarantine
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case Tempfail:
		return "tempfail"
	case Discard:
		return "discard"
	case Quarantine:
		return "quarantine"
	}
	return "unknown"
}

// Verdict is the chain's decision on one message.
type Verdict struct {
	Action Action
	// Code, Enhanced ("5.7.1") and Text are the reply for Reject and
	// Tempfail. Text may hold several lines, separated by "\n".
	Code     int
	Enhanced string
	Text     string
	// By names the milter that decided a Reject, Tempfail, Discard or
	// Quarantine.
	By string
	// Reason is the milter's reason for Quarantine.
	Reason string
	// Changes are the header changes for Accept and Quarantine, in the
	// order to apply them (Rewrite).
	Changes []HeaderChange
	// Unfiltered names the milters that failed and were passed over
	// (OnFailure FailAccept).
	Unfiltered []string
}

const (
	defaultRejectText   = "message rejected by content filter"
	defaultTempfailText = "message refused for now by content filter, try again later"
	failureText         = "content filter unavailable, try again later"
)

// Envelope is what smtpd knows of a message besides its content.
type Envelope struct {
	// Client is the SMTP client's address and port (zero: unknown).
	Client netip.AddrPort
	// ClientName is its verified reverse DNS name; empty sends "unknown".
	ClientName string
	Helo       string
	// From is the reverse path without brackets ("" is the null sender);
	// FromArgs its ESMTP parameters ("SIZE=1234", "BODY=8BITMIME").
	From     string
	FromArgs []string
	// Rcpts are the accepted recipients.
	Rcpts []string
	// AuthUser is the SMTP AUTH identity, if any ({auth_authen}).
	AuthUser string
	// TLSVersion and TLSCipher describe the session's TLS, if any.
	TLSVersion, TLSCipher string
	// QueueID is the message's queue id (macro i); empty uses the trace id.
	QueueID string
	// Hostname is this MTA's host name (macros j and {daemon_name}).
	Hostname string
}

// milter is one configured milter.
type milter struct {
	cfg              Config
	network, address string
	dial             func(context.Context) (net.Conn, error) // tests: instead of the address
}

// Chain is a role's milters, in order. It is safe for concurrent use.
type Chain struct {
	milters []*milter
	log     *slog.Logger
}

// NewChain checks the configurations and returns their chain. An empty
// chain accepts everything.
func NewChain(cfgs []Config, log *slog.Logger) (*Chain, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Chain{log: log}
	seen := map[string]bool{}
	for _, cfg := range cfgs {
		if cfg.Name == "" {
			return nil, errors.New("milter: a milter without a name")
		}
		if seen[cfg.Name] {
			return nil, fmt.Errorf("milter %s: named twice", cfg.Name)
		}
		seen[cfg.Name] = true
		network, address, err := ParseAddr(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("milter %s: %v", cfg.Name, err)
		}
		if cfg.Timeout < 0 || cfg.ConnectTimeout < 0 {
			return nil, fmt.Errorf("milter %s: negative timeout", cfg.Name)
		}
		if cfg.Timeout == 0 {
			cfg.Timeout = defaultTimeout
		}
		if cfg.ConnectTimeout == 0 {
			cfg.ConnectTimeout = defaultConnectTimeout
		}
		if cfg.OnFailure != FailTempfail && cfg.OnFailure != FailAccept {
			return nil, fmt.Errorf("milter %s: unknown failure policy %d", cfg.Name, cfg.OnFailure)
		}
		c.milters = append(c.milters, &milter{cfg: cfg, network: network, address: address})
	}
	return c, nil
}

// ParseAddr splits a milter address into a network and an address for
// net.Dial: "tcp:HOST:PORT", "inet:HOST:PORT", "inet:PORT@HOST",
// "unix:/PATH", "local:/PATH".
func ParseAddr(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok || rest == "":
	case kind == "unix" || kind == "local":
		if strings.HasPrefix(rest, "/") {
			return "unix", rest, nil
		}
	case kind == "tcp" || kind == "inet" || kind == "inet6":
		if port, host, ok := strings.Cut(rest, "@"); ok && kind != "tcp" {
			rest = net.JoinHostPort(strings.Trim(host, "[]"), port)
		}
		host, port, err := net.SplitHostPort(rest)
		if err == nil && host != "" && port != "" && strings.Trim(port, "0123456789") == "" {
			return "tcp", rest, nil
		}
	}
	return "", "", fmt.Errorf("milter address %q: want tcp:HOST:PORT or unix:/PATH", s)
}

// Check runs one message through every milter of the chain, in order,
// and returns the verdict. msg is the whole message as received (header
// and body); it is read, once per milter, and never modified. The error
// is only ever ctx's or one reading msg: the milters' own failures are
// folded into the verdict by their OnFailure.
func (c *Chain) Check(ctx context.Context, trace string, env Envelope, msg io.ReadSeeker) (Verdict, error) {
	v := Verdict{Action: Accept}
	if len(c.milters) == 0 {
		return v, nil
	}
	if _, err := msg.Seek(0, io.SeekStart); err != nil {
		return Verdict{}, &msgError{err}
	}
	h, err := readHeader(bufio.NewReaderSize(msg, 64<<10))
	if err != nil {
		return Verdict{}, &msgError{err}
	}
	for _, m := range c.milters {
		start := time.Now()
		out, err := m.run(ctx, trace, &env, h, msg)
		elapsed := time.Since(start)
		if cerr := ctxErr(ctx); cerr != nil {
			return Verdict{}, cerr
		}
		var me *msgError
		if errors.As(err, &me) {
			return Verdict{}, me
		}
		if err != nil {
			c.log.Warn("milter failed", logging.TraceKey, trace, "milter", m.cfg.Name, "addr", m.cfg.Addr,
				"err", err.Error(), "policy", m.cfg.OnFailure.String(), "elapsed", elapsed.Round(time.Millisecond))
			if m.cfg.OnFailure == FailAccept {
				v.Unfiltered = append(v.Unfiltered, m.cfg.Name)
				continue
			}
			return Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: m.cfg.Name}, nil
		}
		if len(out.ignored) > 0 {
			c.log.Warn("milter modifications ignored", logging.TraceKey, trace, "milter", m.cfg.Name,
				"ignored", strings.Join(out.ignored, ", "))
		}
		d := decision(out)
		action := d.Action
		if action == Accept && out.quarantine {
			action = Quarantine
		}
		c.log.Debug("milter checked", logging.TraceKey, trace, "milter", m.cfg.Name, "action", action.String(),
			"stage", out.stage, "code", d.Code, "changes", len(out.changes), "elapsed", elapsed.Round(time.Millisecond))
		switch d.Action {
		case Reject, Tempfail, Discard:
			d.By = m.cfg.Name
			d.Unfiltered = v.Unfiltered
			return d, nil
		}
		v.Changes = append(v.Changes, out.changes...)
		if out.quarantine && v.Action != Quarantine {
			v.Action, v.By, v.Reason = Quarantine, m.cfg.Name, out.reason
		}
	}
	return v, nil
}

// decision maps one milter's final answer to an action.
func decision(out outcome) Verdict {
	switch out.final {
	case respReject:
		return Verdict{Action: Reject, Code: 550, Enhanced: "5.7.1", Text: defaultRejectText}
	case respTempfail, respConnFail:
		return Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: defaultTempfailText}
	case respReplyCode:
		a := Reject
		if out.reply.code < 500 {
			a = Tempfail
		}
		return Verdict{Action: a, Code: out.reply.code, Enhanced: out.reply.enhanced, Text: out.reply.text}
	case respDiscard:
		return Verdict{Action: Discard}
	}
	return Verdict{Action: Accept}
}
