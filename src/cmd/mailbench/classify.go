package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"correo/src/pwclient"
)

// classify names an error's kind for the summary: refusals by code,
// timeouts, connection failures by cause, and protocol errors. The kinds
// are few and fixed, so the summary stays a short table whatever went
// wrong.
func classify(err error) string {
	var re *ReplyError
	var se *StatusError
	var pe *ProtocolError
	var ne nssError
	var ne2 net.Error
	switch {
	case errors.As(err, &re):
		if re.Code >= 400 && re.Code < 600 {
			return strconv.Itoa(re.Code/100) + "xx:" + strconv.Itoa(re.Code)
		}
		return "unexpected:" + strconv.Itoa(re.Code)
	case errors.As(err, &se):
		// A response code (RFC 2449's [IN-USE], [AUTH]; IMAP's
		// [AUTHENTICATIONFAILED]) says why, and is one of a few.
		if code, ok := responseCode(se.Text); ok {
			return se.Proto + ":" + se.Status + " [" + code + "]"
		}
		return se.Proto + ":" + se.Status
	case errors.As(err, &ne):
		return "nss:" + string(ne)
	case errors.Is(err, pwclient.ErrNotFound):
		return "passwd:not-found"
	case errors.Is(err, pwclient.ErrDenied):
		return "passwd:denied"
	case errors.Is(err, pwclient.ErrLockedOut):
		return "passwd:locked-out"
	case errors.Is(err, pwclient.ErrTempFail):
		return "passwd:tempfail"
	case errors.Is(err, pwclient.ErrNoServer):
		return "timeout"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne2) && ne2.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection:refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection:reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection:closed"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "connection:unreachable"
	case errors.As(err, &pe):
		return "protocol"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "connection"
	}
	return "other"
}

// responseCode is the bracketed code at the start of a refusal's text,
// when it is a short upper-case word (so a server cannot fill the
// summary with arbitrary kinds).
func responseCode(text string) (string, bool) {
	if !strings.HasPrefix(text, "[") {
		return "", false
	}
	code, _, ok := strings.Cut(text[1:], "]")
	if !ok || code == "" || len(code) > 24 {
		return "", false
	}
	for _, c := range code {
		if !(c >= 'A' && c <= 'Z' || c == '-' || c == '/') {
			return "", false
		}
	}
	return code, true
}
