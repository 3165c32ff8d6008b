package smtpd

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/queue"
)

// TestReceivedHeader: the trace header names the queue and trace ids and
// the protocol; the authenticated user appears only when the profile
// says so.
func TestReceivedHeader(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		expose bool
		user   string
		tls    bool
		want   []string
		absent string
	}{
		{"mx", false, "", false, []string{"with ESMTP id Q1", "(trace T1)", "for <ana@correo.test>", "X-Correo-Trace: T1\r\n"}, "authenticated"},
		{"submission hides the user", false, "juan", true, []string{"with ESMTPSA id Q1"}, "juan"},
		{"submission shows the user when asked", true, "juan", true, []string{"with ESMTPSA id Q1", "(authenticated as juan)"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &cluster.Host{Name: "relay1", SMTPD: &cluster.SMTPD{ExposeAuthUser: tt.expose}}
			s := &Server{cfg: Config{Host: h}, name: "relay1.correo.test"}
			ss := &session{s: s, info: Session{Helo: "client.example", Client: netip.MustParseAddr("192.0.2.7"), TLS: tt.tls, User: tt.user},
				rcpts: []queue.Recipient{{Addr: "ana@correo.test"}}}
			got := s.received(ss, "Q1", "T1", "", now)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("header lacks %q:\n%s", w, got)
				}
			}
			if tt.absent != "" && strings.Contains(got, tt.absent) {
				t.Errorf("header contains %q:\n%s", tt.absent, got)
			}
			if !strings.HasPrefix(got, "Received: from client.example ([192.0.2.7])\r\n\tby relay1.correo.test") {
				t.Errorf("header start:\n%s", got)
			}
		})
	}
}
