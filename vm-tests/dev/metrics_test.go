package dev

import (
	"context"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"correo/src/cluster"
	"correo/src/metrics"
)

const (
	counter   = dto.MetricType_COUNTER
	gauge     = dto.MetricType_GAUGE
	histogram = dto.MetricType_HISTOGRAM
)

// wantMetrics is what each daemon of the dev cluster must expose, by
// name and type (README, "Metrics").
var wantMetrics = map[cluster.Service]map[string]dto.MetricType{
	cluster.SvcMetricsPasswdd: {
		"correo_passwd_lookups_total": counter, "correo_passwd_lookup_duration_seconds": histogram,
		"correo_passwd_verifications_total": counter, "correo_passwd_verification_duration_seconds": histogram,
		"correo_passwd_credential_cache_total": counter, "correo_passwd_dropped_total": counter, "correo_passwd_users": gauge,
	},
	cluster.SvcMetricsNSSD: {
		"correo_nss_cache_hits_total": counter, "correo_nss_cache_misses_total": counter, "correo_nss_cache_entries": gauge,
	},
	cluster.SvcMetricsSMTPD: {
		"correo_smtpd_sessions_total": counter, "correo_smtpd_messages_total": counter, "correo_smtpd_message_size_bytes": histogram,
		"correo_smtpd_milter_results_total": counter, "correo_smtpd_milter_unfiltered_total": counter,
		"correo_queue_deliveries_total": counter, "correo_queue_attempt_duration_seconds": histogram,
		"correo_queue_messages": gauge, "correo_queue_oldest_message_age_seconds": gauge,
	},
	cluster.SvcMetricsPdeliveryd: {
		"correo_lmtp_sessions_total": counter, "correo_lmtp_deliveries_total": counter,
	},
	cluster.SvcMetricsPOP3D:     {"correo_pop3_logins_total": counter},
	cluster.SvcMetricsIMAPD:     {"correo_imap_logins_total": counter},
	cluster.SvcMetricsMailproxy: {"correo_mailproxy_logins_total": counter, "correo_mailproxy_backend_errors_total": counter, "correo_mailproxy_sessions_total": counter},
}

// checkMetrics scrapes every daemon of the dev cluster on its metrics
// port of the profile, checks each expected name and type, and that the
// traffic the test sent (one message in, POP and IMAP logins) was
// counted where it happened.
func checkMetrics(t *testing.T, profilePath string) {
	t.Helper()
	p, err := cluster.Load(profilePath, cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	scraped := map[cluster.Service]metrics.Families{}
	for _, svc := range cluster.MetricsServices() {
		addr, err := p.Listen("dev", svc)
		if err != nil {
			t.Fatal(err)
		}
		f, err := metrics.Scrape(ctx, addr.String())
		if err != nil {
			t.Errorf("%s: %v", svc, err)
			continue
		}
		scraped[svc] = f
		program := strings.TrimPrefix(string(svc), "metrics_")
		if v, _ := f.Value("correo_build_info", "program", program); v != 1 {
			t.Errorf("%s (%s): correo_build_info{program=%q} = %v: another program on this port?", svc, addr, program, v)
		}
		for name, typ := range wantMetrics[svc] {
			if mf := f[name]; mf == nil {
				t.Errorf("%s: no %s", svc, name)
			} else if mf.GetType() != typ {
				t.Errorf("%s: %s is a %v, want a %v", svc, name, mf.GetType(), typ)
			}
		}
		for name, mf := range f {
			if strings.HasPrefix(name, "correo_") && mf.GetType() == counter && !strings.HasSuffix(name, "_total") {
				t.Errorf("%s: counter %s does not end in _total", svc, name)
			}
		}
	}
	for _, c := range []struct {
		svc    cluster.Service
		name   string
		labels []string
	}{
		{cluster.SvcMetricsSMTPD, "correo_smtpd_messages_total", []string{"result", "accepted"}},
		{cluster.SvcMetricsSMTPD, "correo_queue_deliveries_total", []string{"route", "local", "result", "delivered"}},
		{cluster.SvcMetricsPdeliveryd, "correo_lmtp_deliveries_total", []string{"result", "delivered"}},
		{cluster.SvcMetricsPasswdd, "correo_passwd_verifications_total", []string{"result", "ok"}},
		{cluster.SvcMetricsPasswdd, "correo_passwd_credential_cache_total", []string{"result", "hit"}},
		{cluster.SvcMetricsMailproxy, "correo_mailproxy_logins_total", []string{"protocol", "pop3", "result", "ok"}},
		{cluster.SvcMetricsPOP3D, "correo_pop3_logins_total", []string{"result", "ok", "auth", "ticket"}},
		{cluster.SvcMetricsIMAPD, "correo_imap_logins_total", []string{"result", "ok", "auth", "password"}},
	} {
		f := scraped[c.svc]
		if f == nil {
			continue
		}
		if v, ok := f.Value(c.name, c.labels...); !ok || v < 1 {
			t.Errorf("%s: %s%v = %v, want at least 1 after the test's traffic", c.svc, c.name, c.labels, v)
		}
	}
}
