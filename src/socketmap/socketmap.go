// Package socketmap serves Postfix's socketmap table protocol
// (socketmap_table(5)): a client sends one netstring "name key", the server
// answers one netstring "OK value", "NOTFOUND ", "TEMP reason",
// "TIMEOUT reason" or "PERM reason", and the connection stays open for the
// next request. It knows nothing of users: a Handler answers lookups.
//
// What Postfix does with each answer decides whether mail is deferred or
// bounced, so the statuses are chosen with care: NOTFOUND is authoritative
// (an unknown recipient gets 550), TEMP and TIMEOUT make Postfix defer, and
// PERM says the table is misconfigured (Postfix defers and logs it as an
// error). A request this server cannot parse gets PERM and the connection
// is closed, since the stream can no longer be trusted to be in step.
package socketmap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"correo/src/logging"
)

// Status is the first word of a reply.
type Status string

const (
	OK       Status = "OK"
	NotFound Status = "NOTFOUND"
	Temp     Status = "TEMP"
	Timeout  Status = "TIMEOUT"
	Perm     Status = "PERM"
)

// Reply is one answer. Value is the data of an OK reply or the reason of a
// failure; it must hold no NUL (Postfix reads it as a C string).
type Reply struct {
	Status Status
	Value  string
}

func (r Reply) String() string { return string(r.Status) + " " + r.Value }

// Limits. Postfix's socketmap client refuses replies over 100 000 bytes;
// requests are a map name and a mail address, so a few hundred bytes. The
// request limit leaves room for the longest address SMTP allows (RFC 5321:
// 256 bytes of path) with its map name, and little else, so a garbage
// length prefix cannot make the server buffer much.
const (
	MaxRequest = 1024
	MaxReply   = 100000
	// maxLenDigits bounds the length prefix: digits past it are refused
	// before they are added up (no overflow, no waiting for more).
	maxLenDigits = 5
)

// ErrTooLong is a netstring longer than the reader's limit.
var ErrTooLong = errors.New("socketmap: netstring longer than the limit")

// ReadNetstring reads one netstring ("len:data,") of at most max bytes of
// data. A malformed one (a non-digit in the length, a leading zero, a
// missing ':' or ',') is an error naming what was wrong; io.EOF means the
// peer closed cleanly between netstrings.
func ReadNetstring(r *bufio.Reader, max int) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' {
			if digits == 0 {
				return nil, errors.New("socketmap: netstring has no length before ':'")
			}
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("socketmap: netstring length has byte 0x%02x, want a decimal digit or ':'", c)
		}
		if digits == 1 && n == 0 {
			return nil, errors.New("socketmap: netstring length has a leading zero")
		}
		digits++
		if digits > maxLenDigits {
			return nil, fmt.Errorf("%w (%d bytes): length prefix has more than %d digits", ErrTooLong, max, maxLenDigits)
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes announced, at most %d accepted", ErrTooLong, n, max)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("socketmap: netstring of %d bytes cut short: %w", n, err)
	}
	if buf[n] != ',' {
		return nil, fmt.Errorf("socketmap: netstring of %d bytes ends with 0x%02x, want ','", n, buf[n])
	}
	return buf[:n], nil
}

// AppendNetstring appends data as a netstring.
func AppendNetstring(dst, data []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	dst = append(dst, ':')
	dst = append(dst, data...)
	return append(dst, ',')
}

// ParseRequest splits a request into its map name and key. The name is
// everything before the first space; the key the rest, and may itself hold
// spaces (Postfix does not quote it). An empty name or key, or a NUL or
// line break anywhere, is refused: Postfix never sends them, and a key
// holding one could mean something else to whatever the handler asks.
func ParseRequest(b []byte) (name, key string, err error) {
	s := string(b)
	sp := strings.IndexByte(s, ' ')
	if sp <= 0 {
		return "", "", fmt.Errorf("socketmap: request %q is not \"name key\"", trim(s))
	}
	name, key = s[:sp], s[sp+1:]
	if key == "" {
		return "", "", fmt.Errorf("socketmap: request for map %q has an empty key", trim(name))
	}
	if i := strings.IndexAny(s, "\x00\r\n"); i >= 0 {
		return "", "", fmt.Errorf("socketmap: request %q holds byte 0x%02x at offset %d", trim(s), s[i], i)
	}
	return name, key, nil
}

// trim shortens what goes into an error or log line.
func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Handler answers one lookup. ctx ends at the server's lookup timeout or
// when the server closes.
type Handler interface {
	Lookup(ctx context.Context, name, key string) Reply
}

