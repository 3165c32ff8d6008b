# The roles and services of a correo cluster, mirroring src/cluster/
# profile.go (Roles) and services.go (Services, their roles, standard ports
# and transports). Order matters: it is the order Go iterates in, so port
# clash messages and every list the settings hold come out the same.
rec {
  roles = [ "dns" "loghost" "passwd-primary" "passwd-secondary" "mx" "relay" "storage" "mailproxy" ];

  # Mailbox layouts, as src/mailbox/layout.go's schemes (paper's first).
  layouts = [ "first3" "first2last1" "first1last2" "hash2" ];

  placements = [ "letters" "least-users" ];

  # tcp/udp: the transports the service listens on. std: standard port
  # (passwd has none: the profile must choose it).
  services = [
    { name = "smtp"; roles = [ "mx" ]; std = 25; tcp = true; udp = false; }
    { name = "relay"; roles = [ "relay" ]; std = 25; tcp = true; udp = false; }
    { name = "submission"; roles = [ "relay" ]; std = 587; tcp = true; udp = false; }
    { name = "submissions"; roles = [ "relay" ]; std = 465; tcp = true; udp = false; }
    { name = "lmtp"; roles = [ "storage" ]; std = 24; tcp = true; udp = false; }
    { name = "pop3"; roles = [ "mailproxy" ]; std = 110; tcp = true; udp = false; }
    { name = "pop3s"; roles = [ "mailproxy" ]; std = 995; tcp = true; udp = false; }
    { name = "pop3_backend"; roles = [ "storage" ]; std = 110; tcp = true; udp = false; }
    { name = "imap"; roles = [ "mailproxy" ]; std = 143; tcp = true; udp = false; }
    { name = "imaps"; roles = [ "mailproxy" ]; std = 993; tcp = true; udp = false; }
    { name = "imap_backend"; roles = [ "storage" ]; std = 143; tcp = true; udp = false; }
    { name = "dns"; roles = [ "dns" ]; std = 53; tcp = true; udp = true; }
    { name = "syslog"; roles = [ "loghost" ]; std = 514; tcp = true; udp = true; }
    { name = "passwd"; roles = [ "passwd-primary" "passwd-secondary" ]; std = 0; tcp = false; udp = true; }
    { name = "passwd_admin"; roles = [ "passwd-primary" "passwd-secondary" ]; std = 0; tcp = true; udp = false; }
    { name = "mailbox_move"; roles = [ "storage" ]; std = 4424; tcp = true; udp = false; }
  ]
  # One metrics port per daemon program: [cluster.ports] metrics (9420)
  # plus the program's offset, as Go's metricsOffset.
  ++ builtins.genList
    (i: let m = builtins.elemAt metricsPrograms i; in
      { name = "metrics_${m.program}"; inherit (m) roles; std = 0; metricsOffset = i; tcp = true; udp = false; })
    (builtins.length metricsPrograms);

  metricsPrograms = [
    { program = "passwdd"; roles = [ "passwd-primary" "passwd-secondary" ]; }
    { program = "nssd"; inherit roles; }
    { program = "smtpd"; roles = [ "mx" "relay" ]; }
    { program = "pdeliveryd"; roles = [ "storage" ]; }
    { program = "pop3d"; roles = [ "storage" ]; }
    { program = "imapd"; roles = [ "storage" ]; }
    { program = "mailproxy"; roles = [ "mailproxy" ]; }
  ];

  # DefaultMetricsPort and MetricsPorts in Go.
  defaultMetricsPort = 9420;
  metricsPorts = builtins.length metricsPrograms;

  # [cluster.ports] keys, in Go's struct order (the services that have a
  # standard port; passwd's two ports live in [cluster.passwd]).
  portKeys = [ "smtp" "relay" "submission" "submissions" "lmtp" "pop3" "pop3s" "pop3_backend" "imap" "imaps" "imap_backend" "dns" "syslog" "mailbox_move" "metrics" ];

  # Profile.Port: the override, or the standard port.
  port = cluster: svc:
    if svc ? metricsOffset then
      (if cluster.ports.metrics != 0 then cluster.ports.metrics else defaultMetricsPort) + svc.metricsOffset
    else
    let
      override =
        if svc.name == "passwd" then cluster.passwd.udp_port
        else if svc.name == "passwd_admin" then cluster.passwd.tcp_port
        else cluster.ports.${svc.name};
    in if override != 0 then override else svc.std;

  hasRole = host: role: builtins.elem role host.roles;

  # Host.Provides.
  provides = host: svc: builtins.any (hasRole host) svc.roles;

  hostsWithRole = profile: role: builtins.filter (h: hasRole h role) profile.hosts;
}
