package mailproxy

import "correo/src/metrics"

// Metrics are mailproxy's counts: logins by protocol and result, and
// the backend failures behind the tempfails users see.
type Metrics struct {
	logins   *metrics.Counter
	backends *metrics.Counter
	sessions *metrics.Counter
}

// NewMetrics declares mailproxy's metrics in r.
func NewMetrics(r *metrics.Registry) *Metrics {
	protocols := metrics.L("protocol", "pop3", "imap")
	return &Metrics{
		logins: r.Counter("correo_mailproxy_logins_total",
			"Logins through the proxy, by protocol and result: ok, failed (wrong password, unknown or disabled user), locked_out, tempfail (passwdd unavailable, or the backend: see correo_mailproxy_backend_errors_total), moving (the mailbox is being moved), in_use (the backend refused it).",
			protocols, metrics.L("result", metrics.LoginResults...)),
		backends: r.Counter("correo_mailproxy_backend_errors_total",
			"Logins the backend could not take, by protocol and reason: no_backend (the user's storage host serves no backend port in the profile), connect (connecting or logging in failed), refused (the backend answered no).",
			protocols, metrics.L("reason", "no_backend", "connect", "refused")),
		sessions: r.Counter("correo_mailproxy_sessions_total", "Client connections, by protocol and outcome: accepted, or refused (over the connection limits, or stopping).",
			protocols, metrics.L("result", "accepted", "refused")),
	}
}

func (m *Metrics) login(protocol, result string) {
	if m != nil {
		m.logins.Inc(protocol, result)
	}
}

func (m *Metrics) backendError(protocol, reason string) {
	if m != nil {
		m.backends.Inc(protocol, reason)
	}
}

func (m *Metrics) session(protocol, result string) {
	if m != nil {
		m.sessions.Inc(protocol, result)
	}
}
