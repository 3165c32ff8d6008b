package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// textSink writes synchronously: stderr is local, and under systemd it is
// journald's stream socket, which is as close to the machine as it gets.
type textSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *textSink) emit(ev *event) {
	line := formatText(ev)
	s.mu.Lock()
	s.w.Write(line)
	s.mu.Unlock()
}

type journalSender func(msg string, pri journal.Priority, vars map[string]string) error

// journalSink sends synchronously too: journald's socket is local and
// datagram based; a failed send is counted, never returned.
type journalSink struct {
	send     journalSender
	ident    string
	facility int
	dropped  atomic.Uint64
}

func (s *journalSink) emit(ev *event) {
	vars := make(map[string]string, len(ev.attrs)+3)
	for _, a := range ev.attrs {
		vars[journalField(a.key)] = a.val
	}
	vars["SYSLOG_IDENTIFIER"] = s.ident
	vars["SYSLOG_FACILITY"] = fmt.Sprint(s.facility)
	if t := cleanTrace(ev.trace); t != "" {
		vars["TRACE"] = t
	}
	if err := s.send(ev.msg, journal.Priority(severity(ev.level)), vars); err != nil {
		s.dropped.Add(1)
	}
}

// Timing of the network writer. Variables, not constants, so tests can
// shorten them.
var (
	dialTimeout   = time.Second
	writeTimeout  = time.Second
	flushWait     = time.Second
	backoffMin    = 100 * time.Millisecond
	backoffMax    = 5 * time.Second
	dropReportGap = 30 * time.Second
)

// netSink is the queue-and-drop writer described in doc.go. emit runs on the
// caller's goroutine and only formats and enqueues; run owns the connection.
type netSink struct {
	network, address string
	format           func(ev *event) []byte

	q       chan []byte
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	once    sync.Once
	dropped atomic.Uint64

	// Outage reporting: episode is set by the first drop and cleared by the
	// next successful write; lastReport rate-limits the stderr notice.
	episode    atomic.Bool
	lastReport atomic.Int64
	notices    chan string
	stderr     io.Writer

	ctx    context.Context
	cancel context.CancelFunc

	// Owned by run.
	conn    net.Conn
	backoff time.Duration
	retryAt time.Time
	limit   time.Time // after Close: nothing may block past this

	connMu sync.Mutex // guards cur, which Close uses to cut a stuck write
	cur    net.Conn
}

func newNetSink(network, address string, qlen int, format func(*event) []byte, stderr io.Writer) *netSink {
	ctx, cancel := context.WithCancel(context.Background())
	s := &netSink{
		network: network,
		address: address,
		format:  format,
		q:       make(chan []byte, qlen),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		notices: make(chan string, 1),
		stderr:  stderr,
		ctx:     ctx,
		cancel:  cancel,
	}
	go s.run()
	go s.report()
	return s
}

func (s *netSink) emit(ev *event) {
	if s.closed.Load() {
		s.drop(1, "logger closed")
		return
	}
	msg := s.format(ev)
	select {
	case s.q <- msg:
	default:
		s.drop(1, "queue full (loghost too slow)")
	}
}

func (s *netSink) drop(n uint64, why string) {
	s.dropped.Add(n)
	if s.episode.Swap(true) {
		return
	}
	now := time.Now().UnixNano()
	last := s.lastReport.Load()
	if last != 0 && time.Duration(now-last) < dropReportGap {
		return
	}
	if !s.lastReport.CompareAndSwap(last, now) {
		return
	}
	// Never block a logging call on stderr: hand the line to the reporter;
	// if one is already pending, this one is redundant anyway.
	select {
	case s.notices <- fmt.Sprintf("correo/logging: dropping log records for syslog %s %s: %s (dropped so far: %d; further drops are counted, not reported)\n",
		s.network, s.address, why, s.dropped.Load()):
	default:
	}
}

func (s *netSink) report() {
	for {
		select {
		case line := <-s.notices:
			io.WriteString(s.stderr, line)
		case <-s.done:
			return
		}
	}
}

func (s *netSink) run() {
	defer close(s.done)
	for {
		select {
		case m := <-s.q:
			s.deliver(m)
		case <-s.stop:
			s.flush()
			return
		}
	}
}

