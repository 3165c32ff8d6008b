package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/keyfile"
	"correo/src/metrics"
	"correo/src/nssproto"
)

// The real binary against a profile whose passwd servers are not running:
// it serves groups from the profile, answers user lookups "unavail"
// (never hangs), refuses a second instance on the same socket, and stops
// cleanly on SIGTERM, removing its socket.
func TestDaemon(t *testing.T) {
	dir := t.TempDir()
	bin := clustertest.Build(t, "nssd", false)
	key := filepath.Join(dir, "cluster.key")
	if _, err := keyfile.Create(key); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "nssd.sock")
	dev, err := os.ReadFile("../../../hosts/dev.toml")
	if err != nil {
		t.Fatal(err)
	}
	prof := strings.NewReplacer(`key_file = ".dev/cluster.key"`, `key_file = "`+key+`"`,
		`socket = ".dev/run/nssd.sock"`, `socket = "`+sock+`"`+"\n[[cluster.nss.groups]]\nname = \"correo\"\ngid = 5000\n[[cluster.nss.groups]]\nname = \"buzones\"\ngid = 5100",
		"udp_port = 17001", "udp_port = 1", // nothing answers there
		`timeout = "2s"`, `timeout = "200ms"`,
		"metrics = 19420", fmt.Sprintf("metrics = %d", clustertest.FreePorts(t, cluster.MetricsPorts))).Replace(string(dev))
	profile := filepath.Join(dir, "p.toml")
	os.WriteFile(profile, []byte(prof), 0o644)

	var stderr clustertest.SyncBuffer
	cmd := exec.Command(bin, "-profile", profile, "-state", filepath.Join(dir, "state"))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("nssd not ready:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o666 {
		t.Fatalf("socket: %v %v", st.Mode(), err)
	}

	ask := func(req nssproto.Request) nssproto.Response {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := nssproto.AppendRequest(nil, req)
		c.Write(b)
		r, err := nssproto.ReadResponse(c, req.Op)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := ask(nssproto.Request{Op: nssproto.OpGetgrnam, Name: "buzones"}); r.Status != nssproto.StatusFound || r.Groups[0].GID != 5100 {
		t.Errorf("getgrnam buzones: %+v", r)
	}
	if r := ask(nssproto.Request{Op: nssproto.OpGetpwnam, Name: "juan"}); r.Status != nssproto.StatusUnavail {
		t.Errorf("getpwnam with no passwdd: %v, want unavail", r.Status)
	}

	// The cache's counts move with the lookups: two for buzones (a
	// group from the profile, no cache) and juan, then juan again.
	p, err := cluster.Load(profile, cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	maddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p.Port(cluster.SvcMetricsNSSD))).String()
	f, err := metrics.Scrape(context.Background(), maddr)
	if err != nil {
		t.Fatal(err)
	}
	misses, _ := f.Value("correo_nss_cache_misses_total")
	ask(nssproto.Request{Op: nssproto.OpGetpwnam, Name: "juan"})
	f, err = metrics.Scrape(context.Background(), maddr)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := f.Value("correo_nss_cache_misses_total"); m != misses+1 || misses < 1 {
		t.Errorf("cache misses %v then %v, want at least 1 then one more", misses, m)
	}
	for name, typ := range map[string]dto.MetricType{"correo_nss_cache_hits_total": dto.MetricType_COUNTER,
		"correo_nss_cache_entries": dto.MetricType_GAUGE, "correo_build_info": dto.MetricType_GAUGE} {
		if f[name] == nil || f[name].GetType() != typ {
			t.Errorf("%s: %v, want a %v", name, f[name], typ)
		}
	}

	// A second nssd with its own socket but the same metrics port fails
	// at start, and says why.
	other := strings.Replace(prof, sock, filepath.Join(dir, "run", "other.sock"), 1)
	os.WriteFile(filepath.Join(dir, "other.toml"), []byte(other), 0o644)
	out, err := exec.Command(bin, "-profile", filepath.Join(dir, "other.toml"), "-state", filepath.Join(dir, "state2")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "metrics port of nssd") || !strings.Contains(string(out), "address already in use") {
		t.Errorf("nssd with its metrics port taken: %v\n%s", err, out)
	}

	// A second nssd on the same socket refuses to start.
	out, err = exec.Command(bin, "-profile", profile, "-state", filepath.Join(dir, "state")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another nssd") {
		t.Errorf("second nssd: %v\n%s", err, out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nssd did not stop on SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after a clean stop: %v", err)
	}
}
