package logging

import (
	"context"
	"crypto/rand"
	"encoding/base32"
)

// TraceKey is the attribute key under which the trace id is logged.
const TraceKey = "trace"

// Lowercase so ids survive case-folding systems (DNS-ish tooling, some
// grep habits) and read well in logs; no padding so they are URL and logfmt
// safe without quoting.
var traceEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewTraceID returns a fresh trace id: 16 lowercase base32 characters
// (80 random bits). At a billion ids the chance of any collision is about
// 4e-7, which is plenty for following one message through a cluster.
func NewTraceID() string {
	var b [10]byte
	// crypto/rand.Read never fails (it crashes the program if the OS cannot
	// supply randomness), so there is no error path to handle.
	rand.Read(b[:])
	return traceEncoding.EncodeToString(b[:])
}

type traceCtxKey struct{}

// WithTrace returns a context carrying trace id id. An empty id leaves ctx
// unchanged.
func WithTrace(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, traceCtxKey{}, id)
}

// TraceFrom returns the trace id carried by ctx, or "".
func TraceFrom(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(traceCtxKey{}).(string)
	return id
}
