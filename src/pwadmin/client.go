package pwadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"correo/src/keyfile"
	"correo/src/pwproto"
)

// Client is one admin connection to a passwd server.
type Client struct {
	conn    net.Conn
	st      *pwproto.Stream
	Timeout time.Duration // per request; default 2 minutes (imports of a million users take a while)
}

// Dial connects to a passwd server's admin port and authenticates with the
// cluster key.
func Dial(ctx context.Context, addr string, ring *keyfile.Ring) (*Client, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to passwdd at %s: %w", addr, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	st, err := pwproto.ClientStream(c, ring)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("passwdd at %s: %w (is the cluster key the same on both sides?)", addr, err)
	}
	c.SetDeadline(time.Time{})
	return &Client{conn: c, st: st, Timeout: 2 * time.Minute}, nil
}

// Error is a refusal from the server.
type Error struct {
	Code, Msg, Primary string
}

func (e *Error) Error() string { return e.Msg }

// Do sends one request and waits for its response. A refusal comes back
// as *Error with the server's code.
func (c *Client) Do(req Request) (Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	c.conn.SetDeadline(time.Now().Add(c.Timeout))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.st.Send(KindRequest, b); err != nil {
		return Response{}, fmt.Errorf("sending %s: %w", req.Op, err)
	}
	kind, payload, err := c.st.Recv()
	if err != nil {
		return Response{}, fmt.Errorf("waiting for the answer to %s: %w", req.Op, err)
	}
	if kind != KindResponse {
		return Response{}, fmt.Errorf("unexpected frame kind %d in answer to %s", kind, req.Op)
	}
	var resp Response
	if err := json.Unmarshal(payload, &resp); err != nil {
		return Response{}, fmt.Errorf("malformed answer to %s: %w", req.Op, err)
	}
	if !resp.OK {
		return resp, &Error{Code: resp.Code, Msg: resp.Error, Primary: resp.Primary}
	}
	return resp, nil
}

// IsCode reports whether err is a server refusal with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Close ends the connection.
func (c *Client) Close() error { return c.st.Close() }
