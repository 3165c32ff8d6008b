package main

import (
	"context"
	"errors"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/metrics"
	"correo/src/pwadmin"
	"correo/src/pwclient"
)

// passwdd counts what it answers: lookups and logins by result, with
// their latencies, and the credentials cache's hits and misses. The
// figures are read the way Prometheus reads them, over HTTP.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.start("pw1")
	hash, err := directory.HashPassword("s3cret", 4)
	if err != nil {
		t.Fatal(err)
	}
	adm := e.admin()
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: "juan", UID: 20001, GID: 5000, Hash: hash}}); err != nil {
		t.Fatal(err)
	}
	adm.Close()
	addr, err := e.p.Listen("pw1", cluster.SvcMetricsPasswdd)
	if err != nil {
		t.Fatal(err)
	}
	scrape := func() metrics.Families {
		t.Helper()
		f, err := metrics.Scrape(context.Background(), addr.String())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	before := scrape()
	for name, typ := range map[string]dto.MetricType{
		"correo_passwd_lookups_total":                 dto.MetricType_COUNTER,
		"correo_passwd_lookup_duration_seconds":       dto.MetricType_HISTOGRAM,
		"correo_passwd_verifications_total":           dto.MetricType_COUNTER,
		"correo_passwd_verification_duration_seconds": dto.MetricType_HISTOGRAM,
		"correo_passwd_credential_cache_total":        dto.MetricType_COUNTER,
		"correo_passwd_dropped_total":                 dto.MetricType_COUNTER,
		"correo_passwd_users":                         dto.MetricType_GAUGE,
	} {
		if mf := before[name]; mf == nil || mf.GetType() != typ {
			t.Errorf("%s: %v, want a %v", name, mf, typ)
		}
	}

	pc, err := pwclient.FromProfile(e.p, e.ring, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx := context.Background()
	if _, err := pc.LookupName(ctx, "juan"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.LookupName(ctx, "nadie"); !errors.Is(err, pwclient.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := pc.Authenticate(ctx, "juan", "wrong", "192.0.2.1"); !errors.Is(err, pwclient.ErrDenied) {
		t.Fatal(err)
	}
	for range 2 { // a hash check, then the cache
		if _, err := pc.Authenticate(ctx, "juan", "s3cret", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	after := scrape()
	for _, c := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"correo_passwd_lookups_total", []string{"op", "lookup-name", "result", "ok"}, 1},
		{"correo_passwd_lookups_total", []string{"op", "lookup-name", "result", "not-found"}, 1},
		{"correo_passwd_lookup_duration_seconds", []string{"op", "lookup-name"}, 2},
		{"correo_passwd_verifications_total", []string{"result", "ok"}, 2},
		{"correo_passwd_verifications_total", []string{"result", "denied"}, 1},
		{"correo_passwd_verification_duration_seconds", nil, 3},
		{"correo_passwd_credential_cache_total", []string{"result", "hit"}, 1},
		{"correo_passwd_credential_cache_total", []string{"result", "miss"}, 2},
		{"correo_passwd_users", nil, 0},
	} {
		b, _ := before.Value(c.name, c.labels...)
		a, ok := after.Value(c.name, c.labels...)
		if !ok || a-b != c.delta {
			t.Errorf("%s%v: %v → %v, want +%v", c.name, c.labels, b, a, c.delta)
		}
	}
	if u, _ := after.Value("correo_passwd_users"); u != 1 {
		t.Errorf("correo_passwd_users = %v, want 1", u)
	}
	// No label carries a user name or an address.
	for _, mf := range after {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v := lp.GetValue(); v == "juan" || v == "nadie" || v == "192.0.2.1" {
					t.Errorf("%s has label %s=%q", mf.GetName(), lp.GetName(), v)
				}
			}
		}
	}
}
