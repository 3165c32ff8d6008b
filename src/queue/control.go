package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// The operator's side (correoctl queue): safe while smtpd runs. Reading
// needs no coordination: envelopes are replaced by rename, so a reader
// sees the old one or the new one, and a slot reused while it is read no
// longer names the message asked for, which then counts as finished.
// Changes go through the running process when there is one (a file in
// ctl/ it picks up within a second), or are made directly under the lock
// when there is none.

// requestTimeout is how long correoctl waits for smtpd to take a request.
const requestTimeout = 10 * time.Second

// List returns every queued envelope, oldest first. Unreadable ones are
// reported in errs, not fatal.
func List(dir string) (envs []*Envelope, errs []error, err error) {
	st := store{dir: dir}
	if _, err := os.Stat(st.path(dirQ)); err != nil {
		return nil, nil, fmt.Errorf("%s is not a queue directory (no %s/): %w", dir, dirQ, err)
	}
	msgs, bad, err := st.scan(false)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range bad {
		errs = append(errs, b.err)
	}
	for _, m := range msgs {
		e, err := st.readEnv(&m, false)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) { // finished meanwhile
				errs = append(errs, err)
			}
			continue
		}
		envs = append(envs, e)
	}
	return envs, errs, nil
}

// Show returns one envelope and writes the message's header section to w.
func Show(dir, id string, w io.Writer) (*Envelope, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%q is not a queue id (20 hex digits, as `correoctl queue list` prints)", id)
	}
	st := store{dir: dir}
	m, err := st.find(id)
	var e *Envelope
	if err == nil {
		e, err = st.readEnv(&m, false)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no message %s in %s (delivered, bounced or deleted)", id, dir)
		}
		return nil, err
	}
	f, err := st.open(&m, false)
	if err != nil {
		return e, err
	}
	defer f.Close()
	br := bufio.NewReader(io.NewSectionReader(f, m.offset(), e.Size))
	for {
		l, err := br.ReadString('\n')
		if l == "\r\n" || l == "\n" || l == "" {
			return e, nil
		}
		io.WriteString(w, l)
		if err != nil {
			return e, nil
		}
	}
}

// RequestFlush makes every queued message due now.
func RequestFlush(dir string) error {
	st := store{dir: dir}
	if err := st.prepare(); err != nil {
		return err
	}
	lk, free, err := st.lock()
	if err != nil {
		return err
	}
	if !free {
		return st.request(ctlFlush, requestTimeout)
	}
	defer lk.Close()
	// Nothing runs the queue: mark every message due for the next start.
	msgs, _, err := st.scan(false)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		e, err := st.readEnv(&m, false)
		if err != nil {
			continue
		}
		e.Next = time.Time{}
		if err := st.writeEnv(e); err != nil {
			return err
		}
	}
	return nil
}

// RequestDelete removes a message from the queue (into trash/) without
// delivering or bouncing it.
func RequestDelete(dir, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q is not a queue id (20 hex digits, as `correoctl queue list` prints)", id)
	}
	st := store{dir: dir}
	m, err := st.find(id)
	if err != nil {
		return fmt.Errorf("no message %s in %s (delivered, bounced or deleted)", id, dir)
	}
	lk, free, err := st.lock()
	if err != nil {
		return err
	}
	if !free {
		if err := st.request(ctlDelete+id, requestTimeout); err != nil {
			return err
		}
		// A message in the middle of an attempt is moved when the
		// attempt ends.
		deadline := time.Now().Add(requestTimeout)
		for time.Now().Before(deadline) {
			if !st.holds(m) {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return fmt.Errorf("smtpd took the request but %s is still queued (an attempt in progress); check again with `correoctl queue show %s`", id, id)
	}
	defer lk.Close()
	// Checked again under the lock: it may have finished meanwhile.
	if !st.holds(m) {
		return fmt.Errorf("no message %s in %s (delivered, bounced or deleted)", id, dir)
	}
	return st.trash(&m)
}
