package logging

import (
	"context"
	"encoding"
	"fmt"
	"log/slog"
	"time"
)

// kv is one flattened attribute: groups are already folded into a dotted key
// and the value already rendered, because every output format here (logfmt,
// journal fields) is flat text.
type kv struct {
	key, val string
}

// event is a record after flattening, handed to a sink's formatter.
type event struct {
	time  time.Time
	level slog.Level
	msg   string
	trace string
	attrs []kv
}

// emitter turns an event into output. It must not block for long and must
// not panic; network emitters only enqueue.
type emitter interface {
	emit(ev *event)
}

// handler is the single slog.Handler behind every target. Doing the
// flattening once here keeps groups, WithAttrs and trace handling identical
// across stderr, journald and syslog.
type handler struct {
	out    emitter
	level  slog.Leveler
	attrs  []kv   // from WithAttrs, already prefixed
	prefix string // open groups as "a.b."
	now    func() time.Time
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = make([]kv, len(h.attrs), len(h.attrs)+len(as))
	copy(h2.attrs, h.attrs)
	for _, a := range as {
		h2.attrs = appendAttr(h2.attrs, h.prefix, a)
	}
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

// Handle never returns an error: a logging call site has nothing sensible to
// do with one, and the contract of this package is that logging cannot fail
// a daemon. Panics from user values (a nil *T with a String method, say) are
// contained here for the same reason.
func (h *handler) Handle(ctx context.Context, r slog.Record) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = nil
		}
	}()
	ev := event{
		time:  r.Time,
		level: r.Level,
		msg:   r.Message,
		trace: TraceFrom(ctx),
		attrs: make([]kv, len(h.attrs), len(h.attrs)+r.NumAttrs()),
	}
	if h.now != nil {
		ev.time = h.now()
	}
	if ev.time.IsZero() {
		ev.time = time.Now()
	}
	copy(ev.attrs, h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		ev.attrs = appendAttr(ev.attrs, h.prefix, a)
		return true
	})
	promoteTrace(&ev)
	h.out.emit(&ev)
	return nil
}

// promoteTrace lets a logger built with l.With("trace", id) behave like a
// context carrying id, and avoids logging the same id twice.
func promoteTrace(ev *event) {
	for i, a := range ev.attrs {
		if a.key != TraceKey {
			continue
		}
		if ev.trace == "" {
			ev.trace = a.val
		}
		if ev.trace == a.val {
			ev.attrs = append(ev.attrs[:i:i], ev.attrs[i+1:]...)
		}
		return
	}
}

func appendAttr(dst []kv, prefix string, a slog.Attr) []kv {
	a.Value = a.Value.Resolve()
	// slog's rule: an Attr with empty key and zero value is ignored. Not
	// a.Equal(slog.Attr{}): Value.Equal panics on uncomparable Any values.
	if a.Key == "" && a.Value.Kind() == slog.KindAny && a.Value.Any() == nil {
		return dst
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, g := range a.Value.Group() {
			dst = appendAttr(dst, p, g)
		}
		return dst
	}
	return append(dst, kv{prefix + a.Key, valueString(a.Value)})
}

func valueString(v slog.Value) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("!PANIC: %v", p)
		}
	}()
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case nil:
			return "<nil>"
		case error:
			return x.Error()
		case encoding.TextMarshaler:
			b, err := x.MarshalText()
			if err != nil {
				return "!ERROR:" + err.Error()
			}
			return string(b)
		case []byte:
			return string(x)
		default:
			return fmt.Sprintf("%+v", x)
		}
	default:
		return v.String()
	}
}
