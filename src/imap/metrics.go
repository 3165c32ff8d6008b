package imap

import "correo/src/metrics"

// Metrics count imapd's logins by result (metrics.LoginResults), and
// whether the proxy's login ticket spared the password check.
type Metrics struct {
	logins *metrics.Counter
}

// NewMetrics declares imapd's metrics in r.
func NewMetrics(r *metrics.Registry) *Metrics {
	return &Metrics{logins: r.Counter("correo_imap_logins_total",
		"Logins to imapd, by result (ok, failed, locked_out, tempfail: passwdd unavailable, in_use, moving: the mailbox is being moved, wrong_host: stored elsewhere, error) and by how the password was trusted (ticket: the proxy's login ticket; password: checked with passwdd).",
		metrics.L("result", metrics.LoginResults...), metrics.L("auth", "ticket", "password"))}
}

func (m *Metrics) login(result string, ticket bool) {
	if m == nil {
		return
	}
	auth := "password"
	if ticket {
		auth = "ticket"
	}
	m.logins.Inc(metrics.LoginResult(result), auth)
}
