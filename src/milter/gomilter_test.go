package milter

import (
	"net"
	"net/textproto"
	"reflect"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/emersion/go-milter"
)

// goMilter is a milter built on go-milter's server: a second, independent
// reading of the protocol (version 2, replies to every step).
type goMilter struct {
	mu      *sync.Mutex
	got     *goMilterSaw
	atEnd   func(m *gomilter.Modifier) (gomilter.Response, error)
	headers [][2]string
	body    []byte
}

type goMilterSaw struct {
	host, helo, from string
	rcpts            []string
	headers          [][2]string
	body             string
	macros           map[string]string
}

func (g *goMilter) Connect(host string, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	*g.got = goMilterSaw{host: host + " " + family + " " + addr.String()}
	return gomilter.RespContinue, nil
}

func (g *goMilter) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got.helo = name
	return gomilter.RespContinue, nil
}

func (g *goMilter) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got.from = from
	g.got.macros = m.Macros // the last macro packet's
	return gomilter.RespContinue, nil
}

func (g *goMilter) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got.rcpts = append(g.got.rcpts, rcpt)
	return gomilter.RespContinue, nil
}

func (g *goMilter) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	g.headers = append(g.headers, [2]string{name, value})
	return gomilter.RespContinue, nil
}

func (g *goMilter) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (g *goMilter) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	g.body = append(g.body, chunk...)
	return gomilter.RespContinue, nil
}

func (g *goMilter) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	g.mu.Lock()
	g.got.headers, g.got.body = g.headers, string(g.body)
	g.mu.Unlock()
	return g.atEnd(m)
}

func (g *goMilter) Abort(m *gomilter.Modifier) error { return nil }

func startGoMilter(t *testing.T, atEnd func(m *gomilter.Modifier) (gomilter.Response, error)) (string, func() goMilterSaw) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	saw := &goMilterSaw{}
	s := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return &goMilter{mu: &mu, got: saw, atEnd: atEnd} },
		Actions:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return "tcp:" + ln.Addr().String(), func() goMilterSaw {
		mu.Lock()
		defer mu.Unlock()
		return *saw
	}
}

func TestGoMilterServer(t *testing.T) {
	t.Run("changes and quarantine", func(t *testing.T) {
		addr, saw := startGoMilter(t, func(m *gomilter.Modifier) (gomilter.Response, error) {
			m.AddHeader("X-Checked", "yes,\r\n\tfolded")
			m.InsertHeader(0, "X-First", "1")
			m.ChangeHeader(1, "Subject", "[SPAM] hello")
			m.ChangeHeader(1, "X-Spam", "")
			m.Quarantine("suspicious")
			return gomilter.RespAccept, nil
		})
		c := chain(t, nil, Config{Name: "go", Addr: addr})
		v := check(t, c, testMsg)
		want := Verdict{Action: Quarantine, By: "go", Reason: "suspicious", Changes: []HeaderChange{
			{Op: Add, Name: "X-Checked", Value: "yes,\n\tfolded"},
			{Op: Insert, Index: 0, Name: "X-First", Value: "1"},
			{Op: Change, Index: 1, Name: "Subject", Value: "[SPAM] hello"},
			{Op: Delete, Index: 1, Name: "X-Spam"},
		}}
		if !reflect.DeepEqual(v, want) {
			t.Errorf("verdict\n got %+v\nwant %+v", v, want)
		}
		out := rewrite(t, testMsg, v.Changes)
		wantOut := "X-First: 1\r\n" + strings.Replace(strings.Replace(testMsg, "Subject: hello\r\n world\r\n", "Subject: [SPAM] hello\r\n", 1),
			"X-Spam: maybe\r\n", "X-Checked: yes,\r\n\tfolded\r\n", 1)
		if out != wantOut {
			t.Errorf("rewritten\n got %q\nwant %q", out, wantOut)
		}
		s := saw()
		if s.host != "client.example tcp4 192.0.2.7" || s.helo != "client.example" || s.from != "ana@example.org" ||
			!reflect.DeepEqual(s.rcpts, []string{"juan@correo.test", "eva@correo.test"}) {
			t.Errorf("envelope seen: %+v", s)
		}
		if len(s.headers) != 5 || s.headers[3] != [2]string{"Subject", "hello\n world"} ||
			s.body != "Hi Juan,\r\n\r\na body line\r\n" || s.macros["i"] != "Q1" {
			t.Errorf("message seen: %q %q %v", s.headers, s.body, s.macros)
		}
	})
	t.Run("custom reject", func(t *testing.T) {
		addr, _ := startGoMilter(t, func(m *gomilter.Modifier) (gomilter.Response, error) {
			return gomilter.NewResponseStr('y', "550 5.7.0 not today"), nil
		})
		v := check(t, chain(t, nil, Config{Name: "go", Addr: addr}), testMsg)
		if want := (Verdict{Action: Reject, Code: 550, Enhanced: "5.7.0", Text: "not today", By: "go"}); !reflect.DeepEqual(v, want) {
			t.Errorf("verdict %+v", v)
		}
	})
}
