package socketmap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadNetstring(t *testing.T) {
	cases := []struct {
		in, want string
		err      string // substring; "" = success
		eof      bool
	}{
		{in: "5:hello,", want: "hello"},
		{in: "0:,", want: ""},
		{in: "21:virtual_mailbox a@b.c,", want: "virtual_mailbox a@b.c"},
		{in: "", eof: true},
		{in: "5:hello", err: "cut short"},
		{in: "5:hello;", err: "want ','"},
		{in: "5hello,", err: "want a decimal digit"},
		{in: ":x,", err: "no length"},
		{in: "05:hello,", err: "leading zero"},
		{in: "-1:,", err: "decimal digit"},
		{in: "1025:" + strings.Repeat("x", 1025) + ",", err: "1025 bytes announced"},
		{in: "999999999999:", err: "more than 5 digits"},
		{in: "12", err: "unexpected EOF"},
		{in: "3:a\x00b,", want: "a\x00b"}, // framing is fine; ParseRequest refuses the NUL
	}
	for _, tc := range cases {
		got, err := ReadNetstring(bufio.NewReader(strings.NewReader(tc.in)), MaxRequest)
		switch {
		case tc.eof:
			if err != io.EOF {
				t.Errorf("%q: err %v, want io.EOF", tc.in, err)
			}
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one containing %q", tc.in, err, tc.err)
			}
		default:
			if err != nil || string(got) != tc.want {
				t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
			}
		}
	}
}

func TestParseRequest(t *testing.T) {
	cases := []struct {
		in, name, key string
		err           string
	}{
		{in: "transport ana@correo.test", name: "transport", key: "ana@correo.test"},
		{in: "transport a b", name: "transport", key: "a b"},
		{in: "transport", err: "not \"name key\""},
		{in: " ana@x", err: "not \"name key\""},
		{in: "transport ", err: "empty key"},
		{in: "transport ana\x00@x", err: "byte 0x00"},
		{in: "transport ana\r\n@x", err: "byte 0x0d"},
	}
	for _, tc := range cases {
		name, key, err := ParseRequest([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || key != tc.key {
			t.Errorf("%q: %q %q %v", tc.in, name, key, err)
		}
	}
}

// serve starts a Server on a Unix socket answering with h.
func serve(t *testing.T, h Handler, idle time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sm.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h, IdleTimeout: idle, LookupTimeout: time.Second}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, path string) *client {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{c, bufio.NewReader(c)}
}

func (c *client) raw(t *testing.T, b string) string {
	t.Helper()
	if _, err := c.c.Write([]byte(b)); err != nil {
		t.Fatal(err)
	}
	rep, err := ReadNetstring(c.r, MaxReply)
	if err != nil {
		t.Fatalf("reply to %q: %v", b, err)
	}
	return string(rep)
}

func (c *client) ask(t *testing.T, req string) string {
	t.Helper()
	return c.raw(t, string(AppendNetstring(nil, []byte(req))))
}

// closed reports whether the server closed the connection.
func (c *client) closed() bool {
	_, err := c.r.ReadByte()
	return err == io.EOF
}

func TestServer(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, name, key string) Reply {
		switch key {
		case "ok":
			return Reply{OK, name + ":" + key}
		case "missing":
			return Reply{NotFound, "ignored"}
		case "slow":
			<-ctx.Done()
			return Reply{Timeout, "lookup timed out"}
		case "nul":
			return Reply{OK, "a\x00b"}
		case "huge":
			return Reply{OK, strings.Repeat("x", MaxReply)}
		case "odd":
			return Reply{Status: "MAYBE"}
		}
		return Reply{Temp, "directory down"}
	})
	path := serve(t, h, 2*time.Second)

	c := dial(t, path)
	// Many requests on one connection, as Postfix keeps it open.
	for _, tc := range []struct{ req, want string }{
		{"m ok", "OK m:ok"},
		{"m missing", "NOTFOUND "},
		{"m down", "TEMP directory down"},
		{"m nul", "OK ab"},
		{"m huge", "TEMP answer longer than Postfix's socketmap limit"},
		{"m odd", `TEMP internal error: handler answered status "MAYBE"`},
		{"m slow", "TIMEOUT lookup timed out"},
		{"garbage", `PERM socketmap: request "garbage" is not "name key"`},
		{"m a\x00b", `PERM socketmap: request "m a\x00b" holds byte 0x00 at offset 3`},
		{"m ok", "OK m:ok"}, // a bad request leaves the connection usable
	} {
		if got := c.ask(t, tc.req); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.req, got, tc.want)
		}
	}

	// Broken framing: PERM, then the connection is closed.
	for _, raw := range []string{"99999:", "2000:" + strings.Repeat("x", 10), "5:hello;", "x:", "1:a,\n"} {
		c := dial(t, path)
		if raw == "1:a,\n" {
			// One good (if odd) request first, then a stray byte.
			if got := c.raw(t, raw); !strings.HasPrefix(got, "PERM") {
				t.Errorf("%q: %q", raw, got)
			}
			if got, err := ReadNetstring(c.r, MaxReply); err != nil || !strings.HasPrefix(string(got), "PERM") {
				t.Errorf("after %q: %q %v", raw, got, err)
			}
		} else if got := c.raw(t, raw); !strings.HasPrefix(got, "PERM socketmap: netstring") {
			t.Errorf("%q: got %q, want PERM about the netstring", raw, got)
		}
		if !c.closed() {
			t.Errorf("%q: connection left open after a framing error", raw)
		}
	}

	// An idle client is dropped.
	idle := dial(t, path)
	if !idle.closed() {
		t.Error("idle connection not closed")
	}
}

func TestServerMaxConns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sm.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: HandlerFunc(func(context.Context, string, string) Reply { return Reply{OK, "y"} }), MaxConns: 1}
	go s.Serve(ln)
	defer s.Close()
	first := dial(t, path)
	if got := first.ask(t, "m k"); got != "OK y" {
		t.Fatal(got)
	}
	second := dial(t, path)
	if !second.closed() {
		t.Error("a connection over MaxConns was served")
	}
	if got := first.ask(t, "m k"); got != "OK y" {
		t.Errorf("first connection after the refusal: %q", got)
	}
}

// FuzzRequest feeds arbitrary bytes to the parser: it must never panic,
// never accept more than MaxRequest bytes, and what it accepts must
// encode back to the bytes it read.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"31:virtual_mailbox ana@correo.test,",
		"25:transport ana@correo.test,",
		"0:,", "5:hello", "05:hello,", "99999:", "1:a,1:b,",
		"17:transport ../etc,",
		"18:transport a\x00b@c.d,",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		read := 0
		for {
			b, err := ReadNetstring(r, MaxRequest)
			if err != nil {
				return
			}
			if len(b) > MaxRequest {
				t.Fatalf("accepted %d bytes", len(b))
			}
			enc := AppendNetstring(nil, b)
			if !bytes.Equal(enc, in[read:read+len(enc)]) {
				t.Fatalf("re-encoded %q, read %q", enc, in[read:read+len(enc)])
			}
			read += len(enc)
			name, key, err := ParseRequest(b)
			if err == nil && (name == "" || key == "" || strings.ContainsAny(name+key, "\x00\r\n") || name+" "+key != string(b)) {
				t.Fatalf("parsed %q as %q %q", b, name, key)
			}
		}
	})
}
