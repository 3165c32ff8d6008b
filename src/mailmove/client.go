package mailmove

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"correo/src/keyfile"
	"correo/src/mailtree"
	"correo/src/pwproto"
)

// Client is one connection to a storage host's mailbox_move port. Its
// methods run one at a time.
type Client struct {
	conn net.Conn
	st   *pwproto.Stream
	addr string
	// Timeout bounds each step other than a pull (which may copy
	// gigabytes; it is bounded by its progress instead).
	Timeout time.Duration
}

// Dial connects and authenticates with the cluster key.
func Dial(ctx context.Context, addr string, ring *keyfile.Ring) (*Client, error) {
	d := net.Dialer{Timeout: handshakeTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to the mailbox mover at %s: %w (is pdeliveryd running there?)", addr, err)
	}
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	st, err := pwproto.ClientStream(c, ring)
	if err != nil {
		return nil, fmt.Errorf("mailbox mover at %s: %w (is the cluster key the same on both sides?)", addr, err)
	}
	c.SetDeadline(time.Time{})
	return &Client{conn: c, st: st, addr: addr, Timeout: 2 * time.Minute}, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.st.Close() }

// call sends req and reads frames until the Response, handing the
// others to on (nil: none expected). Each frame must come within idle.
func (c *Client) call(req Request, idle time.Duration, on func(kind uint8, payload []byte) error) (Response, error) {
	c.conn.SetDeadline(time.Now().Add(idle))
	defer c.conn.SetDeadline(time.Time{})
	if err := sendJSON(c.st, kindRequest, req); err != nil {
		return Response{}, fmt.Errorf("%s at %s: %w", req.Op, c.addr, err)
	}
	for {
		c.conn.SetReadDeadline(time.Now().Add(idle))
		kind, payload, err := c.st.Recv()
		if err != nil {
			return Response{}, fmt.Errorf("%s at %s: %w", req.Op, c.addr, err)
		}
		if kind == kindResponse {
			var resp Response
			if err := decode(payload, &resp, "response"); err != nil {
				return resp, err
			}
			if !resp.OK {
				return resp, &RemoteError{Op: req.Op, Msg: resp.Error, Code: resp.Code}
			}
			return resp, nil
		}
		if on == nil {
			return Response{}, fmt.Errorf("%s at %s: unexpected frame kind %d", req.Op, c.addr, kind)
		}
		if err := on(kind, payload); err != nil {
			// The rest of the answer is lost with the connection.
			c.st.Close()
			return Response{}, err
		}
	}
}

