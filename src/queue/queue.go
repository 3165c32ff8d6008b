package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"correo/src/cluster"
	"correo/src/delivery"
	"correo/src/logging"
)

// Deliverer hands a message to the next hop and returns one result per
// envelope recipient, in order. *delivery.Deliverer is the local one; the
// relay role's MX client is the remote one.
type Deliverer interface {
	Deliver(ctx context.Context, env delivery.Envelope, msg delivery.Message) []delivery.Result
}

// Config configures a Queue.
type Config struct {
	// Dir is the queue directory (created if missing).
	Dir string
	// Local delivers RouteLocal recipients (required); Remote delivers
	// RouteRemote ones (nil: they stay deferred with a log line, which
	// only a misconfiguration can cause on an mx host).
	Local  Deliverer
	Remote Deliverer
	// Route decides where a bounce to addr goes (nil: always local).
	Route func(addr string) Route
	// Retry is the back-off ladder (the last step repeats); Lifetime how
	// long a message may stay. Zero values take the profile defaults.
	Retry    []time.Duration
	Lifetime time.Duration
	// Hostname names this host in DSNs (Reporting-MTA, MAILER-DAEMON@).
	Hostname string
	// Workers is how many messages are delivered at once (default 32).
	Workers int
	// AttemptTimeout bounds one delivery attempt (default 10 minutes).
	AttemptTimeout time.Duration
	// Tick is how often the scheduler looks for due messages and control
	// requests (default 1 s).
	Tick time.Duration
	Log  *slog.Logger
	// Metrics, when set, counts every recipient's outcome (NewMetrics).
	Metrics *Metrics
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// RetryFromProfile turns [cluster.queue] into Config fields.
func RetryFromProfile(p *cluster.Profile) (retry []time.Duration, lifetime time.Duration) {
	for _, r := range p.Cluster.Queue.Retry {
		retry = append(retry, r.Std())
	}
	return retry, p.Cluster.Queue.Lifetime.Std()
}

// freeFiles bounds the free slots kept for reuse: more than the messages
// in flight at once on a busy host (a burst accepted faster than it is
// delivered), so that new files are rare.
const freeFiles = 1024

// reapInterval is how often the marks of finished messages are made
// durable (one syncfs for all of them): a machine crash can bring back
// only the messages finished in the last interval, to be delivered again.
// Measured on a journaled ext4: syncing every 250 ms cost about a tenth
// of the delivered rate (each sync writes back the slot headers the next
// commits overwrite anyway); every second cost as little as every five.
// For comparison, Postfix's removal of a delivered queue file becomes
// durable with ext4's next journal commit, up to five seconds later.
var reapInterval = time.Second

// Queue is a running queue: it owns its directory (lock) until Close.
type Queue struct {
	cfg  Config
	st   store
	log  *slog.Logger
	lock *os.File

	mu      sync.Mutex
	entries map[string]*entry
	closed  bool

	work chan string
	// finished wakes the reaper, which makes the marks of finished
	// messages durable with one sync per interval: a worker does not wait
	// for it, since a crash before it can only deliver a message again
	// (see the package doc), never lose one.
	finished chan struct{}
	reapStop chan struct{}
	reaped   chan struct{}
	wake     chan struct{}
	stop     chan struct{}
	ctx      context.Context
	halt     context.CancelFunc
	wg       sync.WaitGroup
}

type entry struct {
	env      *Envelope
	msg      message
	busy     bool // a worker has it
	queued   bool // its id is in the work channel
	deleteRq bool // trash it once the worker is done
}

// Open takes the queue directory's lock, cleans up after a crash, loads
// every queued message and starts the scheduler and workers.
func Open(cfg Config) (*Queue, error) {
	if cfg.Dir == "" || cfg.Local == nil {
		return nil, errors.New("queue: Dir and Local are required")
	}
	if len(cfg.Retry) == 0 {
		for _, d := range cluster.DefaultQueueRetry() {
			cfg.Retry = append(cfg.Retry, d.Std())
		}
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = cluster.DefaultQueueLifetime
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 10 * time.Minute
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	st := store{dir: cfg.Dir, pool: &pool{max: freeFiles}}
	if err := st.prepare(); err != nil {
		return nil, err
	}
	lk, ok, err := st.lock()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("queue %s is in use by another process (a running smtpd holds %s)", cfg.Dir, st.path(lockName))
	}
	q := &Queue{cfg: cfg, st: st, log: cfg.Log, lock: lk, entries: map[string]*entry{},
		work: make(chan string, 4096), wake: make(chan struct{}, 1), stop: make(chan struct{}),
		finished: make(chan struct{}, 1), reapStop: make(chan struct{}), reaped: make(chan struct{})}
	q.ctx, q.halt = context.WithCancel(context.Background())
	msgs, bad, stale, err := st.recover()
	if err != nil {
		st.pool.closeAll()
		lk.Close()
		return nil, fmt.Errorf("queue %s: %w", cfg.Dir, err)
	}
	for _, id := range stale {
		q.log.Info("removed the delivery state of a message finished just before a crash", "queue_id", id)
	}
	for _, b := range bad {
		q.trashBad(b.m, b.err)
	}
	for _, m := range msgs {
		// A message never attempted may be one a crash caught before its
		// data sync ended (legacy files: between rename and sync); slots
		// were checked by scan.
		e, err := st.readEnv(&m, m.legacy())
		if err != nil {
			q.trashBad(m, err)
			continue
		}
		q.entries[m.id] = &entry{env: e, msg: m}
	}
	if len(msgs) > 0 {
		q.log.Info("queue loaded", "messages", len(q.entries), "dir", cfg.Dir)
	}
	for i := 0; i < cfg.Workers; i++ {
		q.wg.Add(1)
		go q.worker()
	}
	q.wg.Add(1)
	go q.scheduler()
	go q.reaper()
	return q, nil
}

// trashBad moves a message found torn or unreadable at start-up to
// trash/.
func (q *Queue) trashBad(m message, err error) {
	if errors.Is(err, errTorn) {
		q.log.Warn("message torn by a crash before it was acknowledged (its sender retries it): moved to trash", "queue_id", m.id, "err", err)
	} else {
		q.log.Error("unreadable message or envelope: moved to trash, fix or delete it by hand", "queue_id", m.id, "err", err)
	}
	if err := q.st.trash(&m); err != nil {
		q.log.Error("moving a damaged message to trash", "queue_id", m.id, "err", err)
	}
}

// reaper makes the marks of finished messages durable: after the first
// finish it lets others gather for reapInterval, then one sync covers
// them all.
func (q *Queue) reaper() {
	defer close(q.reaped)
	for {
		select {
		case <-q.finished:
		case <-q.reapStop:
			select {
			case <-q.finished: // a finish came with the stop
				q.reap()
			default:
			}
			return
		}
		select {
		case <-time.After(reapInterval):
		case <-q.reapStop:
		}
		q.reap()
	}
}

func (q *Queue) reap() {
	if err := q.st.syncAll(); err != nil {
		// Nothing is lost: at worst a finished message comes back after
		// a crash and is delivered again.
		q.log.Error("making the marks of finished messages durable", "err", err)
	}
}

// Close stops taking work, waits up to ctx for attempts in progress (an
// attempt cut short stays pending and is retried after the restart), and
// releases the lock.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	close(q.stop)
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		q.halt()
		<-done
		err = ctx.Err()
	}
	q.halt()
	close(q.reapStop) // every worker has returned: nothing finishes any more
	<-q.reaped
	q.mu.Lock()
	for _, e := range q.entries {
		e.msg.closeFile()
	}
	q.mu.Unlock()
	q.st.pool.closeAll()
	q.lock.Close()
	return err
}

