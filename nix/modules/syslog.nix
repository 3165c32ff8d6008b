# Central syslog, as src/hostplan (through src/peerconf) configures rsyslog
# on a Debian host: the loghost listens on its profile address (UDP and
# TCP, the profile's syslog port) and files every message, its own too,
# under /var/log/correo/hosts/<host>.log and in /var/log/correo/all.log;
# every other host forwards everything over TCP (RFC 5424 framing) with a
# disk-assisted queue retried forever, so a loghost reboot loses nothing.
# The text is the same, byte for byte, as /etc/rsyslog.d/correo.conf (the
# tests compare them). NixOS's journald forwards to rsyslog whenever
# services.rsyslogd is enabled, as Go's journald drop-in asks, and the
# queue lives in NixOS's rsyslog work directory, /var/spool/rsyslog.
{ config, lib, ... }:
let
  inherit (lib) mkIf mkMerge concatStringsSep;
  cfg = config.services.correo;
  plan = import ./plan.nix cfg;
  dir = "/var/log/correo";
  q = s: "\"${s}\"";
  head = "# correo: central syslog (README, \"Logs\").\n";

  # peerconf.RsyslogLoghost(listen, dir, "").
  loghost = addr: port: concatStringsSep "\n" [
    "module(load=\"imudp\")"
    "module(load=\"imtcp\")"
    "input(type=\"imudp\" address=${q addr} port=${q port})"
    "input(type=\"imtcp\" address=${q addr} port=${q port})"
    # secpath-replace: HOSTNAME comes from the network; a forged "../x"
    # must not pick the file written to.
    "template(name=\"correoHostFile\" type=\"string\" string=${q "${dir}/hosts/%HOSTNAME:::secpath-replace%.log"})"
    "template(name=\"correoLine\" type=\"string\" string=\"%TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME%[%PROCID%] %MSGID% %STRUCTURED-DATA% %msg:::drop-last-lf%\\n\")"
    "action(type=\"omfile\" dynaFile=\"correoHostFile\" template=\"correoLine\" dirCreateMode=\"0750\" fileCreateMode=\"0640\")"
    "action(type=\"omfile\" file=${q "${dir}/all.log"} template=\"correoLine\" fileCreateMode=\"0640\")"
    ""
  ];

  # peerconf.RsyslogForward(loghost).
  forward = addr: port: concatStringsSep "\n" [
    "action(type=\"omfwd\" target=${q addr} port=${q port} protocol=\"tcp\""
    "       template=\"RSYSLOG_SyslogProtocol23Format\" TCP_Framing=\"octet-counted\""
    "       queue.type=\"LinkedList\" queue.filename=\"correo-loghost\" queue.maxDiskSpace=\"1g\""
    "       queue.saveOnShutdown=\"on\" action.resumeRetryCount=\"-1\" action.resumeInterval=\"5\")"
    ""
  ];

  isLoghost = plan.hasRole "loghost";
  text = head + (
    if isLoghost then loghost plan.host.address (toString (plan.port "syslog"))
    else if plan.loghost == null then "# the profile has no loghost: messages stay on this host\n"
    else forward plan.loghost.address (toString plan.loghost.port));
in
{
  config = mkIf (cfg.enable && plan.known) (mkMerge [
    {
      services.rsyslogd.enable = true;
      services.rsyslogd.extraConfig = text;
    }
    # rsyslog cannot bind an address the host does not have yet (it has no
    # freebind) and drops the listener for good if it tries: NixOS's
    # rsyslog unit is syslog.service.
    (mkIf isLoghost {
      systemd.services.syslog = {
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
      };
    })
  ]);
}
