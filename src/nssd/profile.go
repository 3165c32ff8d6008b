package nssd

import (
	"log/slog"

	"correo/src/cluster"
)

// FromProfile builds the server a host's profile describes ([cluster.nss]:
// cache TTLs and size, mail groups) around src. The socket path is
// p.Cluster.NSS.Socket; pass it to Listen.
func FromProfile(p *cluster.Profile, src Source, log *slog.Logger) *Server {
	n := p.Cluster.NSS
	var groups []Group
	for _, g := range n.Groups {
		groups = append(groups, Group{Name: g.Name, GID: uint32(g.GID)})
	}
	return New(Config{
		Source: src,
		Cache:  NewCache(n.PositiveTTL.Std(), n.NegativeTTL.Std(), n.CacheEntries),
		Groups: groups,
		Log:    log,
	})
}
