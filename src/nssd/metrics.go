package nssd

import "correo/src/metrics"

// RegisterMetrics exposes the cache's own counts, read at each scrape:
// the answers served from memory, those that went to passwdd, and the
// entries held.
func (s *Server) RegisterMetrics(r *metrics.Registry) {
	c := s.cfg.Cache
	if c == nil {
		return
	}
	r.CounterFunc("correo_nss_cache_hits_total", "NSS lookups answered from nssd's cache (found or not found).",
		func() float64 { h, _ := c.Stats(); return float64(h) })
	r.CounterFunc("correo_nss_cache_misses_total", "NSS lookups that had to ask passwdd.",
		func() float64 { _, m := c.Stats(); return float64(m) })
	r.GaugeFunc("correo_nss_cache_entries", "Answers held in nssd's cache.", func() float64 { return float64(c.Len()) })
}
