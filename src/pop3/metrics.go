package pop3

import "correo/src/metrics"

// Metrics count pop3d's logins by result and by how the password was
// trusted (metrics.Logins).
type Metrics struct {
	logins *metrics.Logins
}

// NewMetrics declares pop3d's metrics in r.
func NewMetrics(r *metrics.Registry) *Metrics {
	return &Metrics{logins: metrics.NewLogins(r, "pop3", "pop3d")}
}

func (m *Metrics) login(result string, ticket bool) {
	if m != nil {
		m.logins.Login(result, ticket)
	}
}
