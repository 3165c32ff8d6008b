package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// Limits bound what one command may cost. A zero field takes its value
// from DefaultLimits, so a server sets only what its profile says.
type Limits struct {
	// MaxLine bounds the octets of one command outside its literals
	// (all its lines together, without line ends). RFC 7162 section 4
	// asks servers to take lines of at least 8192 octets; UID sets of
	// QRESYNC clients are long.
	MaxLine int
	// MaxLiteral bounds the literal octets of one command together: the
	// largest APPEND the server takes.
	MaxLiteral int64
	// MaxNonSync bounds one non-synchronising literal "{n+}": 4096 for
	// LITERAL- (RFC 7888 section 4), MaxLiteral for LITERAL+.
	MaxNonSync int64
	// MaxDepth bounds the nesting of parenthesised lists (and of search
	// keys in ParseSearch).
	MaxDepth int
	// MaxArgs bounds the arguments of one command, at every level.
	MaxArgs int
	// MaxSkip bounds the octets the reader discards to find the end of a
	// bad command; beyond it the error is Fatal.
	MaxSkip int64
}

// DefaultLimits are generous for every real client and small enough for
// ten thousand sessions.
func DefaultLimits() Limits {
	return Limits{
		MaxLine:    64 << 10,
		MaxLiteral: 64 << 20,
		MaxNonSync: 4096,
		MaxDepth:   32,
		MaxArgs:    8192,
		MaxSkip:    1 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxLine <= 0 {
		l.MaxLine = d.MaxLine
	}
	if l.MaxLiteral <= 0 {
		l.MaxLiteral = d.MaxLiteral
	}
	if l.MaxNonSync <= 0 {
		l.MaxNonSync = d.MaxNonSync
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = d.MaxArgs
	}
	if l.MaxSkip <= 0 {
		l.MaxSkip = d.MaxSkip
	}
	return l
}

// Kind is what an Arg is.
type Kind uint8

const (
	// KindAtom is an atom or any other bare token: NIL, numbers, sequence
	// sets, flags (\Seen), FETCH attributes with their section.
	KindAtom Kind = iota
	// KindQuoted is a quoted string, escapes removed.
	KindQuoted
	// KindLiteral is a literal {n}, {n+} or literal8 ~{n}.
	KindLiteral
	// KindList is a parenthesised list.
	KindList
)

// Arg is one argument of a command.
type Arg struct {
	Kind Kind
	// Str is the text of an atom, quoted string or literal.
	Str string
	// Binary marks a literal8 (~{n}), the only kind that may hold NUL.
	Binary bool
	// List holds the elements of a KindList.
	List []Arg
}

// IsNIL reports whether a is the atom NIL (an nstring's absence).
func (a Arg) IsNIL() bool { return a.Kind == KindAtom && strings.EqualFold(a.Str, "NIL") }

// AString returns the text of an astring (atom, quoted or literal).
func (a Arg) AString() (string, bool) {
	if a.Kind == KindList {
		return "", false
	}
	return a.Str, true
}

// IsString reports whether a is a string proper (quoted or literal), as
// date-time and nstring positions need.
func (a Arg) IsString() bool { return a.Kind == KindQuoted || a.Kind == KindLiteral }

// Command is one complete client command.
type Command struct {
	Tag string
	// Name is the command in upper case, without the UID prefix.
	Name string
	// UID is true for "UID COPY", "UID FETCH" and the like.
	UID  bool
	Args []Arg
}

// LiteralInfo describes a literal before its octets are read.
type LiteralInfo struct {
	Tag, Name string
	Size      int64
	// NonSync: the client sends the octets without waiting; the callback
	// must not write "+".
	NonSync bool
	Binary  bool
}

// ContinueFunc is called before every literal's octets are read. For a
// synchronising literal it writes (and flushes) the continuation request;
// an error refuses the literal: ReadCommand then returns an *Error whose
// Err is that error.
type ContinueFunc func(LiteralInfo) error

// Error is a bad command; see the package comment for what each kind leaves
// of the stream.
type Error struct {
	// Tag is the command's tag, "" when the line had no valid tag.
	Tag string
	// Code is the response code to send, e.g. "TOOBIG", or "".
	Code string
	Text string
	// Fatal: the stream could not be resynchronised; close after answering.
	Fatal bool
	// Err is the literal callback's refusal, when that was the cause.
	Err error
}

func (e *Error) Error() string {
	s := e.Text
	if e.Code != "" {
		s = "[" + e.Code + "] " + s
	}
	if e.Fatal {
		s += " (fatal)"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func syntaxErr(format string, a ...any) *Error {
	return &Error{Text: fmt.Sprintf(format, a...)}
}

// Reader reads commands from a client.
type Reader struct {
	br   *bufio.Reader
	lim  Limits
	cont ContinueFunc
	utf8 bool

	// the command being read
	buf     []byte // current line, without its line end
	pos     int
	used    int   // octets of lines so far
	litUsed int64 // literal octets so far
	nargs   int
	tag     string
	name    string
	skipped int64
}

// NewReader reads commands from br within lim. cont may be nil when nothing
// needs to be sent before a literal (tests, a proxy replaying).
func NewReader(br *bufio.Reader, lim Limits, cont ContinueFunc) *Reader {
	return &Reader{br: br, lim: lim.withDefaults(), cont: cont}
}

// SetUTF8 allows UTF-8 in quoted strings, after ENABLE IMAP4rev2 or
// UTF8=ACCEPT (RFC 9051 section 4.3, RFC 6855). IMAP4rev1 allows only
// 7-bit there: 8-bit text must come as a literal.
func (r *Reader) SetUTF8(on bool) { r.utf8 = on }

// errLong marks a line over budget; readLine says whether its end was
// read.
var errLong = errors.New("line too long")

// tail keeps the last octets of a line that was discarded, enough to see a
// literal announcement "~{9223372036854775807+}".
const tailLen = 32

// readLine reads the next line of the current command into r.buf. On
// errLong, r.buf holds the line's last octets read so far and ended tells
// whether the line end was reached.
func (r *Reader) readLine() (ended bool, err error) {
	r.buf = r.buf[:0]
	r.pos = 0
	budget := r.lim.MaxLine - r.used
	for {
		chunk, err := r.br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && (len(r.buf) > 0 || len(chunk) > 0 || r.used > 0) {
				err = io.ErrUnexpectedEOF
			}
			return false, err
		}
		ended := err == nil
		n := len(chunk)
		if ended {
			n--
			if n > 0 && chunk[n-1] == '\r' {
				n--
			} else if n == 0 && len(r.buf) > 0 && r.buf[len(r.buf)-1] == '\r' {
				// CR and LF fell into different reads.
				r.buf = r.buf[:len(r.buf)-1]
			}
		}
		limit := budget
		if !ended {
			// Room for a CR whose LF is in the next read.
			limit++
		}
		if len(r.buf)+n > limit {
			r.buf = append(r.buf, chunk[:n]...)
			if r.used == 0 && r.tag == "" {
				// Keep the tag so the client can match the BAD.
				if sp := bytes.IndexByte(r.buf, ' '); sp > 0 && validTag(r.buf[:sp]) {
					r.tag = string(r.buf[:sp])
				}
			}
			r.keepTail()
			return ended, errLong
		}
		r.buf = append(r.buf, chunk[:n]...)
		if ended {
			r.used += len(r.buf)
			return true, nil
		}
	}
}

func (r *Reader) keepTail() {
	if len(r.buf) > tailLen {
		copy(r.buf, r.buf[len(r.buf)-tailLen:])
		r.buf = r.buf[:tailLen]
	}
}

// ReadLine reads one line outside a command: an AUTHENTICATE response or
// IDLE's DONE. A line over MaxLine is discarded and answered by an *Error
// (Fatal when it does not end within MaxSkip).
func (r *Reader) ReadLine() (string, error) {
	r.reset()
	ended, err := r.readLine()
	if err == errLong {
		// No literals here: the line is all there is to skip.
		e := &Error{Code: "TOOBIG", Text: "Line too long"}
		if !ended {
			if err := r.discardLine(); err != nil {
				return "", r.skipFailed(e, err)
			}
		}
		return "", e
	}
	if err != nil {
		return "", err
	}
	s := string(r.buf)
	r.release()
	return s, nil
}

func (r *Reader) reset() {
	r.used, r.litUsed, r.nargs, r.skipped = 0, 0, 0, 0
	r.tag, r.name = "", ""
}

// release drops a line buffer a long command grew, so an idle session
// keeps little.
func (r *Reader) release() {
	if cap(r.buf) > 4096 {
		r.buf = nil
	}
}

// ReadCommand reads one whole command.
func (r *Reader) ReadCommand() (*Command, error) {
	r.reset()
	defer r.release()
	ended, err := r.readLine()
	if err != nil {
		if err != errLong {
			return nil, err
		}
		return nil, r.resync(&parseErr{Error: tooLong(), skip: longSkip(ended)})
	}
	cmd, perr := r.parseCommand()
	if perr == nil {
		return cmd, nil
	}
	return nil, r.resync(perr)
}

func tooLong() *Error { return &Error{Code: "TOOBIG", Text: "Command line too long"} }

func longSkip(ended bool) int {
	if ended {
		return skipFromLine
	}
	return skipMidLine
}

// Where the rest of a bad command starts.
const (
	skipNone     = iota // nothing more of it will come
	skipFromLine        // r.buf ends a line, which may announce a literal
	skipMidLine         // as skipFromLine, but the line's end is still unread
)

type parseErr struct {
	*Error
	skip int
	// io is a connection error: no answer, close.
	io error
}

func bad(skip int, e *Error) *parseErr { return &parseErr{Error: e, skip: skip} }

// resync discards the rest of a bad command and returns what ReadCommand
// returns for it.
func (r *Reader) resync(pe *parseErr) error {
	if pe.io != nil {
		return pe.io
	}
	e := pe.Error
	e.Tag = r.tag
	switch pe.skip {
	case skipNone:
		return e
	case skipMidLine:
		if err := r.discardLine(); err != nil {
			return r.skipFailed(e, err)
		}
	}
	for {
		n, nonSync, ok := literalAtEnd(r.buf)
		if !ok || !nonSync {
			// A synchronising literal is never sent without "+".
			return e
		}
		if n > r.lim.MaxSkip-r.skipped {
			e.Fatal = true
			return e
		}
		r.skipped += n
		if _, err := r.br.Discard(int(n)); err != nil {
			return err
		}
		r.buf = r.buf[:0]
		if err := r.discardLine(); err != nil {
			return r.skipFailed(e, err)
		}
	}
}

func (r *Reader) skipFailed(e *Error, err error) error {
	if err == errSkipBudget {
		e.Fatal = true
		return e
	}
	return err
}

var errSkipBudget = errors.New("skip budget exhausted")

// discardLine reads to the end of the current line, keeping in r.buf only
// its last octets (after what r.buf held) and counting against MaxSkip.
func (r *Reader) discardLine() error {
	for {
		chunk, err := r.br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		r.skipped += int64(len(chunk))
		if r.skipped > r.lim.MaxSkip {
			return errSkipBudget
		}
		ended := err == nil
		if ended {
			chunk = bytes.TrimSuffix(chunk[:len(chunk)-1], []byte{'\r'})
		}
		if len(chunk) >= tailLen {
			r.buf = append(r.buf[:0], chunk[len(chunk)-tailLen:]...)
		} else {
			r.buf = append(r.buf, chunk...)
			r.keepTail()
		}
		if ended {
			return nil
		}
	}
}

// literalAtEnd parses a literal announcement ending line: "{n}", "{n+}",
// "~{n}".
func literalAtEnd(line []byte) (n int64, nonSync, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	digits := line[open+1 : len(line)-1]
	if len(digits) > 0 && digits[len(digits)-1] == '+' {
		nonSync = true
		digits = digits[:len(digits)-1]
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || n < 0 || len(digits) == 0 || digits[0] == '+' || digits[0] == '-' {
		return 0, false, false
	}
	return n, nonSync, true
}

func (r *Reader) parseCommand() (*Command, *parseErr) {
	line := r.buf
	if len(line) == 0 {
		return nil, bad(skipNone, syntaxErr("Empty command line"))
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		// Without a space there is no tag and command: either a bare
		// word or garbage. Nothing is announced after it unless it ends
		// in a literal, which resync handles.
		return nil, bad(skipFromLine, syntaxErr("Expected a tag and a command"))
	}
	tag := line[:sp]
	if !validTag(tag) {
		return nil, bad(skipFromLine, syntaxErr("Invalid tag"))
	}
	r.tag = string(tag)
	r.pos = sp + 1
	name := r.word()
	if name == "" {
		return nil, bad(skipFromLine, syntaxErr("Expected a command name"))
	}
	cmd := &Command{Tag: r.tag, Name: name}
	if name == "UID" {
		if r.pos >= len(r.buf) || r.buf[r.pos] != ' ' {
			return nil, bad(skipFromLine, syntaxErr("UID needs a command"))
		}
		r.pos++
		cmd.UID = true
		cmd.Name = r.word()
		if cmd.Name == "" {
			return nil, bad(skipFromLine, syntaxErr("UID needs a command"))
		}
	}
	r.name = cmd.Name
	if r.pos == len(r.buf) {
		return cmd, nil
	}
	if r.buf[r.pos] != ' ' {
		return nil, bad(skipFromLine, syntaxErr("Invalid command name"))
	}
	r.pos++
	if r.pos == len(r.buf) {
		return nil, bad(skipFromLine, syntaxErr("Expected an argument after the space"))
	}
	args, perr := r.parseList(0, false)
	if perr != nil {
		return nil, perr
	}
	cmd.Args = args
	return cmd, nil
}

// validTag: ASTRING-CHARs but "+"; "*" and "%" too are refused, since
// a tag "*" would make the answer look untagged.
func validTag(tag []byte) bool {
	for _, c := range tag {
		if !isAtomChar(c) && c != ']' || c == '+' || c == '*' || c == '%' {
			return false
		}
	}
	return len(tag) > 0
}

// word reads a command name: letters, digits and "-" (no IMAP command has
// anything else), upper-cased.
func (r *Reader) word() string {
	start := r.pos
	for r.pos < len(r.buf) {
		c := r.buf[r.pos]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			break
		}
		r.pos++
	}
	return strings.ToUpper(string(r.buf[start:r.pos]))
}

// parseList parses arguments separated by single spaces, up to ")" when
// inList, else to the end of the command.
func (r *Reader) parseList(depth int, inList bool) ([]Arg, *parseErr) {
	var args []Arg
	first := true
	for {
		if r.pos == len(r.buf) {
			if inList {
				return nil, bad(skipFromLine, syntaxErr("Unterminated list: missing )"))
			}
			return args, nil
		}
		if inList && r.buf[r.pos] == ')' {
			r.pos++
			return args, nil
		}
		if !first {
			if r.buf[r.pos] != ' ' {
				return nil, bad(skipFromLine, syntaxErr("Expected a space between arguments"))
			}
			r.pos++
		}
		first = false
		if r.nargs++; r.nargs > r.lim.MaxArgs {
			return nil, bad(skipFromLine, syntaxErr("Too many arguments"))
		}
		a, perr := r.parseArg(depth)
		if perr != nil {
			return nil, perr
		}
		args = append(args, a)
	}
}

func (r *Reader) parseArg(depth int) (Arg, *parseErr) {
	if r.pos == len(r.buf) {
		return Arg{}, bad(skipFromLine, syntaxErr("Expected an argument"))
	}
	switch c := r.buf[r.pos]; c {
	case '(':
		if depth+1 > r.lim.MaxDepth {
			return Arg{}, bad(skipFromLine, syntaxErr("Lists nested too deeply"))
		}
		r.pos++
		l, perr := r.parseList(depth+1, true)
		if perr != nil {
			return Arg{}, perr
		}
		if l == nil {
			l = []Arg{}
		}
		return Arg{Kind: KindList, List: l}, nil
	case '"':
		return r.parseQuoted()
	case '{':
		return r.parseLiteral(false)
	case '~':
		if r.pos+1 < len(r.buf) && r.buf[r.pos+1] == '{' {
			r.pos++
			return r.parseLiteral(true)
		}
	}
	return r.parseAtom()
}

func (r *Reader) parseQuoted() (Arg, *parseErr) {
	r.pos++ // the opening quote
	var sb []byte
	eightBit := false
	for {
		if r.pos == len(r.buf) {
			return Arg{}, bad(skipFromLine, syntaxErr("Unterminated quoted string"))
		}
		c := r.buf[r.pos]
		r.pos++
		switch {
		case c == '"':
			if eightBit && !utf8.Valid(sb) {
				return Arg{}, bad(skipFromLine, syntaxErr("Quoted string is not valid UTF-8"))
			}
			return Arg{Kind: KindQuoted, Str: string(sb)}, nil
		case c == '\\':
			if r.pos == len(r.buf) || r.buf[r.pos] != '\\' && r.buf[r.pos] != '"' {
				return Arg{}, bad(skipFromLine, syntaxErr(`Only \\ and \" may be escaped in a quoted string`))
			}
			sb = append(sb, r.buf[r.pos])
			r.pos++
		case c == 0 || c == '\r' || c == '\n':
			return Arg{}, bad(skipFromLine, syntaxErr("NUL, CR or LF in a quoted string"))
		case c >= 0x80:
			if !r.utf8 {
				return Arg{}, bad(skipFromLine, syntaxErr("8-bit octet in a quoted string: send a literal"))
			}
			eightBit = true
			sb = append(sb, c)
		default:
			sb = append(sb, c)
		}
	}
}

func (r *Reader) parseLiteral(binary bool) (Arg, *parseErr) {
	n, nonSync, ok := literalAtEnd(r.buf[r.pos:])
	if !ok || bytes.IndexByte(r.buf[r.pos+1:], '{') >= 0 {
		return Arg{}, bad(skipFromLine, syntaxErr("Invalid literal: expected {size} at the end of the line"))
	}
	r.pos = len(r.buf)
	// A refused synchronising literal was never sent; a refused
	// non-synchronising one is on its way and must be skipped.
	skip := skipNone
	if nonSync {
		skip = skipFromLine
	}
	if nonSync && n > r.lim.MaxNonSync {
		return Arg{}, bad(skip, &Error{Code: "TOOBIG",
			Text: fmt.Sprintf("Non-synchronizing literal of %d octets; at most %d (use a synchronizing literal)", n, r.lim.MaxNonSync)})
	}
	if n > r.lim.MaxLiteral-r.litUsed {
		return Arg{}, bad(skip, &Error{Code: "TOOBIG",
			Text: fmt.Sprintf("Literal of %d octets is too big (at most %d per command)", n, r.lim.MaxLiteral)})
	}
	if r.cont != nil {
		if err := r.cont(LiteralInfo{Tag: r.tag, Name: r.name, Size: n, NonSync: nonSync, Binary: binary}); err != nil {
			return Arg{}, bad(skip, &Error{Text: err.Error(), Err: err})
		}
	}
	r.litUsed += n
	// Grow with what arrives, not with what was announced: a client
	// that announces 64 MiB and sends nothing costs nothing.
	var lb bytes.Buffer
	lb.Grow(int(min(n, 32<<10)))
	if _, err := io.CopyN(&lb, r.br, n); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Arg{}, &parseErr{io: err}
	}
	data := lb.Bytes()
	if ended, err := r.readLine(); err == errLong {
		return Arg{}, bad(longSkip(ended), tooLong())
	} else if err != nil {
		return Arg{}, &parseErr{io: err}
	}
	if !binary && bytes.IndexByte(data, 0) >= 0 {
		return Arg{}, bad(skipFromLine, syntaxErr("NUL in a literal: use literal8 (~{n})"))
	}
	var s string
	if len(data) > 0 {
		// The buffer is ours alone and never written again.
		s = unsafe.String(&data[0], len(data))
	}
	return Arg{Kind: KindLiteral, Str: s, Binary: binary}, nil
}

// isAtomChar: ATOM-CHAR of RFC 9051 plus the list wildcards "%" and "*",
// which LIST patterns and sequence sets need in the same token positions.
func isAtomChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '"', '\\', ']':
		return false
	}
	return true
}

