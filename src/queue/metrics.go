package queue

import (
	"time"

	"correo/src/metrics"
)

// Metrics count the queue's outcomes, one per recipient attempted, where
// the queue decides them (logOutcomes), and show its depth and the age of
// its oldest message at each scrape.
type Metrics struct {
	deliveries *metrics.Counter
	attempts   *metrics.Histogram
}

// NewMetrics declares the queue's counters in r. Depth and age are read
// from a Queue: call Queue.RegisterMetrics once it is open.
func NewMetrics(r *metrics.Registry) *Metrics {
	return &Metrics{
		deliveries: r.Counter("correo_queue_deliveries_total",
			"Recipients attempted from smtpd's queue, by route (local: LMTP to a storage host; remote: another domain's MX) and outcome: delivered, deferred (a retry follows), bounced (a DSN goes to the sender), expired (bounced after the queue lifetime).",
			metrics.L("route", string(RouteLocal), string(RouteRemote)), metrics.L("result", "delivered", "deferred", "bounced", "expired")),
		attempts: r.Histogram("correo_queue_attempt_duration_seconds", "Time one delivery attempt of a message took, by route.",
			metrics.LatencyBuckets, metrics.L("route", string(RouteLocal), string(RouteRemote))),
	}
}

// RegisterMetrics exposes the queue's depth and its oldest message's age.
func (q *Queue) RegisterMetrics(r *metrics.Registry) {
	r.GaugeFunc("correo_queue_messages", "Messages in smtpd's queue (waiting, being delivered or deferred).", func() float64 { return float64(q.Len()) })
	r.GaugeFunc("correo_queue_oldest_message_age_seconds", "Age of the oldest message in smtpd's queue; 0 when the queue is empty.", func() float64 {
		oldest := q.oldest()
		if oldest.IsZero() {
			return 0
		}
		return q.cfg.Now().Sub(oldest).Seconds()
	})
}

// oldest is when the oldest queued message was accepted, or zero.
func (q *Queue) oldest() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	var t time.Time
	for _, e := range q.entries {
		if c := e.env.Created; t.IsZero() || c.Before(t) {
			t = c
		}
	}
	return t
}

func (m *Metrics) outcome(r *Recipient) {
	if m == nil {
		return
	}
	result := "delivered"
	switch {
	case r.State == Failed && r.Expired:
		result = "expired"
	case r.State == Failed:
		result = "bounced"
	case r.State == Pending:
		result = "deferred"
	}
	m.deliveries.Inc(string(r.Route), result)
}

func (m *Metrics) attempt(route Route, d time.Duration) {
	if m != nil {
		m.attempts.Observe(d.Seconds(), string(route))
	}
}
