package pwadmin

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"correo/src/keyfile"
	"correo/src/pwproto"
)

// fakeServer answers each request with the response made by answer.
func fakeServer(t *testing.T, ring *keyfile.Ring, answer func(Request) (uint8, any)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				st, err := pwproto.ServerStream(c, ring)
				if err != nil {
					return
				}
				for {
					_, p, err := st.Recv()
					if err != nil {
						return
					}
					var req Request
					json.Unmarshal(p, &req)
					kind, resp := answer(req)
					b, _ := json.Marshal(resp)
					if s, ok := resp.(string); ok {
						b = []byte(s)
					}
					st.Send(kind, b)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestClient(t *testing.T) {
	k, _ := keyfile.NewKey(1)
	ring := &keyfile.Ring{Keys: []keyfile.Key{k}}
	addr := fakeServer(t, ring, func(r Request) (uint8, any) {
		switch r.Op {
		case OpStats:
			return KindResponse, Response{OK: true, Stats: &Stats{Host: "pw1", Users: 3}}
		case OpUserAdd:
			return KindResponse, Response{Code: CodeNotPrimary, Primary: "pw1 (10.0.0.1:7002)", Error: "this is the secondary"}
		case "garbage":
			return KindResponse, "{not json"
		default:
			return KindRepl, Response{OK: true}
		}
	})
	c, err := Dial(context.Background(), addr, ring)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Do(Request{Op: OpStats})
	if err != nil || resp.Stats.Host != "pw1" || resp.Stats.Users != 3 {
		t.Fatalf("stats: %+v, %v", resp, err)
	}
	_, err = c.Do(Request{Op: OpUserAdd})
	var e *Error
	if !IsCode(err, CodeNotPrimary) || !strings.Contains(err.Error(), "secondary") {
		t.Fatalf("refusal: %v", err)
	}
	if e, _ = err.(*Error); e.Primary != "pw1 (10.0.0.1:7002)" {
		t.Fatalf("refusal does not name the primary: %+v", e)
	}
	if _, err := c.Do(Request{Op: "garbage"}); err == nil || !strings.Contains(err.Error(), "malformed answer") {
		t.Fatalf("garbage answer: %v", err)
	}
	if _, err := c.Do(Request{Op: "other"}); err == nil || !strings.Contains(err.Error(), "unexpected frame kind") {
		t.Fatalf("wrong kind: %v", err)
	}

	other, _ := keyfile.NewKey(1)
	if _, err := Dial(context.Background(), addr, &keyfile.Ring{Keys: []keyfile.Key{other}}); err == nil || !strings.Contains(err.Error(), "cluster key") {
		t.Fatalf("dial with another key: %v", err)
	}
	if _, err := Dial(context.Background(), "127.0.0.1:1", ring); err == nil || !strings.Contains(err.Error(), "connecting to passwdd") {
		t.Fatalf("dial to nothing: %v", err)
	}
}
