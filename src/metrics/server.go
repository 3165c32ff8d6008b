package metrics

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the metrics are served; every other path is 404.
const Path = "/metrics"

// Server serves one registry over HTTP with net/http's lifecycle (Serve,
// Shutdown, Close), so daemon.Run stops it like the daemon's other
// servers.
type Server struct {
	http  *http.Server
	allow []netip.Prefix
}

// NewServer serves r to peers inside allow (the cluster network; loopback
// is always allowed). The limits are a scraper's needs and no more: a
// scrape is one small GET, so slow or oversized requests are cut short,
// and at most a few scrapes run at once (client_golang answers 503 to
// more), so a flood of requests cannot make the daemon gather its
// metrics without end.
func NewServer(r *Registry, allow []netip.Prefix, errorLog io.Writer) *Server {
	if errorLog == nil {
		errorLog = io.Discard
	}
	el := log.New(errorLog, "", 0)
	h := promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		EnableOpenMetrics:   true,
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            el,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	s := &Server{allow: allow}
	mux := http.NewServeMux()
	mux.Handle(Path, s.guard(h))
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          el,
	}
	return s
}

// guard refuses peers outside the cluster network (the socket unit's
// IPAddressAllow= does the same under systemd; this covers every other
// way of running) and methods other than GET and HEAD.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !s.allowed(req.RemoteAddr) {
			http.Error(w, "metrics are for the cluster network only", http.StatusForbidden)
			return
		}
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, req)
	})
}

func (s *Server) allowed(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	if a.IsLoopback() {
		return true
	}
	for _, p := range s.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Serve serves on ln until Shutdown or Close; then it returns
// net.ErrClosed (http.ErrServerClosed is translated, so daemon.Go treats
// a stopped metrics server like any other).
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if err == http.ErrServerClosed {
		return net.ErrClosed
	}
	return err
}

// Shutdown stops accepting and waits for scrapes in progress.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Close drops every connection.
func (s *Server) Close() error { return s.http.Close() }
