package pwserver

import (
	"time"

	"correo/src/metrics"
	"correo/src/pwproto"
)

// Metrics are passwdd's figures for an operator: lookups and logins by
// result with their latency, the verified-credentials cache's hits and
// misses (hit ratio = hits / (hits + misses)), and datagrams dropped
// unanswered. Labels are the operation and the answer's status, never a
// user or a client.
type Metrics struct {
	lookups    *metrics.Counter
	lookupTime *metrics.Histogram
	auths      *metrics.Counter
	authTime   *metrics.Histogram
	cache      *metrics.Counter
	dropped    *metrics.Counter
}

var (
	lookupOps = []string{"lookup-name", "lookup-uid", "lookup-addr", "enumerate", "ping"}
	statuses  = []string{"ok", "not-found", "denied", "locked-out", "temp-fail", "bad-request"}
	// The reasons Server.dropped and refuseAuth give.
	dropReasons = []string{"short", "oversize", "magic", "version", "unknown_key", "auth", "direction", "stale", "replay",
		"auth_retransmit", "auth_overload", "auth_queue_full", "auth_expired"}
)

// NewMetrics declares passwdd's metrics in r.
func NewMetrics(r *metrics.Registry) *Metrics {
	return &Metrics{
		lookups: r.Counter("correo_passwd_lookups_total", "Read queries answered (user by name, uid or address; enumeration pages; pings), by operation and answer.",
			metrics.L("op", lookupOps...), metrics.L("result", statuses...)),
		lookupTime: r.Histogram("correo_passwd_lookup_duration_seconds", "Time from a query's arrival to its answer's send.",
			metrics.LatencyBuckets, metrics.L("op", lookupOps...)),
		auths: r.Counter("correo_passwd_verifications_total", "Logins (password verifications) answered, by answer: ok, denied, locked-out, temp-fail (busy or not ready).",
			metrics.L("result", statuses...)),
		authTime: r.Histogram("correo_passwd_verification_duration_seconds", "Time from a login's arrival to its answer's send, queueing for a verifier included.",
			metrics.LatencyBuckets, metrics.L("result", statuses...)),
		cache: r.Counter("correo_passwd_credential_cache_total", "Logins looked up in the verified-credentials cache: hit (no hash check) or miss (a hash check followed).",
			metrics.L("result", "hit", "miss")),
		dropped: r.Counter("correo_passwd_dropped_total", "Datagrams dropped without an answer, or logins refused for load, by reason.",
			metrics.L("reason", dropReasons...)),
	}
}

func (m *Metrics) lookup(op pwproto.Op, st pwproto.Status, d time.Duration) {
	if m != nil {
		m.lookups.Inc(op.String(), st.String())
		m.lookupTime.Observe(d.Seconds(), op.String())
	}
}

func (m *Metrics) auth(st pwproto.Status, d time.Duration) {
	if m != nil {
		m.auths.Inc(st.String())
		m.authTime.Observe(d.Seconds(), st.String())
	}
}

func (m *Metrics) cacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.cache.Inc("hit")
	} else {
		m.cache.Inc("miss")
	}
}

func (m *Metrics) drop(reason string) {
	if m != nil {
		m.dropped.Inc(reason)
	}
}
