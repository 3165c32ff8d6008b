package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"correo/src/cluster"
)

func TestDevSelfSigned(t *testing.T) {
	p, err := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := p.Host("dev")
	dir := t.TempDir()
	h.TLS = &cluster.TLS{Cert: filepath.Join(dir, "tls", "dev.crt"), Key: filepath.Join(dir, "tls", "dev.key")}
	cfg, err := ServerConfig(p, h)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(served(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("mx.correo.test"); err != nil {
		t.Errorf("dev certificate does not cover the mx pool: %v", err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("dev certificate does not cover the host address: %v", err)
	}
	if st, _ := os.Stat(h.TLS.Key); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %04o", st.Mode().Perm())
	}
	// The second start reuses the pair.
	cfg2, err := ServerConfig(p, h)
	if err != nil || string(served(t, cfg2)) != string(served(t, cfg)) {
		t.Fatalf("second load made a new certificate or failed: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Error("TLS below 1.2 allowed")
	}
}

func TestRealClusterNeedsFiles(t *testing.T) {
	p, err := cluster.Load("../../hosts/example.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := p.Host("mx1")
	dir := t.TempDir()
	h.TLS = &cluster.TLS{Cert: filepath.Join(dir, "mx1.crt"), Key: filepath.Join(dir, "mx1.key")}
	if _, err := ServerConfig(p, h); err == nil || !strings.Contains(err.Error(), "mx1.crt") {
		t.Fatalf("missing certificate on a real cluster: %v", err)
	}
	if _, err := os.Stat(h.TLS.Cert); err == nil {
		t.Fatal("a self-signed certificate was made for a real cluster")
	}
	h.TLS = nil
	if _, err := ServerConfig(p, h); !errors.Is(err, ErrNoTLS) {
		t.Fatalf("no [host.tls]: %v", err)
	}
}

// TestConcurrentCreation starts several "daemons" at once on a dev
// profile: they all end up with the same, complete pair.
func TestConcurrentCreation(t *testing.T) {
	p, _ := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "dev.crt"), filepath.Join(dir, "dev.key")
	errs := make(chan error, 8)
	certs := make(chan []byte, 8)
	for i := 0; i < 8; i++ {
		go func() {
			h, _ := p.Host("dev")
			hc := *h
			hc.TLS = &cluster.TLS{Cert: cert, Key: key}
			cfg, err := ServerConfig(p, &hc)
			if err != nil {
				errs <- err
				return
			}
			errs <- nil
			c, _ := cfg.GetCertificate(&tls.ClientHelloInfo{})
			certs <- c.Certificate[0]
		}()
	}
	var first []byte
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 8; i++ {
		c := <-certs
		if first == nil {
			first = c
		} else if string(c) != string(first) {
			t.Fatal("two daemons loaded different certificates")
		}
	}
}

// served is the DER certificate a handshake without SNI gets.
func served(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	if len(cfg.Certificates) > 0 {
		// Go prefers Certificates over GetCertificate when the client
		// sends no SNI: a reload would not reach those clients.
		t.Fatal("the config has static Certificates")
	}
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil {
		t.Fatalf("GetCertificate: %v, %v", c, err)
	}
	return c.Certificate[0]
}

// TestReload: a renewed certificate is served after Reload without a new
// config; a broken one is refused and the old one kept.
func TestReload(t *testing.T) {
	p, _ := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	h, _ := p.Host("dev")
	dir := t.TempDir()
	h.TLS = &cluster.TLS{Cert: filepath.Join(dir, "dev.crt"), Key: filepath.Join(dir, "dev.key")}
	certs, err := Load(p, h)
	if err != nil {
		t.Fatal(err)
	}
	cfg := certs.Config()
	before := served(t, cfg)
	os.Remove(h.TLS.Cert)
	os.Remove(h.TLS.Key)
	if err := SelfSigned(h.TLS.Cert, h.TLS.Key, []string{"renewed.correo.test"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	after := served(t, cfg)
	if string(after) == string(before) {
		t.Fatal("Reload kept the old certificate")
	}
	if certs.Leaf().Subject.CommonName != "renewed.correo.test" {
		t.Fatalf("leaf after reload: %s", certs.Leaf().Subject.CommonName)
	}
	os.WriteFile(h.TLS.Cert, []byte("half a certificate"), 0o644)
	if err := certs.Reload(); err == nil || !strings.Contains(err.Error(), "dev.crt") {
		t.Fatalf("reloading a broken certificate: %v", err)
	}
	if string(served(t, cfg)) != string(after) {
		t.Fatal("a failed reload changed the served certificate")
	}
}
