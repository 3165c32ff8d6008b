# The systemd units of a host: the Nix twin of Units() in
# src/hostplan/units.go. Both read the rules from
# src/hostplan/daemons.json and apply them to a validated profile; for
# every host of every profile in hosts/, `correoctl host plan` and this
# file must give the same list (nix/lib/tests/golden/<profile>.units.json
# holds it, and run.sh checks both sides against it), so the NixOS
# modules run the daemons exactly as `correoctl host render` does.
#
# A unit is { name; sections = [ { name; entries = [ [ key value ] ... ]; } ... ]; },
# the JSON form of Go's hostplan.Unit: entries are ordered pairs, not an
# attribute set, because a key may repeat (SystemCallFilter) and the order
# is part of the unit's text.
let
  inherit (builtins) all any attrNames concatLists concatMap concatStringsSep elem elemAt
    filter foldl' fromJSON head isString listToAttrs match readFile replaceStrings split
    stringLength substring tail;
  util = import ./util.nix;
  net = import ./net.nix;
  svcs = import ./services.nix;
  inherit (import ./profile.nix) parseDuration;
  inherit (util) quote goList;

  rulesFile = "src/hostplan/daemons.json";
  rulesError = msg: throw "correo/nix/lib: ${rulesFile}: ${msg}; fix the file (Go's src/hostplan refuses it too)";

  serviceNames = map (s: s.name) svcs.services;
  serviceByName = listToAttrs (map (s: { inherit (s) name; value = s; }) svcs.services);

  # The keys Go's Rules and Daemon structs decode, exactly (Go's
  # exactKeys refuses any other, in any case), so a misspelt key is an
  # error, not a rule silently left out.
  ruleKeys = [ "_comment" "binDir" "profilePath" "stateRoot" "keyGroup" "tlsGroup" "restartSec"
    "watchdogSec" "stopMargin" "daemons" "tlsOnly" "clusterOnly" "hardening" ];
  daemonKeys = [ "program" "description" "roles" "everyHost" "user" "network" "tls" "mail" "services" ];

  # daemons.json, checked as parseRules in units.go checks it.
  rules =
    let
      raw = fromJSON (readFile ../../src/hostplan/daemons.json);
      unknown = keys: set: filter (k: !elem k keys) (attrNames set);
      margin = parseDuration (raw.stopMargin or "");
      checkDaemon = d:
        let
          program = quote (d.program or "");
          roles = d.roles or [ ];
          services = d.services or [ ];
          badRoles = filter (r: !elem r svcs.roles) roles;
          badServices = filter (s: !elem s serviceNames) services;
        in
        if unknown daemonKeys d != [ ] then rulesError "daemon ${program}: unknown key ${quote (head (unknown daemonKeys d))}: expected one of ${concatStringsSep ", " daemonKeys}"
        else if !elem (d.network or "") [ "cluster" "any" ] then rulesError "daemon ${program}: network ${quote (d.network or "")}: expected \"cluster\" or \"any\""
        else if !(d.everyHost or false) && roles == [ ] then rulesError "daemon ${program} runs on no host: give it roles or everyHost"
        else if badRoles != [ ] then rulesError "daemon ${program}: unknown role ${quote (head badRoles)}: expected one of ${goList svcs.roles}"
        else if badServices != [ ] then rulesError "daemon ${program}: unknown service ${quote (head badServices)}: expected one of ${goList serviceNames}"
        else d;
      badTLSOnly = filter (s: !elem s serviceNames) (raw.tlsOnly or [ ]);
      badClusterOnly = filter (s: !elem s serviceNames) (raw.clusterOnly or [ ]);
    in
    if unknown ruleKeys raw != [ ] then rulesError "unknown key ${quote (head (unknown ruleKeys raw))}: expected one of ${concatStringsSep ", " ruleKeys}"
    else if margin ? error then rulesError "stopMargin: ${margin.error}"
    else if badTLSOnly != [ ] then rulesError "tlsOnly: unknown service ${quote (head badTLSOnly)}: expected one of ${goList serviceNames}"
    else if badClusterOnly != [ ] then rulesError "clusterOnly: unknown service ${quote (head badClusterOnly)}: expected one of ${goList serviceNames}"
    else raw // {
      clusterOnly = raw.clusterOnly or [ ];
      daemons = map checkDaemon (raw.daemons or [ ]);
      stopMarginMs = margin.ms;
    };

  # Daemon.Runs.
  runs = host: d: (d.everyHost or false) || any (svcs.hasRole host) (d.roles or [ ]);

  unitName = program: "correo-${program}.service";

  # sockets() in Go: each service of d the host provides, once per address
  # (only a guard: a valid profile never puts two services of a host on
  # one port), the TLS-only ones only with [host.tls]; a TCP and UDP
  # service gets one socket per transport.
  socketsOf = profile: host: d:
    (foldl'
      (st: name:
        let
          svc = serviceByName.${name};
          listen = net.hostPort host.address (svcs.port profile.cluster svc);
        in
        if !svcs.provides host svc || (host.tls == null && elem name rules.tlsOnly) || elem listen st.seen then st
        else {
          seen = st.seen ++ [ listen ];
          out = st.out
            ++ (if svc.tcp then [{ inherit svc listen; udp = false; }] else [ ])
            ++ (if svc.udp then [{ inherit svc listen; udp = true; }] else [ ]);
        })
      { seen = [ ]; out = [ ]; }
      (d.services or [ ])).out;

  # A program's own metrics service is just "metrics" in the name.
  socketUnitName = program: s:
    "correo-${program}-${replaceStrings [ "_" ] [ "-" ] (if s.svc.name == "metrics_${program}" then "metrics" else s.svc.name)}"
    + (if s.udp && s.svc.tcp && s.svc.udp then "-udp" else "")
    + ".socket";

  # Go's parentDir: everything before the last '/', or "/".
  parentDir = p:
    let m = match "(.*)/[^/]*" p;
    in if m == null || head m == "" then "/" else head m;

  # path.Clean(p) == p for an absolute path: no empty, "." or ".."
  # segment and no trailing '/'.
  isCleanAbsolute = p:
    let segments = filter isString (split "/" p);
    in p == "/" || (substring 0 1 p == "/"
      && all (x: x != "" && x != "." && x != "..") (tail segments));

  # runtimeDir in Go: every daemon its own directory under /run; nssd's is
  # the NSS socket's directory, kept across restarts because every process
  # on the host finds the socket by path.
  runtimeDir = profile: d:
    let
      sock = profile.cluster.nss.socket;
      dir = parentDir sock;
    in
    if d.program == "nssd" then
      (if !isCleanAbsolute sock || substring 0 5 dir != "/run/" then
        throw "${profile.source}: cluster.nss.socket ${quote sock}: under systemd the NSS socket must live in a directory under /run, written as a clean absolute path (no \"//\", \".\", \"..\" or trailing \"/\"; the default is /run/correo/nssd.sock)"
      else [
        [ "RuntimeDirectory" (substring 5 (stringLength dir) dir) ]
        [ "RuntimeDirectoryMode" "0755" ]
        [ "RuntimeDirectoryPreserve" "yes" ]
      ])
    else [
      [ "RuntimeDirectory" "correo-${d.program}" ]
      [ "RuntimeDirectoryMode" "0750" ]
    ];

  # stateMode in Go: pdeliveryd's state directory holds its Unix socket,
  # which pdelivery (run as the recipient or the MTA's user) and smtpd
  # must reach.
  stateMode = d: if d.program == "pdeliveryd" then "0751" else "0750";

  removePrefix = prefix: s:
    let n = stringLength prefix;
    in if substring 0 n s == prefix then substring n (stringLength s - n) s else s;

  section = name: entries: { inherit name entries; };

  # The units of one daemon on one host: its socket units, then its
  # service unit.
  daemonUnits = profile: host: d:
    let
      c = profile.cluster;
      prefix = net.parsePrefix c.network;
      clusterFilter = [ [ "IPAddressAllow" "${prefix.masked} localhost" ] [ "IPAddressDeny" "any" ] ];
      ipFilter = if d.network == "cluster" then clusterFilter else [ ];
      # The clusterOnly services (metrics) take only the cluster's
      # network, whatever the daemon's.
      socketFilter = s: if elem s.svc.name rules.clusterOnly then clusterFilter else ipFilter;
      sockets = socketsOf profile host d;
      sockNames = map (socketUnitName d.program) sockets;
      service = unitName d.program;
      socketUnit = s: {
        name = socketUnitName d.program s;
        sections = [
          (section "Unit" [ [ "Description" "${d.description or ""}: ${s.svc.name} socket (${s.listen})" ] ])
          (section "Socket" (
            [
              [ (if s.udp then "ListenDatagram" else "ListenStream") s.listen ]
              [ "FileDescriptorName" s.svc.name ]
              [ "Service" service ]
              # The address is the profile's, and may be configured after
              # sockets.target: bind it anyway.
              [ "FreeBind" "yes" ]
            ]
            ++ (if s.udp then [ ] else [ [ "NoDelay" "yes" ] ])
            ++ socketFilter s))
          (section "Install" [ [ "WantedBy" "sockets.target" ] ])
        ];
      };
      state = "${rules.stateRoot}/${d.program}";
      # TimeoutStopSec: systemd must not kill a daemon still inside its
      # grace period. Whole seconds, as Go's fmtDuration writes them.
      stopSec = (c.shutdown_grace_ms + rules.stopMarginMs) / 1000;
      ifSockets = entries: if sockNames == [ ] then [ ] else entries;
      groups = [ rules.keyGroup ] ++ (if (d.tls or false) && host.tls != null then [ rules.tlsGroup ] else [ ]);
    in
    map socketUnit sockets ++ [{
      name = service;
      sections = [
        (section "Unit" (
          [
            [ "Description" "${d.description or ""} (${d.program})" ]
            [ "After" (concatStringsSep " " ([ "network.target" "systemd-sysusers.service" "systemd-tmpfiles-setup.service" ] ++ sockNames)) ]
          ]
          ++ ifSockets [ [ "Requires" (concatStringsSep " " sockNames) ] ]))
        (section "Service" (concatLists [
          [
            [ "Type" "notify" ]
            [ "NotifyAccess" "main" ]
            [ "ExecStart" "${rules.binDir}/${d.program} -profile ${rules.profilePath} -host ${host.name} -state ${state}" ]
            [ "ExecReload" "/bin/kill -HUP $MAINPID" ]
            [ "Restart" "on-failure" ]
            [ "RestartSec" rules.restartSec ]
            [ "TimeoutStopSec" "${toString stopSec}s" ]
            [ "WatchdogSec" rules.watchdogSec ]
          ]
          (ifSockets [ [ "Sockets" (concatStringsSep " " sockNames) ] ])
          [
            [ "User" (d.user or "") ]
            [ "Group" (d.user or "") ]
            [ "SupplementaryGroups" (concatStringsSep " " groups) ]
            [ "StateDirectory" (removePrefix "/var/lib/" state) ]
            [ "StateDirectoryMode" (stateMode d) ]
            [ "LogsDirectory" "correo/${d.program}" ]
            [ "LogsDirectoryMode" "0750" ]
          ]
          (runtimeDir profile d)
          (if (d.mail or false) && host.storage != null then [ [ "ReadWritePaths" host.storage.data_dir ] ] else [ ])
          rules.hardening
          ipFilter
        ]))
        (section "Install" [ [ "WantedBy" "multi-user.target" ] ])
      ];
    }];

  hostNamed = profile: name:
    let found = filter (h: h.name == name) profile.hosts;
    in if found != [ ] then head found
    else throw "${profile.source}: no host named ${quote name} (hosts: ${goList (map (h: h.name) profile.hosts)}); pass one of them as the host";
in
rec {
  inherit rules;

  # profile -> host name -> the host's units: per daemon it runs (in
  # daemons.json's order), its socket units, then its service unit.
  units = profile: hostName:
    let host = hostNamed profile hostName;
    in concatMap (daemonUnits profile host) (filter (runs host) rules.daemons);

  # profile -> { <host> = units; } for every host: what
  # `correoctl host plan` prints.
  allUnits = profile: listToAttrs (map (h: { inherit (h) name; value = units profile h.name; }) profile.hosts);

  # header -> unit -> the unit file's text, as Go's Unit.Text(header):
  # the header verbatim, then each section as "[Name]" and its "key=value"
  # lines, sections separated by an empty line.
  unitText = header: unit:
    header + concatStringsSep "\n" (map
      (s: "[${s.name}]\n" + concatStringsSep "" (map (e: "${head e}=${elemAt e 1}\n") s.entries))
      unit.sections);
}