// manifest asks the source for the Maildir's manifest.
func (c *Client) manifest(user string) (*mailtree.Manifest, error) {
	var buf bytes.Buffer
	_, err := c.call(Request{Op: opManifest, User: user}, c.Timeout, func(kind uint8, p []byte) error {
		if kind != kindManifest {
			return fmt.Errorf("manifest: unexpected frame kind %d", kind)
		}
		if buf.Len()+len(p) > maxEntries*512 {
			return fmt.Errorf("manifest: more than %d bytes", maxEntries*512)
		}
		buf.Write(p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return mailtree.DecodeManifest(&buf, maxEntries)
}

// fetch receives files into stage; progress(n, done) counts body bytes
// and received files, always on the calling goroutine, and an error from
// it ends the fetch. Small files are
// written by a few writers while the next ones arrive: creating a file
// costs more than receiving 4 KiB, and a lone writer would leave the
// stream waiting.
func (c *Client) fetch(user string, files []mailtree.Entry, rate int64, stage *mailtree.Stage, progress func(n int64, done bool) error) error {
	var (
		in   *mailtree.Incoming // a big file, written as it arrives
		cur  *mailtree.Entry    // a small file, gathered in body
		body []byte
	)
	want := map[string]bool{}
	for _, e := range files {
		want[e.Path] = true
	}
	w := newWriters(stage, fetchWriters)
	defer func() {
		if in != nil {
			in.Abort()
		}
	}()
	_, err := c.call(Request{Op: opFetch, User: user, Files: files, RateLimit: rate}, c.Timeout, func(kind uint8, p []byte) error {
		switch kind {
		case kindFile:
			if in != nil || cur != nil {
				return fmt.Errorf("fetch: a file header before the end of the previous file")
			}
			var h fileHeader
			if err := decode(p, &h, "file header"); err != nil {
				return err
			}
			if !want[h.Entry.Path] || h.Entry.Dir {
				return fmt.Errorf("fetch: the source sent %q, which was not asked for", h.Entry.Path)
			}
			delete(want, h.Entry.Path)
			if h.Missing {
				return progress(0, true)
			}
			if err := h.Entry.Check(); err != nil {
				return fmt.Errorf("fetch: %w", err)
			}
			if h.Entry.Size <= smallFile {
				e := h.Entry
				cur, body = &e, make([]byte, 0, e.Size)
				return nil
			}
			var err error
			in, err = stage.Create(h.Entry)
			return err
		case kindData:
			switch {
			case cur != nil:
				if int64(len(body)+len(p)) > cur.Size {
					return fmt.Errorf("fetch: %s: more than the announced %d bytes", cur.Path, cur.Size)
				}
				body = append(body, p...)
			case in != nil:
				if _, err := in.Write(p); err != nil {
					return err
				}
			default:
				return fmt.Errorf("fetch: file data outside a file")
			}
			return progress(int64(len(p)), false)
		case kindFileEnd:
			var fe fileEnd
			if err := decode(p, &fe, "file end"); err != nil {
				return err
			}
			switch {
			case cur != nil:
				if err := w.put(*cur, body, fe.Sum); err != nil {
					return err
				}
				cur, body = nil, nil
			case in != nil:
				err := in.Commit(fe.Sum)
				in = nil
				if err != nil {
					return err
				}
			default:
				return fmt.Errorf("fetch: a file end outside a file")
			}
			return progress(0, true)
		}
		return fmt.Errorf("fetch: unexpected frame kind %d", kind)
	})
	werr := w.wait()
	if err == nil && (in != nil || cur != nil) {
		err = fmt.Errorf("fetch: the answer ended inside a file")
	}
	if err == nil {
		err = werr
	}
	return err
}

const (
	// smallFile: files up to this size are gathered in memory and
	// written by the writers (nearly every message).
	smallFile = 1 << 20
	// fetchWriters write small files concurrently.
	fetchWriters = 4
)

// writers put gathered files into the stage concurrently; the first
// error stops the fetch.
type writers struct {
	stage *mailtree.Stage
	jobs  chan writeJob
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

type writeJob struct {
	e         mailtree.Entry
	body, sum []byte
}

func newWriters(stage *mailtree.Stage, n int) *writers {
	w := &writers{stage: stage, jobs: make(chan writeJob, 2*n)}
	for i := 0; i < n; i++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for j := range w.jobs {
				if err := stage.Put(j.e, bytes.NewReader(j.body), j.sum); err != nil {
					w.mu.Lock()
					if w.err == nil {
						w.err = err
					}
					w.mu.Unlock()
				}
			}
		}()
	}
	return w
}

func (w *writers) put(e mailtree.Entry, body, sum []byte) error {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	w.jobs <- writeJob{e, body, sum}
	return nil
}

// wait ends the writers and returns their first error.
func (w *writers) wait() error {
	close(w.jobs)
	w.wg.Wait()
	return w.err
}

// Pull has the target copy user's Maildir from the source host from into
// its stage, rate bytes per second at most (0: no cap); progress, if not
// nil, gets the target's progress reports.
func (c *Client) Pull(user, from string, rate int64, progress func(Progress)) (Pass, error) {
	resp, err := c.call(Request{Op: opPull, User: user, From: from, RateLimit: rate}, c.Timeout, func(kind uint8, p []byte) error {
		if kind != kindProgress {
			return fmt.Errorf("pull: unexpected frame kind %d", kind)
		}
		var pr Progress
		if err := decode(p, &pr, "progress"); err != nil {
			return err
		}
		if progress != nil {
			progress(pr)
		}
		return nil
	})
	if err != nil {
		return Pass{}, err
	}
	return *resp.Pass, nil
}

// Verify has the target compare its stage with the source's Maildir.
func (c *Client) Verify(user, from string) (Pass, error) {
	resp, err := c.call(Request{Op: opVerify, User: user, From: from}, c.Timeout, nil)
	if err != nil {
		return Pass{}, err
	}
	return *resp.Pass, nil
}

// Commit makes the target's stage the user's Maildir.
func (c *Client) Commit(user string) error { return c.simple(Request{Op: opCommit, User: user}) }

// Abort removes the target's stage.
func (c *Client) Abort(user string) error { return c.simple(Request{Op: opAbort, User: user}) }

// Freeze freezes the user's Maildir on the source for a move to to.
func (c *Client) Freeze(user, to string) error {
	return c.simple(Request{Op: opFreeze, User: user, To: to})
}

// Thaw unfreezes the source's Maildir of a move that will not finish.
func (c *Client) Thaw(user string) error { return c.simple(Request{Op: opThaw, User: user}) }

// Retire marks the source's copy moved to to.
func (c *Client) Retire(user, to string) error {
	return c.simple(Request{Op: opRetire, User: user, To: to})
}

// Status says what the host holds of the user's mailbox.
func (c *Client) Status(user string) (Status, error) {
	resp, err := c.call(Request{Op: opStatus, User: user}, c.Timeout, nil)
	if err != nil {
		return Status{}, err
	}
	return *resp.Status, nil
}

func (c *Client) simple(req Request) error {
	_, err := c.call(req, c.Timeout, nil)
	return err
}

// Usage measures users' mailboxes on the host, and its data_dir's file
// system.
func (c *Client) Usage(users []string) (Usage, error) {
	out := Usage{Bytes: map[string]int64{}}
	for len(users) > 0 || out.Capacity == 0 {
		batch := users[:min(len(users), maxUsageUsers)]
		users = users[len(batch):]
		resp, err := c.call(Request{Op: opUsage, Users: batch}, c.Timeout, nil)
		if err != nil {
			return out, err
		}
		out.Capacity, out.Free = resp.Usage.Capacity, resp.Usage.Free
		for u, b := range resp.Usage.Bytes {
			out.Bytes[u] = b
		}
		if len(users) == 0 {
			break
		}
	}
	return out, nil
}
