package lmtpd

import "correo/src/metrics"

// Metrics are pdeliveryd's counts, taken where it answers: LMTP sessions
// taken or refused, and one outcome per recipient, the RCPT refusals
// included (they are deliveries that failed for good).
type Metrics struct {
	sessions   *metrics.Counter
	deliveries *metrics.Counter
}

// NewMetrics declares pdeliveryd's LMTP metrics in r.
func NewMetrics(r *metrics.Registry) *Metrics {
	return &Metrics{
		sessions: r.Counter("correo_lmtp_sessions_total", "LMTP connections, by outcome: accepted, or refused (554: a peer outside the cluster network).",
			metrics.L("result", "accepted", "refused")),
		deliveries: r.Counter("correo_lmtp_deliveries_total", "Recipients answered, by result: delivered (250, stored and fsynced), duplicate (250 from the delivery key record, not stored again), tempfail (4xx), permfail (5xx, RCPT refusals included).",
			metrics.L("result", "delivered", "duplicate", "tempfail", "permfail")),
	}
}

func (m *Metrics) session(result string) {
	if m != nil {
		m.sessions.Inc(result)
	}
}

func (m *Metrics) delivery(o *outcome) {
	if m == nil {
		return
	}
	result := "tempfail"
	switch {
	case o.code/100 == 2 && o.repeat:
		result = "duplicate"
	case o.code/100 == 2:
		result = "delivered"
	case o.code/100 == 5:
		result = "permfail"
	}
	m.deliveries.Inc(result)
}