// flush sends what is queued until the Close deadline, then counts the rest.
func (s *netSink) flush() {
	s.limit = time.Now().Add(flushWait)
	for time.Now().Before(s.limit) {
		select {
		case m := <-s.q:
			s.deliver(m)
			continue
		default:
		}
		break
	}
	s.setConn(nil)
}

// drain empties the queue after the writer stopped and counts what it held.
func (s *netSink) drain() uint64 {
	var n uint64
	for {
		select {
		case <-s.q:
			n++
		default:
			s.dropped.Add(n)
			return n
		}
	}
}

func (s *netSink) deadline(d time.Duration) time.Time {
	t := time.Now().Add(d)
	if !s.limit.IsZero() && s.limit.Before(t) {
		return s.limit
	}
	return t
}

func (s *netSink) deliver(m []byte) {
	if s.conn == nil {
		// While the loghost is away, drop at once: waiting would only move
		// the backlog into the queue and then into the callers.
		if time.Now().Before(s.retryAt) {
			s.drop(1, "loghost unreachable")
			return
		}
		ctx, cancel := context.WithDeadline(s.ctx, s.deadline(dialTimeout))
		var d net.Dialer
		c, err := d.DialContext(ctx, s.network, s.address)
		cancel()
		if err != nil {
			s.fail(fmt.Sprintf("connect: %v", err))
			return
		}
		s.setConn(c)
	}
	s.conn.SetWriteDeadline(s.deadline(writeTimeout))
	_, err := s.conn.Write(m)
	if err != nil && s.staleRefusal(err) {
		// A datagram socket reports the ICMP refusal of an earlier
		// datagram on this write, which was therefore never sent: the
		// loghost was down then (hosts boot in any order) and may be up
		// now. One fresh socket and one more try, so a loghost's restart
		// costs no record when it is already back.
		s.setConn(nil)
		ctx, cancel := context.WithDeadline(s.ctx, s.deadline(dialTimeout))
		var d net.Dialer
		c, derr := d.DialContext(ctx, s.network, s.address)
		cancel()
		if derr != nil {
			s.fail(fmt.Sprintf("connect: %v", derr))
			return
		}
		s.setConn(c)
		c.SetWriteDeadline(s.deadline(writeTimeout))
		_, err = c.Write(m)
	}
	if err != nil {
		// A partial write leaves a TCP stream mid-frame, so the connection
		// is unusable; UDP/unixgram errors (ICMP refused, no listener) are
		// just as good a reason to re-resolve and redial later.
		s.setConn(nil)
		s.fail(fmt.Sprintf("write: %v", err))
		return
	}
	s.backoff = 0
	s.episode.Store(false)
}

// staleRefusal tells whether a write failed only because an earlier
// datagram was refused.
func (s *netSink) staleRefusal(err error) bool {
	return (strings.HasPrefix(s.network, "udp") || s.network == "unixgram") && errors.Is(err, syscall.ECONNREFUSED)
}

func (s *netSink) fail(why string) {
	switch {
	case s.backoff == 0:
		s.backoff = backoffMin
	case s.backoff < backoffMax:
		s.backoff = min(2*s.backoff, backoffMax)
	}
	// Up to 25% jitter so many daemons losing one loghost do not all come
	// back at the same instant.
	wait := s.backoff + time.Duration(rand.Int64N(int64(s.backoff)/4+1))
	s.retryAt = time.Now().Add(wait)
	s.drop(1, why)
}

func (s *netSink) setConn(c net.Conn) {
	s.connMu.Lock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.conn = c
	s.cur = c
	s.connMu.Unlock()
}

func (s *netSink) close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		t := time.NewTimer(flushWait + 200*time.Millisecond)
		defer t.Stop()
		select {
		case <-s.done:
		case <-t.C:
			// The writer is stuck beyond its own deadlines (should not
			// happen); cut the connection and the dial to free it.
			s.cancel()
			s.connMu.Lock()
			if s.cur != nil {
				s.cur.SetWriteDeadline(time.Unix(1, 0))
			}
			s.connMu.Unlock()
			<-s.done
		}
		s.cancel()
		if n := s.drain(); n > 0 {
			err = fmt.Errorf("logging: %d queued records not delivered to syslog %s %s within %v of Close (%d dropped in total)",
				n, s.network, s.address, flushWait, s.dropped.Load())
		}
	})
	return err
}
