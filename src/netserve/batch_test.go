package netserve

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/src/tlsconf"
)

// batchPair returns a server-side batching connection and its peer.
func batchPair(t *testing.T) (srv net.Conn, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	bl := BatchReplies(ln)
	done := make(chan net.Conn, 1)
	go func() {
		c, err := bl.Accept()
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv = <-done
	t.Cleanup(func() { srv.Close(); peer.Close() })
	return srv, peer
}

// TestBatchRepliesHoldsUntilRead: replies written one by one reach the
// peer together when the server reads next, and not before.
func TestBatchRepliesHoldsUntilRead(t *testing.T) {
	srv, peer := batchPair(t)
	for _, l := range []string{"250 ok\r\n", "250 ok\r\n", "354 go on\r\n"} {
		if n, err := srv.Write([]byte(l)); n != len(l) || err != nil {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := peer.Read(make([]byte, 64)); n != 0 || err == nil {
		t.Fatalf("peer read %d bytes before the server read: %v", n, err)
	}
	peer.SetReadDeadline(time.Time{})
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 64)
		n, _ := io.ReadAtLeast(peer, b, 27)
		got <- string(b[:n])
		peer.Write([]byte("DATA\r\n"))
	}()
	line, err := bufio.NewReader(srv).ReadString('\n')
	if err != nil || line != "DATA\r\n" {
		t.Fatalf("server read %q, %v", line, err)
	}
	if g := <-got; g != "250 ok\r\n250 ok\r\n354 go on\r\n" {
		t.Fatalf("peer got %q", g)
	}
}

// TestBatchRepliesCloseFlushes: the last reply before a close (421,
// QUIT's 221) is sent.
func TestBatchRepliesCloseFlushes(t *testing.T) {
	srv, peer := batchPair(t)
	srv.Write([]byte("221 bye\r\n"))
	srv.Close()
	b, err := io.ReadAll(peer)
	if err != nil || string(b) != "221 bye\r\n" {
		t.Fatalf("peer got %q, %v", b, err)
	}
}

// TestBatchRepliesLargeWrite: a large reply leaves without waiting.
func TestBatchRepliesLargeWrite(t *testing.T) {
	srv, peer := batchPair(t)
	big := strings.Repeat("x", batchLimit+10)
	go srv.Write([]byte(big))
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, len(big))
	if _, err := io.ReadFull(peer, b); err != nil || string(b) != big {
		t.Fatalf("large write: %v", err)
	}
}

// TestBatchRepliesWriteError: a peer gone makes the flush fail, and the
// failure is what the next read and write return.
func TestBatchRepliesWriteError(t *testing.T) {
	srv, peer := batchPair(t)
	peer.Close()
	srv.(*batchConn).Conn.Close() // the socket fails every write now
	srv.Write([]byte("250 ok\r\n"))
	if _, err := srv.Read(make([]byte, 10)); err == nil {
		t.Fatal("read after a failed flush succeeded")
	}
	if _, err := srv.Write([]byte("x")); err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after a failed flush: %v", err)
	}
}

// TestBatchRepliesConcurrent: a write from another goroutine (a shutdown
// notice) while the session reads is neither lost nor a race.
func TestBatchRepliesConcurrent(t *testing.T) {
	srv, peer := batchPair(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Read(make([]byte, 10))
	}()
	srv.Write([]byte("421 shutting down\r\n"))
	srv.Close()
	wg.Wait()
	b, _ := io.ReadAll(peer)
	if string(b) != "421 shutting down\r\n" {
		t.Fatalf("peer got %q", b)
	}
}

// TestBatchRepliesTLSClose: over TLS, the last reply and the close_notify
// alert leave although crypto/tls ends writes with a deadline of now
// before it closes.
func TestBatchRepliesTLSClose(t *testing.T) {
	srv, peer := batchPair(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := tlsconf.SelfSigned(certPath, keyPath, []string{"localhost"}, nil); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ts := tls.Server(srv, &tls.Config{Certificates: []tls.Certificate{cert}})
	tc := tls.Client(peer, &tls.Config{InsecureSkipVerify: true})
	go func() {
		if err := ts.Handshake(); err != nil {
			t.Error(err)
			return
		}
		ts.SetWriteDeadline(time.Now().Add(time.Minute)) // as go-smtp does per reply
		ts.Write([]byte("221 bye\r\n"))
		ts.Close()
	}()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(tc)
	if err != nil || string(b) != "221 bye\r\n" {
		t.Fatalf("client got %q, %v", b, err)
	}
}

// TestBatchRepliesReadsWaitingInputFirst: input the peer has sent already
// is read without sending the held replies; they leave, in one segment
// with what follows, when a read would wait.
func TestBatchRepliesReadsWaitingInputFirst(t *testing.T) {
	srv, peer := batchPair(t)
	if _, err := peer.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	srv.Write([]byte("250 ok\r\n"))
	b := make([]byte, 4)
	// Wait until the input has arrived, then read it in parts.
	deadline := time.Now().Add(5 * time.Second)
	got := ""
	for len(got) < 10 && time.Now().Before(deadline) {
		n, err := srv.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		got += string(b[:n])
	}
	if got != "0123456789" {
		t.Fatalf("server read %q", got)
	}
	peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := peer.Read(make([]byte, 64)); n != 0 {
		t.Fatalf("the reply left while input was waiting to be read (%d bytes)", n)
	}
	srv.Write([]byte("250 done\r\n"))
	readErr := make(chan error, 1)
	go func() {
		_, err := srv.Read(b) // nothing waiting: flushes, then waits
		readErr <- err
	}()
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := make([]byte, 64)
	n, err := io.ReadAtLeast(peer, r, len("250 ok\r\n250 done\r\n"))
	if err != nil || string(r[:n]) != "250 ok\r\n250 done\r\n" {
		t.Fatalf("peer got %q, %v", r[:n], err)
	}
	peer.Close()
	if err := <-readErr; err != io.EOF {
		t.Errorf("read after the peer closed: %v, want EOF", err)
	}
}
