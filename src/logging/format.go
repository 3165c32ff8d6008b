package logging

import (
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Size limits for one encoded message.
const (
	// RFC 5426 §3.2: receivers must accept 480 bytes, should accept 2048;
	// 2048 also stays under a 1500-byte-MTU path's fragment count that
	// matters in practice.
	maxUDP = 2048
	// rsyslog's default maxMessageSize is 8k; cutting here, on a rune
	// boundary, beats having the receiver cut mid-character.
	maxStream = 8192
	// A trace id is ours (16 chars) but may come from a peer's header; bound
	// it so the RFC 5424 header stays far below maxUDP.
	maxTrace = 64
)

// severity maps slog levels onto syslog severities. Levels between the named
// ones round down to the less severe one, as slog's own naming does.
func severity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	default:
		return 7 // debug
	}
}

// needsQuoting follows slog.TextHandler's rule, so our lines parse with the
// same logfmt readers as the standard library's.
func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return true
		}
		if r == ' ' || r == '=' || r == '"' || !unicode.IsPrint(r) {
			return true
		}
		i += n
	}
	return false
}

// appendLogfmt appends s, quoted when needed. strconv.Quote escapes newlines,
// control characters, line/paragraph separators and invalid UTF-8, which is
// what keeps every event on one line and valid UTF-8.
func appendLogfmt(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func appendPair(b []byte, k, v string) []byte {
	if len(b) > 0 {
		b = append(b, ' ')
	}
	b = appendLogfmt(b, k)
	b = append(b, '=')
	return appendLogfmt(b, v)
}

// logfmtBody renders `msg="…" [trace=…] k=v …`. The message is always quoted
// so the body starts the same way whatever the text.
func logfmtBody(b []byte, ev *event, withTrace bool, skip string) []byte {
	b = append(b, "msg="...)
	b = strconv.AppendQuote(b, ev.msg)
	if withTrace && ev.trace != "" {
		b = appendPair(b, TraceKey, ev.trace)
	}
	for _, a := range ev.attrs {
		if skip != "" && a.key == skip {
			continue
		}
		b = appendPair(b, a.key, a.val)
	}
	return b
}

// formatText is the stderr line: slog.TextHandler's shape plus the trace.
func formatText(ev *event) []byte {
	b := make([]byte, 0, 128)
	b = append(b, "time="...)
	b = ev.time.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, " level="...)
	b = append(b, ev.level.String()...)
	b = append(b, ' ')
	b = logfmtBody(b, ev, true, "")
	return append(b, '\n')
}

// header holds the per-logger, already sanitised RFC 5424 header fields.
type header struct {
	facility int
	hostname string
	appName  string
	procID   string
}

func newHeader(facility int, hostname, appName string, pid int) header {
	return header{
		facility: facility,
		hostname: headerField(hostname, 255),
		appName:  headerField(appName, 48),
		procID:   headerField(strconv.Itoa(pid), 128),
	}
}

// headerField makes s a valid RFC 5424 header token: 1..max PRINTUSASCII
// characters, "-" (NILVALUE) when empty. Anything else would shift the
// receiver's field split and garble every later field.
func headerField(s string, max int) string {
	if s == "" {
		return "-"
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < max; i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

// cleanTrace drops what cannot appear on one line and bounds the length.
func cleanTrace(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	return truncateUTF8(s, maxTrace)
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// appendSDValue escapes per RFC 5424 §6.3.3: '"', '\' and ']' get a backslash.
func appendSDValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

// format5424 renders one RFC 5424 message of at most max bytes (0: no
// limit). Only MSG is cut, on a rune boundary, so the header and structured
// data always survive and the result stays valid UTF-8.
func format5424(h *header, ev *event, max int) []byte {
	b := make([]byte, 0, 256)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(h.facility*8+severity(ev.level)), 10)
	b = append(b, ">1 "...)
	b = ev.time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	b = append(b, ' ')
	b = append(b, h.hostname...)
	b = append(b, ' ')
	b = append(b, h.appName...)
	b = append(b, ' ')
	b = append(b, h.procID...)
	b = append(b, ' ')
	msgid := ""
	for _, a := range ev.attrs {
		if a.key == "msgid" {
			msgid = a.val
			break
		}
	}
	skip := ""
	if msgid != "" {
		skip = "msgid"
	}
	b = append(b, headerField(msgid, 32)...)
	b = append(b, ' ')
	if t := cleanTrace(ev.trace); t != "" {
		b = append(b, "[correo@32473 trace=\""...)
		b = appendSDValue(b, t)
		b = append(b, "\"]"...)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = logfmtBody(b, ev, false, skip)
	return cut(b, max)
}

// format3164 renders the traditional local form for /dev/log (see doc.go).
func format3164(h *header, ev *event, max int) []byte {
	b := make([]byte, 0, 256)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(h.facility*8+severity(ev.level)), 10)
	b = append(b, '>')
	b = ev.time.Local().AppendFormat(b, time.Stamp)
	b = append(b, ' ')
	b = append(b, h.appName...)
	b = append(b, '[')
	b = append(b, h.procID...)
	b = append(b, "]: "...)
	ev2 := *ev
	ev2.trace = cleanTrace(ev.trace)
	b = logfmtBody(b, &ev2, true, "")
	return cut(b, max)
}

func cut(b []byte, max int) []byte {
	if max <= 0 || len(b) <= max {
		return b
	}
	n := max
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return b[:n]
}

// frameOctet wraps msg in RFC 6587 §3.4.1 octet-counting framing.
func frameOctet(msg []byte) []byte {
	b := make([]byte, 0, len(msg)+6)
	b = strconv.AppendInt(b, int64(len(msg)), 10)
	b = append(b, ' ')
	return append(b, msg...)
}

// journalField turns an attribute key into a journal field name: journald
// accepts only [A-Z0-9_], at most 64 bytes, not starting with '_' (those are
// trusted fields set by journald itself), hence the CORREO_ prefix.
func journalField(key string) string {
	b := []byte("CORREO_")
	for i := 0; i < len(key) && len(b) < 64; i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}
