package milter

import (
	"bufio"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
)

// A well-formed message, sent from where its domain's SPF record says.
var cleanMsg = "Received: from client.example ([192.0.2.7])\r\n" +
	"\tby mx1.correo.test (correo smtpd) with ESMTP id Q1\r\n" +
	"\t(trace T1); Mon, 1 Jan 2024 10:00:00 +0000\r\n" +
	"X-Correo-Trace: T1\r\n" +
	"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
	"From: Ana <ana@example.org>\r\n" +
	"To: Juan <juan@correo.test>\r\n" +
	"Subject: lunch on Friday\r\n" +
	"Message-ID: <20240101100000.1234@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 7bit\r\n" +
	"\r\n" +
	"Hi Juan,\r\n\r\nare we still on for lunch on Friday? The usual place at one.\r\n\r\nAna\r\n"

// The GTUBE test string: rspamd rejects any message carrying it.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// TestRspamd: rspamd's proxy worker in milter mode, the milter an ISP
// most likely runs.
func TestRspamd(t *testing.T) {
	r := clustertest.StartRspamd(t,
		"client.example. 60 IN A 192.0.2.7",
		"example.org. 60 IN A 192.0.2.80",
		"example.org. 60 IN MX 10 mail.example.org.",
		"mail.example.org. 60 IN A 192.0.2.25",
		`example.org. 60 IN TXT "v=spf1 ip4:192.0.2.7 -all"`,
		"7.2.0.192.in-addr.arpa. 60 IN PTR client.example.")
	log, logs := newLog()
	// rspamd scans at the end of message; a minute is far more than a
	// scan takes, whatever the machine.
	c := chain(t, log, Config{Name: "rspamd", Addr: "tcp:" + r.Addr(), Timeout: time.Minute})
	env := testEnv
	env.Rcpts = []string{"juan@correo.test"}
	env.AuthUser = "" // an MX's message: rspamd checks SPF, DKIM, DMARC (DNS: the stub)

	run := func(t *testing.T, msg string) Verdict {
		t.Helper()
		start := time.Now()
		v, err := c.Check(context.Background(), "T1", env, strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("one message through rspamd: %v", time.Since(start).Round(time.Millisecond))
		return v
	}

	t.Run("GTUBE is rejected", func(t *testing.T) {
		msg := strings.Replace(cleanMsg, "The usual place at one.", gtube, 1)
		v := run(t, msg)
		if v.Action != Reject || v.Code/100 != 5 || v.Enhanced[0] != '5' || v.By != "rspamd" || len(v.Changes) != 0 {
			t.Fatalf("verdict %+v\n%s", v, logs)
		}
		t.Logf("GTUBE: %d %s %s", v.Code, v.Enhanced, v.Text)
	})

	t.Run("a clean message gets rspamd's headers", func(t *testing.T) {
		v := run(t, cleanMsg)
		if v.Action != Accept || len(v.Unfiltered) != 0 {
			t.Fatalf("verdict %+v\n%s", v, logs)
		}
		var out strings.Builder
		if err := Rewrite(&out, strings.NewReader(cleanMsg), v.Changes); err != nil {
			t.Fatal(err)
		}
		h, err := readHeader(bufio.NewReader(strings.NewReader(out.String())))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, f := range h.fields {
			got[f.name] = f.value()
		}
		if res := got["X-Spamd-Result"]; !strings.HasPrefix(res, "default: False [") || !strings.Contains(res, "\n\t") {
			t.Errorf("X-Spamd-Result %q", res)
		}
		if ar := h.fields[1]; ar.name != "Authentication-Results" || !strings.Contains(ar.value(), "spf=pass") {
			t.Errorf("second field %q: want rspamd's Authentication-Results, inserted after Received, with spf=pass", ar.raw)
		}
		if st := got["X-Spam-Status"]; !strings.HasPrefix(st, "No, score=") {
			t.Errorf("X-Spam-Status %q", st)
		}
		for _, name := range []string{"X-Rspamd-Server", "X-Rspamd-Queue-Id"} {
			if got[name] == "" {
				t.Errorf("no %s in\n%s", name, out.String())
			}
		}
		if got["X-Rspamd-Queue-Id"] != "Q1" {
			t.Errorf("X-Rspamd-Queue-Id %q: the queue id macro did not reach rspamd", got["X-Rspamd-Queue-Id"])
		}
		// Every field of the message is still there, in order, and the
		// body is untouched.
		orig, _ := readHeader(bufio.NewReader(strings.NewReader(cleanMsg)))
		i := 0
		for _, f := range h.fields {
			if i < len(orig.fields) && string(f.raw) == string(orig.fields[i].raw) {
				i++
			}
		}
		if i != len(orig.fields) || !strings.HasSuffix(out.String(), cleanMsg[orig.bodyOff-2:]) {
			t.Errorf("rewritten message:\n%s", out.String())
		}
		for _, line := range strings.SplitAfter(out.String(), "\n") {
			if !strings.HasSuffix(line, "\r\n") && line != "" {
				t.Errorf("line without CRLF: %q", line)
			}
		}
		t.Logf("changes: %+v", v.Changes)
	})

	// rspamd goes away: each policy gives its answer, at once.
	r.Proc.Stop(syscall.SIGTERM)
	for _, tc := range []struct {
		policy Policy
		want   Verdict
	}{
		{FailTempfail, Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "rspamd"}},
		{FailAccept, Verdict{Action: Accept, Unfiltered: []string{"rspamd"}}},
	} {
		t.Run("stopped, "+tc.policy.String(), func(t *testing.T) {
			log, logs := newLog()
			c := chain(t, log, Config{Name: "rspamd", Addr: "tcp:" + r.Addr(), Timeout: time.Minute, OnFailure: tc.policy})
			v, err := c.Check(context.Background(), "T2", env, strings.NewReader(cleanMsg))
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tc.want.Action || v.Code != tc.want.Code || v.By != tc.want.By ||
				strings.Join(v.Unfiltered, ",") != strings.Join(tc.want.Unfiltered, ",") {
				t.Errorf("verdict %+v, want %+v", v, tc.want)
			}
			if !strings.Contains(logs.String(), `msg="milter failed" trace=T2 milter=rspamd`) {
				t.Errorf("log: %s", logs)
			}
		})
	}
}