// parseAtom reads a bare token. After BODY, BODY.PEEK, BINARY,
// BINARY.PEEK or BINARY.SIZE a "[" opens a section that runs to its "]"
// and may hold spaces, lists and quoted strings, as in
// BODY[HEADER.FIELDS (From To)]; that is the only place the grammar nests
// a list in a token. Anywhere else "[" is an ordinary character, so a
// mailbox atom "a[b" stays one.
func (r *Reader) parseAtom() (Arg, *parseErr) {
	start := r.pos
	if r.buf[r.pos] == '\\' {
		// A flag: "\" atom, or "\*".
		r.pos++
	}
	for r.pos < len(r.buf) {
		c := r.buf[r.pos]
		if c == '[' && sectionToken(r.buf[start:r.pos]) {
			if end := sectionEnd(r.buf[r.pos:]); end > 0 {
				r.pos += end
				continue
			}
		}
		// "]" is an ASTRING-CHAR (resp-specials).
		if !isAtomChar(c) && c != ']' {
			break
		}
		r.pos++
	}
	if r.pos == start || r.pos == start+1 && r.buf[start] == '\\' {
		if r.pos < len(r.buf) {
			return Arg{}, bad(skipFromLine, syntaxErr("Unexpected character %q", r.buf[r.pos]))
		}
		return Arg{}, bad(skipFromLine, syntaxErr("Expected an argument"))
	}
	return Arg{Kind: KindAtom, Str: string(r.buf[start:r.pos])}, nil
}

func sectionToken(name []byte) bool {
	// Checked at every "[" of a token: the length test keeps a token of
	// 60 000 "[" linear.
	if len(name) < 4 || len(name) > len("BINARY.SIZE") {
		return false
	}
	switch strings.ToUpper(string(name)) {
	case "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		return true
	}
	return false
}

// sectionEnd returns the length of the "[...]" at the start of b, or 0
// when it does not close on this line or holds what a section cannot.
func sectionEnd(b []byte) int {
	inQuote := false
	for i := 1; i < len(b); i++ {
		c := b[i]
		if c < ' ' || c >= 0x7f || c == '{' {
			return 0
		}
		if inQuote {
			switch c {
			case '\\':
				i++
			case '"':
				inQuote = false
			}
			continue
		}
		switch c {
		case '"':
			inQuote = true
		case '[':
			return 0
		case ']':
			return i + 1
		}
	}
	return 0
}
