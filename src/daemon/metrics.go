package daemon

import (
	"fmt"
	"net/netip"
	"strings"

	"correo/src/cluster"
	"correo/src/metrics"
)

// Metrics makes this program's metrics registry and serves it on the
// program's metrics port of the profile ([cluster.ports] metrics plus the
// program's offset), from the socket systemd passed as metrics_<program>
// or one it binds itself, to the cluster network only. The server is
// stopped after the daemon's own servers, so a scrape still works while
// sessions drain. A port already taken fails the start: a daemon that
// cannot be watched should say so at once, not run unseen.
func (e *Env) Metrics() (*metrics.Registry, error) {
	reg := metrics.New(e.Program)
	svc := cluster.MetricsService(e.Program)
	if svc == "" {
		return reg, nil
	}
	ln, err := e.Listen(svc)
	if err != nil {
		first := e.Profile.Port(cluster.SvcMetricsPasswdd)
		return nil, fmt.Errorf("metrics port of %s ([cluster.ports] metrics %d + %d): %w (is another %s running on this host, or does another program use the port?)",
			e.Program, first, e.Profile.Port(svc)-first, err, e.Program)
	}
	srv := metrics.NewServer(reg, []netip.Prefix{e.Profile.NetworkPrefix()}, debugWriter{e})
	e.Go(string(svc), func() error { return srv.Serve(ln) })
	e.last = append(e.last, srv)
	e.Log.Info("serving metrics", "addr", ln.Addr().String())
	return reg, nil
}

// debugWriter puts net/http's complaints about bad requests in the log
// at debug level: a port scanner should not fill the log.
type debugWriter struct{ e *Env }

func (w debugWriter) Write(b []byte) (int, error) {
	w.e.Log.Debug("metrics endpoint", "err", strings.TrimSpace(string(b)))
	return len(b), nil
}
