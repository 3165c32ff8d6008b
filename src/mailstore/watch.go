package mailstore

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"correo/src/mailbox"
)

// Watch cost, for IDLE at scale:
//
//   - inotify: one inotify descriptor for the whole process (the kernel
//     limits instances per user to fs.inotify.max_user_instances, 128 by
//     default, so one per session could not reach thousands of idle
//     sessions), and two watches (new/ and cur/) per watched folder, shared
//     by every session watching it (fs.inotify.max_user_watches). A
//     watcher costs no descriptor, one small struct and a channel.
//   - polling fallback, used when inotify cannot be had (instances or
//     watches exhausted, a file system without it): no descriptor, one
//     goroutine and a timer per watcher, and two stats every PollInterval.
//     Directory mtimes have a clock-tick granularity, so a second change
//     within one tick of the last look is noticed at the next change or
//     the next IDLE refresh, not lost.

// PollInterval is how often the polling fallback looks.
var PollInterval = 2 * time.Second

// Watch returns a channel that receives (coalesced: at most one pending
// value) after something changes in the folder: a delivery, a POP3
// deletion, another session's flag change or expunge. The session then
// calls Refresh. stop releases the watch; it may be called more than
// once. Changes this session makes itself also fire it: harmless, a
// Refresh that finds nothing.
func (s *Store) Watch(name string) (<-chan struct{}, func(), error) {
	canon, err := CanonicalName(name)
	if err != nil {
		return nil, nil, err
	}
	dir, err := folderPath(s.root, canon)
	if err != nil {
		return nil, nil, err
	}
	if fi, err := os.Stat(filepath.Join(dir, "cur")); err != nil || !fi.IsDir() {
		return nil, nil, fmt.Errorf("watching %q: %w", canon, ErrNoFolder)
	}
	ch := make(chan struct{}, 1)
	dirs := []string{filepath.Join(dir, "new"), filepath.Join(dir, "cur")}
	if !forcePolling {
		if stop, err := inotifyHub.add(dirs, &watcher{ch: ch}); err == nil {
			return ch, stop, nil
		}
	}
	return ch, pollWatch(dirs, ch), nil
}

// MovingPollInterval is how often WatchMoving's fallback looks for the
// marker when inotify cannot be had.
var MovingPollInterval = 500 * time.Millisecond

// WatchMoving calls fn when the mailbox's moving marker
// (mailbox.MovingMarker) may have appeared; fn checks with
// mailbox.Moving. It is meant for every logged-in session, so it costs
// no goroutine: one inotify watch on the root per mailbox, shared by
// that mailbox's sessions, and an event only for the marker's name, so a
// session is not woken by anything else. fn runs on the process's
// inotify reader and must not block or call back into the Store: set a
// flag, set a deadline. After WatchMoving returns, the caller checks
// mailbox.Moving once itself (the marker may have come first). stop may
// be called more than once; fn is not called after it returns. Without
// inotify (instances or watches exhausted) it polls every
// MovingPollInterval with a timer, still without a goroutine.
func (s *Store) WatchMoving(fn func()) (stop func()) {
	if !forcePolling {
		if stop, err := movingHub.add([]string{s.root}, &watcher{fn: fn}); err == nil {
			return stop
		}
	}
	return pollMoving(s.root, fn)
}

// pollMoving is WatchMoving without inotify: a timer (no goroutine
// between ticks) and one Lstat per interval.
func pollMoving(root string, fn func()) func() {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	var tick func()
	tick = func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if mailbox.Moving(root) {
			fn()
			return // once is enough: the session ends
		}
		t.Reset(MovingPollInterval)
	}
	mu.Lock()
	t = time.AfterFunc(MovingPollInterval, tick)
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// forcePolling lets tests exercise the fallback.
var forcePolling = false

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // one pending wake-up is enough
	}
}

// watcher is one subscriber of a hub: a channel to signal, or a function
// to call (under the hub's lock: it must not block).
type watcher struct {
	ch chan struct{}
	fn func()
}

func (w *watcher) fire() {
	if w.fn != nil {
		w.fn()
		return
	}
	signal(w.ch)
}

