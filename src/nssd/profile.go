package nssd

import (
	"log/slog"

	"correo/src/cluster"
	"correo/src/nssshm"
)

// FromProfile builds the server a host's profile describes ([cluster.nss]:
// cache TTLs and size, mail groups) around src. The socket path is
// p.Cluster.NSS.Socket; pass it to Listen. The cache is mirrored into
// nssd.shm beside the socket (package nssshm) for the module to read;
// when that file cannot be made, the module asks over the socket alone
// and a warning says why.
func FromProfile(p *cluster.Profile, src Source, log *slog.Logger) *Server {
	n := p.Cluster.NSS
	var groups []Group
	for _, g := range n.Groups {
		groups = append(groups, Group{Name: g.Name, GID: uint32(g.GID)})
	}
	cache := NewCache(n.PositiveTTL.Std(), n.NegativeTTL.Std(), n.CacheEntries)
	if t, err := nssshm.Open(nssshm.Path(n.Socket), nssshm.BucketsFor(n.CacheEntries)); err != nil {
		log.Warn("no shared cache for the NSS module: every lookup goes over the socket", "err", err)
	} else {
		cache.SetShared(t)
	}
	return New(Config{
		Source: src,
		Cache:  cache,
		Groups: groups,
		Log:    log,
	})
}
