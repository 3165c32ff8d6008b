package netserve

import (
	"io"
	"net"
	"time"
)

// DeadlineReader reads r (a server's view of a client's message data)
// extending conn's read deadline before each read: every read must come
// within idle, and all of them before limit, so a client that trickles a
// message can hold a session no longer than the data timeout.
func DeadlineReader(r io.Reader, conn net.Conn, idle time.Duration, limit time.Time) io.Reader {
	return &deadlineReader{r: r, conn: conn, idle: idle, limit: limit}
}

type deadlineReader struct {
	r     io.Reader
	conn  net.Conn
	idle  time.Duration
	limit time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	dl := time.Now().Add(d.idle)
	if dl.After(d.limit) {
		dl = d.limit
	}
	d.conn.SetReadDeadline(dl)
	return d.r.Read(p)
}
