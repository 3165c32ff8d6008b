# The resolved settings document: the Nix twin of Profile.Settings() in
# src/cluster/settings.go. Both must print the same JSON for every profile
# in hosts/; nix/lib/tests/golden holds that JSON and both are checked
# against it, so a NixOS module and a daemon never disagree about a port
# or a default.
let
  inherit (builtins) listToAttrs map filter;
  svcs = import ./services.nix;
  net = import ./net.nix;
in
profile:
let
  c = profile.cluster;
  port = svcs.port c;
  listenOf = h: s: net.hostPort h.address (port s);
in
{
  cluster = {
    inherit (c) name domains network key_file layout placement trusted_network run_as shutdown_grace_ms dns;
    passwd = { inherit (c.passwd) udp_port tcp_port timeout_ms bcrypt_cost auth_cache_ttl_ms auth_cache_entries auth_queue; };
    # network is null unless the target is syslog, as in Go.
    log = {
      inherit (c.log) target level;
      network = if c.log.target == "syslog" then c.log.network else null;
    };
    ports = listToAttrs (map (s: { name = s.name; value = port s; }) svcs.services);
    inherit (c) nss queue mail_auth milters moves;
  };

  hosts = listToAttrs (map
    (h: {
      name = h.name;
      value = {
        inherit (h) name address roles mx storage smtpd mailproxy tls;
        listen = listToAttrs (map (s: { name = s.name; value = listenOf h s; })
          (filter (svcs.provides h) svcs.services));
      };
    })
    profile.hosts);

  # Every service, with its providers in profile order (an empty list when
  # no host provides it).
  endpoints = listToAttrs (map
    (s: {
      name = s.name;
      value = map (h: { host = h.name; listen = listenOf h s; })
        (filter (h: svcs.provides h s) profile.hosts);
    })
    svcs.services);
}