// NewMessage starts receiving a message; its id is known at once (for the
// Received header).
func (q *Queue) NewMessage() (*Writer, error) {
	w, err := q.st.newWriter()
	if err != nil {
		return nil, err
	}
	w.q = q
	return w, nil
}

// Commit makes the message durable with its envelope (From, Trace,
// Client, Helo, User and Rcpts with Addr and Route; the rest is filled
// in) and schedules its delivery at once. Only after Commit returns nil
// may the message be acknowledged.
func (w *Writer) Commit(e *Envelope) error {
	now := w.q.cfg.Now()
	e.Created = now
	e.Next = now
	for i := range e.Rcpts {
		e.Rcpts[i].State = Pending
	}
	m, err := w.commitFiles(e)
	if err != nil {
		return err
	}
	w.q.add(e, m)
	return nil
}

// add schedules a committed envelope.
func (q *Queue) add(e *Envelope, m message) {
	q.mu.Lock()
	en := &entry{env: e, msg: m}
	q.entries[e.ID] = en
	closed := q.closed
	if !closed {
		select {
		case q.work <- e.ID:
			en.queued = true
		default: // the scheduler will find it
		}
	}
	if !en.queued {
		// A backlog (deliveries slower than arrivals) must not hold a
		// descriptor per message: only those about to be attempted keep
		// theirs open.
		en.msg.closeFile()
	}
	q.mu.Unlock()
}

