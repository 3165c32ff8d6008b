package imap

import "correo/src/metrics"

// Metrics count imapd's logins by result and by how the password was
// trusted (metrics.Logins).
type Metrics struct {
	logins *metrics.Logins
}

// NewMetrics declares imapd's metrics in r.
func NewMetrics(r *metrics.Registry) *Metrics {
	return &Metrics{logins: metrics.NewLogins(r, "imap", "imapd")}
}

func (m *Metrics) login(result string, ticket bool) {
	if m != nil {
		m.logins.Login(result, ticket)
	}
}
