package main

import (
	"crypto/tls"
	"errors"
	"time"

	"correo/src/cluster"
	"correo/src/tlsconf"
)

// ServerTLS is the host's TLS configuration, or nil when the profile gives
// the host none (STLS is then not offered). On the dev cluster several
// daemons of one host may create the self-signed pair at the same moment;
// one wins and the others load what it wrote, hence one retry.
func ServerTLS(p *cluster.Profile, h *cluster.Host) (*tls.Config, error) {
	cfg, err := tlsconf.ServerConfig(p, h)
	if errors.Is(err, tlsconf.ErrNoTLS) {
		return nil, nil
	}
	if err != nil {
		time.Sleep(300 * time.Millisecond)
		cfg, err = tlsconf.ServerConfig(p, h)
	}
	return cfg, err
}
