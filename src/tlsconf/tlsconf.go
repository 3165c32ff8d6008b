// Package tlsconf gives daemons their TLS server configuration from the
// host profile ([host.tls] cert and key, PEM). On a loopback cluster (the
// dev profile) a missing pair is created as a self-signed certificate, so
// `make dev` offers STARTTLS and POP3S with no set-up; anywhere else a
// missing file is an error naming it, because a real cluster's clients
// must see a certificate the operator chose.
package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"correo/src/cluster"
)

// ErrNoTLS means the host has no [host.tls] section.
var ErrNoTLS = errors.New("no [host.tls] cert and key in the profile")

// ServerConfig loads the host's certificate. Callers that can run without
// TLS (a dev cluster without [host.tls]) check for ErrNoTLS. The config
// serves the certificate through GetCertificate, so Certs.Reload (see
// Load) can replace it without touching the servers that hold the config.
func ServerConfig(p *cluster.Profile, h *cluster.Host) (*tls.Config, error) {
	c, err := Load(p, h)
	if err != nil {
		return nil, err
	}
	return c.Config(), nil
}

// Certs holds a host's certificate and can load it again from the same
// files: certificates are renewed (ACME, an operator's CA) while daemons
// keep running, and a TLS handshake after Reload gets the new one.
type Certs struct {
	host, cert, key string
	current         atomic.Pointer[tls.Certificate]
	config          *tls.Config
}

// Load reads the host's certificate and key ([host.tls]); on a loopback
// cluster a missing pair is created first (see the package comment).
func Load(p *cluster.Profile, h *cluster.Host) (*Certs, error) {
	if h.TLS == nil || h.TLS.Cert == "" {
		return nil, ErrNoTLS
	}
	_, certErr := os.Stat(h.TLS.Cert)
	_, keyErr := os.Stat(h.TLS.Key)
	if errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist) && p.NetworkPrefix().Addr().IsLoopback() {
		if err := SelfSigned(h.TLS.Cert, h.TLS.Key, dnsNames(p, h), []net.IP{h.Addr().AsSlice()}); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	c := &Certs{host: h.Name, cert: h.TLS.Cert, key: h.TLS.Key}
	// Several dev daemons may create the pair at the same moment: the
	// loser finds it being written and waits briefly for the winner.
	var err error
	for i := 0; i < 40; i++ {
		if err = c.Reload(); !errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	c.config = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.current.Load(), nil
		},
	}
	return c, nil
}

// Config is the server configuration that always offers the certificate
// loaded last.
func (c *Certs) Config() *tls.Config { return c.config }

// Reload reads the certificate and key files again. On an error the
// certificate loaded before stays in use, so a half-copied renewal never
// takes TLS down.
func (c *Certs) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("host %s TLS certificate (%s, %s): %w", c.host, c.cert, c.key, err)
	}
	c.current.Store(&cert)
	return nil
}

// Leaf is the certificate in use, parsed (for logs and tests).
func (c *Certs) Leaf() *x509.Certificate {
	cert := c.current.Load()
	if cert.Leaf != nil {
		return cert.Leaf
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	return leaf
}

// dnsNames are the names clients use for a host: its own, and the pools
// it serves.
func dnsNames(p *cluster.Profile, h *cluster.Host) []string {
	zone := p.Cluster.DNS.Zone
	names := []string{h.Name + "." + zone, "localhost"}
	for _, pool := range []struct {
		name string
		role cluster.Role
	}{{"mx", cluster.RoleMX}, {"relay", cluster.RoleRelay}, {"pop", cluster.RoleMailProxy}} {
		if h.HasRole(pool.role) {
			names = append(names, pool.name+"."+zone)
		}
	}
	return names
}

// SelfSigned writes a new ECDSA P-256 certificate valid for a year for the
// given names, and its key with mode 0600. Existing files are not
// overwritten.
func SelfSigned(certPath, keyPath string, names []string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"correo dev cluster"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// writeNew publishes a complete file or nothing: it is written under a
// temporary name and linked into place, which fails (os.ErrExist) when
// another process got there first — no reader ever sees half a key.
func writeNew(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Link(tmp, path)
}
