// Package peerconf writes the configuration of the operating system's
// programs a correo host relies on (rsyslog), the same way for the
// runner's private instances and for a rendered host.
package peerconf

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

func q(s string) string { return `"` + s + `"` }

// RsyslogLoghost is the central loghost: UDP and TCP syslog on listen,
// every message filed in dir/hosts/<host>.log and dir/all.log, one line
// each with the sender's host, program, pid, message id and structured
// data. workDir, when set, is rsyslog's work directory (a private
// instance); a host's rsyslog keeps the distribution's.
func RsyslogLoghost(listen netip.AddrPort, dir, workDir string) string {
	addr := listen.Addr().String()
	port := fmt.Sprint(listen.Port())
	var out []string
	if workDir != "" {
		out = append(out, "global(workDirectory="+q(workDir)+" maxMessageSize=\"64k\")")
	}
	return strings.Join(append(out,
		`module(load="imudp")`,
		`module(load="imtcp")`,
		"input(type=\"imudp\" address="+q(addr)+" port="+q(port)+")",
		"input(type=\"imtcp\" address="+q(addr)+" port="+q(port)+")",
		// secpath-replace: HOSTNAME comes from the network; a forged "../x"
		// must not pick the file we write to.
		"template(name=\"correoHostFile\" type=\"string\" string="+q(filepath.Join(dir, "hosts")+"/%HOSTNAME:::secpath-replace%.log")+")",
		`template(name="correoLine" type="string" string="%TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME%[%PROCID%] %MSGID% %STRUCTURED-DATA% %msg:::drop-last-lf%\n")`,
		`action(type="omfile" dynaFile="correoHostFile" template="correoLine" dirCreateMode="0750" fileCreateMode="0640")`,
		"action(type=\"omfile\" file="+q(filepath.Join(dir, "all.log"))+" template=\"correoLine\" fileCreateMode=\"0640\")",
		"",
	), "\n")
}

// RsyslogForward sends everything this host logs to the loghost over TCP
// (RFC 5424 framing keeps the structured data). While the loghost is
// unreachable the messages wait in a disk-assisted queue in rsyslog's work
// directory, kept across restarts, and are retried forever: a loghost
// reboot loses nothing.
func RsyslogForward(loghost netip.AddrPort) string {
	return strings.Join([]string{
		`action(type="omfwd" target=` + q(loghost.Addr().String()) + ` port=` + q(fmt.Sprint(loghost.Port())) + ` protocol="tcp"`,
		`       template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted"`,
		`       queue.type="LinkedList" queue.filename="correo-loghost" queue.maxDiskSpace="1g"`,
		`       queue.saveOnShutdown="on" action.resumeRetryCount="-1" action.resumeInterval="5")`,
		"",
	}, "\n")
}
