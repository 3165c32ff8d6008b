package logging

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"correo/internal/testutil"
)

// rsyslogConf is a loghost configuration: UDP and TCP inputs on loopback,
// everything written through a template that exposes the RFC 5424 fields we
// care about. No imuxsock/imklog: a private instance must not take over the
// machine's /dev/log or kernel log.
const rsyslogConf = `global(workDirectory="%[1]s" maxMessageSize="8k")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="%[2]d")
input(type="imtcp" address="127.0.0.1" port="%[3]d")
template(name="correo" type="string"
         string="%%HOSTNAME%% %%APP-NAME%% %%msgid%% %%structured-data%% %%msg%%\n")
*.* action(type="omfile" file="%[1]s/out.log" template="correo")
`

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRsyslog runs a private rsyslogd and returns its UDP and TCP
// addresses and the path of its output file.
func startRsyslog(t *testing.T) (udpAddr, tcpAddr, out string) {
	bin := testutil.NeedCommand(t, "rsyslogd")
	dir := t.TempDir()
	udpPort, tcpPort := freePort(t, "udp"), freePort(t, "tcp")
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, rsyslogConf, dir, udpPort, tcpPort), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", logs.String())
		}
	})
	tcpAddr = fmt.Sprintf("127.0.0.1:%d", tcpPort)
	waitFor(t, 15*time.Second, "rsyslogd to listen on "+tcpAddr, func() bool {
		select {
		case <-exited:
			t.Fatalf("rsyslogd exited early:\n%s", logs.String())
		default:
		}
		c, err := net.DialTimeout("tcp", tcpAddr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return fmt.Sprintf("127.0.0.1:%d", udpPort), tcpAddr, filepath.Join(dir, "out.log")
}

func fileHas(path, s string) bool {
	b, _ := os.ReadFile(path)
	return bytes.Contains(b, []byte(s))
}

func TestRsyslogReceives(t *testing.T) {
	udpAddr, tcpAddr, out := startRsyslog(t)

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr := udpAddr
			if network == "tcp" {
				addr = tcpAddr
			}
			l, err := New(Config{Target: TargetSyslog, Network: network, Address: addr, AppName: "smtpd", Hostname: "mx1"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()

			// imudp may bind a moment after imtcp, and UDP gives no error
			// when nobody listens: probe until one datagram lands.
			probe := "probe-" + network
			end := time.Now().Add(15 * time.Second)
			for !fileHas(out, probe) {
				if time.Now().After(end) {
					t.Fatalf("no %s probe reached rsyslogd", network)
				}
				l.Info(probe)
				time.Sleep(100 * time.Millisecond)
			}

			trace := NewTraceID()
			ctx := WithTrace(context.Background(), trace)
			l.InfoContext(ctx, "delivered via "+network, "msgid", "DELIVER", "rcpt", "juan@example.org",
				"subject", `Hola "ñandú" = sí`, "body", "line1\nline2")
			l.With(TraceKey, `tricky"]\`).Warn("sd escape " + network)

			want := []string{
				"mx1 smtpd DELIVER [correo@32473 trace=\"" + trace + "\"] " +
					`msg="delivered via ` + network + `" rcpt=juan@example.org subject="Hola \"ñandú\" = sí" body="line1\nline2"`,
				`mx1 smtpd - [correo@32473 trace="tricky\"\]\\"] msg="sd escape ` + network + `"`,
			}
			waitFor(t, 15*time.Second, "records in rsyslog output", func() bool {
				return fileHas(out, want[0]) && fileHas(out, want[1])
			})
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if l.Dropped() != 0 {
				t.Errorf("Dropped = %d", l.Dropped())
			}
		})
	}
}