// HandlerFunc is a function as a Handler.
type HandlerFunc func(ctx context.Context, name, key string) Reply

func (f HandlerFunc) Lookup(ctx context.Context, name, key string) Reply { return f(ctx, name, key) }

// Defaults for Server fields left zero.
const (
	// DefaultIdleTimeout outlasts Postfix's own idle limit for a kept
	// socketmap connection (10 s), so Postfix closes first, as it expects.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultLookupTimeout stays above passwd's 2 s failover, so a lookup
	// during a switch to the secondary is still answered, and far below
	// Postfix's 100 s socketmap timeout, so Postfix hears TIMEOUT from
	// us rather than giving up on its own.
	DefaultLookupTimeout = 5 * time.Second
	DefaultMaxConns      = 256
)

// Server answers socketmap requests on the listeners given to Serve.
type Server struct {
	Handler Handler
	Log     *slog.Logger // nil: discard
	// IdleTimeout bounds the wait for a request (and for the rest of one
	// once it has begun); LookupTimeout one Handler call. MaxConns bounds
	// the connections served at once; more are closed at once (Postfix
	// retries the lookup).
	IdleTimeout   time.Duration
	LookupTimeout time.Duration
	MaxConns      int

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}
	badLog *logging.Throttle
	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.IdleTimeout <= 0 {
			s.IdleTimeout = DefaultIdleTimeout
		}
		if s.LookupTimeout <= 0 {
			s.LookupTimeout = DefaultLookupTimeout
		}
		if s.MaxConns <= 0 {
			s.MaxConns = DefaultMaxConns
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.slots = make(chan struct{}, s.MaxConns)
		s.badLog = &logging.Throttle{Every: 10 * time.Second}
		s.lns = map[net.Listener]struct{}{}
		s.conns = map[net.Conn]struct{}{}
	})
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("socketmap: server closed")

// Serve accepts connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("socketmap: accept on %s: %w", ln.Addr(), err)
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.bad("too many socketmap connections; closing a new one", "max", s.MaxConns)
			c.Close()
			continue
		}
		if !s.track(c) {
			<-s.slots
			c.Close()
			return ErrServerClosed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			defer s.untrack(c)
			s.serveConn(c)
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) bad(msg string, args ...any) {
	if ok, suppressed := s.badLog.Allow(msg, time.Now()); ok {
		s.Log.Warn(msg, append(args, "suppressed", suppressed)...)
	}
}

// serveConn answers requests one after the other: Postfix waits for each
// reply before it sends the next request.
func (s *Server) serveConn(c net.Conn) {
	r := bufio.NewReaderSize(c, 512)
	var out []byte
	for {
		c.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		req, err := ReadNetstring(r, MaxRequest)
		if err != nil {
			if err == io.EOF || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return
			}
			s.bad("bad socketmap request; answering PERM and closing", "err", err)
			s.write(c, out[:0], Reply{Perm, err.Error()})
			return
		}
		name, key, err := ParseRequest(req)
		var rep Reply
		if err != nil {
			s.bad("bad socketmap request", "err", err)
			rep = Reply{Perm, err.Error()}
		} else {
			ctx, cancel := context.WithTimeout(s.ctx, s.LookupTimeout)
			rep = s.Handler.Lookup(ctx, name, key)
			cancel()
		}
		out = s.write(c, out[:0], rep)
		if out == nil {
			return
		}
	}
}

// write sends rep, made safe for Postfix: a status it knows, no NUL, no
// longer than it accepts. It returns the buffer for reuse, nil on a
// failed write.
func (s *Server) write(c net.Conn, buf []byte, rep Reply) []byte {
	switch rep.Status {
	case OK, NotFound, Temp, Timeout, Perm:
	default:
		rep = Reply{Temp, fmt.Sprintf("internal error: handler answered status %q", rep.Status)}
	}
	if rep.Status == NotFound {
		rep.Value = ""
	}
	v := strings.ReplaceAll(rep.Value, "\x00", "")
	msg := string(rep.Status) + " " + v
	if len(msg) > MaxReply {
		if rep.Status == OK {
			msg = string(Temp) + " answer longer than Postfix's socketmap limit"
		} else {
			msg = msg[:MaxReply]
		}
	}
	buf = AppendNetstring(buf, []byte(msg))
	c.SetWriteDeadline(time.Now().Add(s.IdleTimeout))
	if _, err := c.Write(buf); err != nil {
		return nil
	}
	return buf
}

// Close stops the listeners and the connections; lookups in progress are
// cancelled. Answers are one directory lookup each: nothing worth
// waiting for.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}