// Len is the number of queued messages.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// Flush makes every queued message due now.
func (q *Queue) Flush() {
	q.mu.Lock()
	now := q.cfg.Now()
	for _, e := range q.entries {
		if !e.busy {
			e.env.Next = now
		}
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Delete moves a message to trash/; a message being delivered is moved
// as soon as the attempt ends (recipients delivered by then stay so).
func (q *Queue) Delete(id string) error {
	q.mu.Lock()
	e, ok := q.entries[id]
	if !ok {
		q.mu.Unlock()
		return fmt.Errorf("no message %s in the queue", id)
	}
	if e.busy {
		e.deleteRq = true
		q.mu.Unlock()
		return nil
	}
	delete(q.entries, id)
	q.mu.Unlock()
	if err := q.st.trash(&e.msg); err != nil {
		return err
	}
	q.log.Info("deleted by the operator", logging.TraceKey, e.env.Trace, "queue_id", id)
	return nil
}

func (q *Queue) scheduler() {
	defer q.wg.Done()
	t := time.NewTicker(q.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
		case <-q.wake:
		}
		q.control()
		q.dispatch()
	}
}

// dispatch sends every due, idle message to the workers.
func (q *Queue) dispatch() {
	now := q.cfg.Now()
	q.mu.Lock()
	var due []string
	for id, e := range q.entries {
		if !e.busy && !e.queued && !e.env.Next.After(now) {
			due = append(due, id)
		}
	}
	q.mu.Unlock()
	for _, id := range due {
		q.mu.Lock()
		e, ok := q.entries[id]
		if !ok || e.busy || e.queued {
			q.mu.Unlock()
			continue
		}
		select {
		case q.work <- id:
			e.queued = true
		default:
			q.mu.Unlock()
			return // full: next tick
		}
		q.mu.Unlock()
	}
}

// control performs correoctl's requests found in ctl/.
func (q *Queue) control() {
	ents, err := os.ReadDir(q.st.path(dirCtl))
	if err != nil || len(ents) == 0 {
		return
	}
	for _, c := range ents {
		name := c.Name()
		switch {
		case name == ctlFlush:
			q.log.Info("flush requested")
			q.Flush()
		case strings.HasPrefix(name, ctlDelete):
			id := strings.TrimPrefix(name, ctlDelete)
			if err := q.Delete(id); err != nil {
				q.log.Warn("delete requested", "queue_id", id, "err", err)
			}
		default:
			q.log.Warn("unknown queue control request removed", "name", name)
		}
		os.Remove(q.st.path(dirCtl, name))
	}
}

func (q *Queue) worker() {
	defer q.wg.Done()
	for {
		select {
		case <-q.stop:
			return
		case id := <-q.work:
			q.mu.Lock()
			e, ok := q.entries[id]
			if !ok || e.busy {
				if ok {
					e.queued = false
				}
				q.mu.Unlock()
				continue
			}
			e.busy, e.queued = true, false
			env := e.env
			q.mu.Unlock()

			done := q.attempt(env, &e.msg)

			q.mu.Lock()
			e.busy = false
			del := e.deleteRq
			if done || del {
				delete(q.entries, id)
			}
			q.mu.Unlock()
			if del && !done {
				if err := q.st.trash(&e.msg); err != nil {
					q.log.Error("moving a deleted message to trash", "queue_id", id, "err", err)
				} else {
					q.log.Info("deleted by the operator", logging.TraceKey, env.Trace, "queue_id", id)
				}
			}
		}
	}
}

// attempt delivers the pending recipients of e once, records the outcome
// durably, bounces failures, and reports whether e is finished.
func (q *Queue) attempt(e *Envelope, m *message) (done bool) {
	ctx, cancel := context.WithTimeout(q.ctx, q.cfg.AttemptTimeout)
	defer cancel()
	ctx = logging.WithTrace(ctx, e.Trace)
	f, err := q.st.open(m, true)
	if err != nil {
		q.log.Error("message file missing: dropping the envelope", logging.TraceKey, e.Trace, "queue_id", e.ID, "err", err)
		q.st.removeEnv(m)
		return true
	}
	msg := io.NewSectionReader(f, m.offset(), e.Size)

	pending := e.Pending()
	byRoute := map[Route][]int{}
	for _, i := range pending {
		byRoute[e.Rcpts[i].Route] = append(byRoute[e.Rcpts[i].Route], i)
	}
	for _, route := range []Route{RouteLocal, RouteRemote} {
		idx := byRoute[route]
		if len(idx) == 0 {
			continue
		}
		d := q.cfg.Local
		if route == RouteRemote {
			d = q.cfg.Remote
		}
		to := make([]string, len(idx))
		var hosts []string
		if e.Attempts == 0 {
			hosts = make([]string, len(idx))
		}
		for j, i := range idx {
			to[j] = e.Rcpts[i].Addr
			if hosts != nil {
				hosts[j] = e.Rcpts[i].Storage
			}
		}
		var results []delivery.Result
		if d == nil {
			for _, a := range to {
				results = append(results, delivery.Result{Rcpt: a, Status: delivery.Temporary, Code: 451, Enhanced: "4.3.5",
					Text: "no remote delivery configured on this host"})
			}
		} else {
			// The key is the same for every attempt of this message: a
			// storage host that stored it before a crash answers again
			// without a second copy (package dedup).
			start := q.cfg.Now()
			results = d.Deliver(ctx, delivery.Envelope{From: e.From, To: to, Trace: e.Trace, Hosts: hosts, Key: e.ID + "." + e.Trace}, msg)
			q.cfg.Metrics.attempt(route, q.cfg.Now().Sub(start))
		}
		now := q.cfg.Now()
		for j, i := range idx {
			r := &e.Rcpts[i]
			var res delivery.Result
			if j < len(results) {
				res = results[j]
			} else {
				res = delivery.Result{Status: delivery.Temporary, Code: 451, Enhanced: "4.3.0", Text: "no result from the deliverer"}
			}
			r.Code, r.Enhanced, r.Text, r.Host, r.Updated = res.Code, res.Enhanced, res.Text, res.Host, now
			switch res.Status {
			case delivery.Delivered:
				r.State = Delivered
			case delivery.Permanent:
				r.State = Failed
			default:
				if now.Sub(e.Created) >= q.cfg.Lifetime {
					r.State, r.Expired = Failed, true
				}
			}
		}
	}
	now := q.cfg.Now()
	e.Attempts++
	q.logOutcomes(ctx, e, pending)

	// Bounce new failures before recording them: a crash in between
	// sends a second bounce rather than none.
	var failed []int
	for _, i := range pending {
		if e.Rcpts[i].State == Failed && !e.Rcpts[i].Bounced {
			failed = append(failed, i)
		}
	}
	if len(failed) > 0 {
		if e.From == "" {
			q.log.InfoContext(ctx, "no bounce for a message with the null sender", logging.TraceKey, e.Trace, "queue_id", e.ID, "failed", len(failed))
		} else if id, err := q.bounce(e, failed, msg); err != nil {
			// Not recorded as bounced: the failure stays in the envelope
			// and the bounce is retried with the next attempt.
			q.log.ErrorContext(ctx, "queueing the bounce failed", logging.TraceKey, e.Trace, "queue_id", e.ID, "err", err)
			for _, i := range failed {
				e.Rcpts[i].State, e.Rcpts[i].Expired = Pending, false
			}
			failed = nil
		} else {
			q.log.InfoContext(ctx, "bounce queued", logging.TraceKey, e.Trace, "queue_id", e.ID, "dsn_id", id, "to", e.From, "failed", len(failed))
		}
		for _, i := range failed {
			e.Rcpts[i].Bounced = true
		}
	}

	if e.Done() {
		if err := q.st.finish(m); err != nil {
			q.log.Error("removing a finished message", logging.TraceKey, e.Trace, "queue_id", e.ID, "err", err)
		}
		select {
		case q.finished <- struct{}{}:
		default: // the reaper is awake already
		}
		return true
	}
	m.closeFile()
	step := e.Attempts - 1
	if step >= len(q.cfg.Retry) {
		step = len(q.cfg.Retry) - 1
	}
	next := now.Add(q.cfg.Retry[step])
	// Never wait past the end of the lifetime: the bounce is due then.
	if end := e.Created.Add(q.cfg.Lifetime); next.After(end) {
		next = end
	}
	e.Next = next
	if err := q.st.writeEnv(e); err == nil {
		m.env = true
	} else {
		// The old envelope stays: the recipients delivered now may be
		// delivered again after a restart (see the package doc).
		q.log.Error("recording delivery state failed", logging.TraceKey, e.Trace, "queue_id", e.ID, "err", err)
	}
	return false
}

// logOutcomes writes one line per recipient attempted.
func (q *Queue) logOutcomes(ctx context.Context, e *Envelope, idx []int) {
	for _, i := range idx {
		r := e.Rcpts[i]
		q.cfg.Metrics.outcome(&r)
		msg, level := "delivered", slog.LevelInfo
		switch {
		case r.State == Failed && r.Expired:
			msg, level = "expired", slog.LevelWarn
		case r.State == Failed:
			msg = "bounced"
		case r.State == Pending:
			msg, level = "deferred", slog.LevelWarn
		}
		attrs := []any{logging.TraceKey, e.Trace, "queue_id", e.ID, "rcpt", r.Addr, "from", e.From,
			"route", string(r.Route), "code", r.Code, "enhanced", r.Enhanced, "attempt", e.Attempts}
		if r.Host != "" {
			attrs = append(attrs, "host", r.Host)
		}
		if r.State != Delivered {
			attrs = append(attrs, "reply", r.Text)
		}
		if r.State == Pending {
			attrs = append(attrs, "next", e.Next.Format(time.RFC3339))
		}
		q.log.Log(ctx, level, msg, attrs...)
	}
}

// bounce queues the DSN for the failed recipients to e.From.
func (q *Queue) bounce(e *Envelope, failed []int, orig io.ReaderAt) (string, error) {
	w, err := q.NewMessage()
	if err != nil {
		return "", err
	}
	trace := logging.NewTraceID()
	writeDSN(w, dsnInput{env: e, failed: failed, orig: io.NewSectionReader(orig, 0, e.Size),
		hostname: q.cfg.Hostname, now: q.cfg.Now(), id: w.ID(), trace: trace})
	route := RouteLocal
	if q.cfg.Route != nil {
		route = q.cfg.Route(e.From)
	}
	err = w.Commit(&Envelope{From: "", Trace: trace, Rcpts: []Recipient{{Addr: e.From, Route: route}}})
	if err != nil {
		return "", err
	}
	return w.ID(), nil
}