// hub multiplexes one inotify descriptor over every watcher of the
// process.
type hub struct {
	mask uint32
	// only, when set, passes on only events for this name: the moving
	// marker's watchers must not wake for every UID list write in the
	// root.
	only   string
	mu     sync.Mutex
	file   *os.File
	fd     int
	broken error
	wds    map[int32]*wdEntry
}

type wdEntry struct {
	refs int
	subs map[*watcher]int
}

// Two hubs, two descriptors: one inotify instance adding a second mask to
// a directory would replace the first.
var (
	inotifyHub = hub{mask: watchMask}
	movingHub  = hub{mask: unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_ONLYDIR, only: mailbox.MovingMarker}
)

const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_ONLYDIR

func (h *hub) start() error {
	if h.file != nil {
		return nil
	}
	if h.broken != nil {
		return h.broken
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		// Not sticky: instances may free up later.
		return fmt.Errorf("inotify_init1: %w", err)
	}
	h.fd = fd
	// A non-blocking descriptor in an *os.File is served by the runtime
	// poller: the reader goroutine parks instead of holding a thread.
	h.file = os.NewFile(uintptr(fd), "inotify")
	h.wds = map[int32]*wdEntry{}
	go h.read()
	return nil
}

func (h *hub) add(dirs []string, ch *watcher) (func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.start(); err != nil {
		return nil, err
	}
	var got []int32
	undo := func() {
		for _, wd := range got {
			h.dropLocked(wd, ch)
		}
	}
	for _, d := range dirs {
		w, err := unix.InotifyAddWatch(h.fd, d, h.mask)
		if err != nil {
			undo()
			return nil, fmt.Errorf("inotify_add_watch %s: %w", d, err)
		}
		wd := int32(w)
		e := h.wds[wd]
		if e == nil {
			e = &wdEntry{subs: map[*watcher]int{}}
			h.wds[wd] = e
		}
		e.refs++
		e.subs[ch]++
		got = append(got, wd)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			undo()
		})
	}, nil
}

func (h *hub) dropLocked(wd int32, ch *watcher) {
	e := h.wds[wd]
	if e == nil {
		return
	}
	if e.subs[ch]--; e.subs[ch] <= 0 {
		delete(e.subs, ch)
	}
	if e.refs--; e.refs <= 0 {
		delete(h.wds, wd)
		unix.InotifyRmWatch(h.fd, uint32(wd))
	}
}

func (h *hub) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := h.file.Read(buf)
		if err != nil {
			// Should not happen with a descriptor nobody closes; wake
			// everyone so their sessions refresh, and let new watchers
			// fall back to polling.
			h.mu.Lock()
			h.broken = fmt.Errorf("reading inotify events: %w", err)
			for _, e := range h.wds {
				for w := range e.subs {
					w.fire()
				}
			}
			h.mu.Unlock()
			return
		}
		h.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				for _, e := range h.wds {
					for w := range e.subs {
						w.fire()
					}
				}
				continue
			}
			if h.only != "" && ev.Mask&unix.IN_IGNORED == 0 && string(bytes.TrimRight(name, "\x00")) != h.only {
				continue
			}
			if e := h.wds[ev.Wd]; e != nil {
				for w := range e.subs {
					w.fire()
				}
				// IN_IGNORED (the folder was deleted) leaves the entry:
				// its watchers still call stop, and forgetting it here
				// would let their stop decrement a new watch that the
				// kernel gave the same number.
			}
		}
		h.mu.Unlock()
	}
}

// pollWatch is the fallback: stat the directories every PollInterval.
func pollWatch(dirs []string, ch chan struct{}) func() {
	done := make(chan struct{})
	look := func() string {
		var b []byte
		for _, d := range dirs {
			var st unix.Stat_t
			if err := unix.Stat(d, &st); err != nil {
				b = append(b, "gone;"...)
				continue
			}
			b = fmt.Appendf(b, "%d.%d/%d.%d/%d;", st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Ino)
		}
		return string(b)
	}
	last := look()
	go func() {
		t := time.NewTicker(PollInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if now := look(); now != last {
					last = now
					signal(ch)
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}
