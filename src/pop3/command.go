package pop3

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Command is one parsed client line.
type Command struct {
	// Name is the keyword in upper case.
	Name string
	// Args are the space-separated arguments; for PASS the whole rest of
	// the line is one argument, because passwords may contain spaces
	// (RFC 1939 section 7).
	Args []string
}

// Parse errors.
var (
	ErrEmptyLine  = errors.New("empty command line")
	ErrBadKeyword = errors.New("command keyword must be 3 or 4 letters")
	ErrBadChar    = errors.New("command line contains a control character")
	ErrTooManyArg = errors.New("too many arguments")
)

// maxArgs bounds the arguments a command may have; no POP3 command takes
// more than two (TOP msg n), AUTH PLAIN with its initial response two.
const maxArgs = 2

// ParseCommand parses one command line (with or without its CRLF or bare
// LF). Keywords are case-insensitive; arguments are separated by single
// spaces. Control characters other than the line end are refused: a NUL
// or an escape sequence in a user name would end up in a log line.
func ParseCommand(line []byte) (Command, error) {
	s := string(line)
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return Command{}, ErrBadChar
		}
	}
	if s == "" {
		return Command{}, ErrEmptyLine
	}
	kw, rest, hasRest := strings.Cut(s, " ")
	if len(kw) < 3 || len(kw) > 4 {
		return Command{}, ErrBadKeyword
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return Command{}, ErrBadKeyword
		}
	}
	cmd := Command{Name: strings.ToUpper(kw)}
	if !hasRest {
		return cmd, nil
	}
	if cmd.Name == "PASS" {
		cmd.Args = []string{rest}
		return cmd, nil
	}
	rest = strings.TrimRight(rest, " ")
	if rest == "" {
		return cmd, nil
	}
	cmd.Args = strings.Split(rest, " ")
	if len(cmd.Args) > maxArgs {
		return Command{}, ErrTooManyArg
	}
	return cmd, nil
}

// ParseMsgNumber parses a message number argument: decimal, 1 or more,
// no sign, no leading garbage.
func ParseMsgNumber(s string) (int, error) {
	if s == "" || len(s) > 9 || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("invalid message number %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("invalid message number %q", s)
	}
	return n, nil
}

// maxPlainBytes bounds a decoded SASL PLAIN response: three fields of at
// most a few hundred bytes each.
const maxPlainBytes = 1024

// DecodePlain decodes a SASL PLAIN response (RFC 4616): base64 of
// authzid NUL authcid NUL password. An authorization identity other than
// empty or the user itself is refused: correo has no master users.
func DecodePlain(b64 string) (user, password string, err error) {
	if len(b64) > base64.StdEncoding.EncodedLen(maxPlainBytes) {
		return "", "", errors.New("SASL PLAIN response too long")
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", "", errors.New("SASL PLAIN response is not valid base64")
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 {
		return "", "", errors.New("SASL PLAIN response must be authzid NUL user NUL password")
	}
	if parts[1] == "" {
		return "", "", errors.New("SASL PLAIN response has an empty user")
	}
	if parts[0] != "" && parts[0] != parts[1] {
		return "", "", errors.New("SASL PLAIN authorization identity differs from the user")
	}
	return parts[1], parts[2], nil
}

// EncodePlain is the SASL PLAIN response for user and password.
func EncodePlain(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
}
