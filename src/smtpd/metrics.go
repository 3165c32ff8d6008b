package smtpd

import (
	"errors"

	"github.com/emersion/go-smtp"

	"correo/src/metrics"
	"correo/src/milter"
)

// Metrics are smtpd's counts, taken where it answers: connections taken
// or refused, messages by DATA's reply, and milter verdicts. Labels are
// the listener (mx, relay, mx+relay, submission, submissions) and the
// outcome, never a client, a sender or a recipient.
type Metrics struct {
	sessions   *metrics.Counter
	messages   *metrics.Counter
	sizes      *metrics.Histogram
	milters    *metrics.Counter
	unfiltered *metrics.Counter
}

var listenerNames = []string{"mx", "mx+relay", "relay", "submission", "submissions"}

// NewMetrics declares smtpd's metrics in r; milterNames are the
// profile's [[cluster.milter]] names, the only values the milter label
// takes.
func NewMetrics(r *metrics.Registry, milterNames []string) *Metrics {
	if len(milterNames) == 0 {
		milterNames = []string{"none"}
	}
	return &Metrics{
		sessions: r.Counter("correo_smtpd_sessions_total", "SMTP connections, by listener and outcome: accepted (greeted), refused_limit (421: over max_connections or max_connections_per_client), refused_shutdown (421 while stopping).",
			metrics.L("listener", listenerNames...), metrics.L("result", "accepted", "refused_limit", "refused_shutdown")),
		messages: r.Counter("correo_smtpd_messages_total", "Messages at the end of DATA, by listener and reply: accepted (250, queued), discarded (250, dropped by a milter), tempfail (4xx), rejected (5xx).",
			metrics.L("listener", listenerNames...), metrics.L("result", "accepted", "discarded", "tempfail", "rejected")),
		sizes: r.Histogram("correo_smtpd_message_size_bytes", "Size of the messages queued.", metrics.SizeBuckets, metrics.L("listener", listenerNames...)),
		milters: r.Counter("correo_smtpd_milter_results_total", "Milter chains' verdicts on messages, by chain (the mx role's, for mail from outside; the relay role's, for the cluster's own) and action.",
			metrics.L("chain", "mx", "relay"), metrics.L("result", "accept", "reject", "tempfail", "discard", "quarantine", "error")),
		unfiltered: r.Counter("correo_smtpd_milter_unfiltered_total", "Messages queued without a milter's check because it failed and its on_failure is accept, by milter.",
			metrics.L("milter", milterNames...)),
	}
}

func (m *Metrics) session(listener, result string) {
	if m != nil {
		m.sessions.Inc(listener, result)
	}
}

// message counts DATA's reply; go-smtp takes a 250 as an *SMTPError too.
func (m *Metrics) message(listener string, err error, size int64, discarded bool) {
	if m == nil {
		return
	}
	result := "tempfail"
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		switch {
		case discarded:
			result = "discarded"
		case se.Code/100 == 2:
			result = "accepted"
			m.sizes.Observe(float64(size), listener)
		case se.Code/100 == 5:
			result = "rejected"
		}
	} else if err == nil {
		result = "accepted"
	}
	m.messages.Inc(listener, result)
}

func (m *Metrics) milter(chain string, v milter.Verdict, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.milters.Inc(chain, "error")
		return
	}
	m.milters.Inc(chain, v.Action.String())
	for _, name := range v.Unfiltered {
		m.unfiltered.Inc(name)
	}
}
