# What nix/lib says about one host of a profile, for the modules: not a
# module itself. `known` is false when the host is not in the profile;
# everything else must then not be used (the modules guard on it, and
# options.nix's assertion says what is wrong). A profile nix/lib refuses
# (a port out of range, an unknown role, ...) throws here with nix/lib's
# message, which names the file and key, as `correoctl profile check` does.
cfg:
let
  inherit (builtins) filter head elem map;
  correo = import ../lib;
  svcs = import ../lib/services.nix;
  p = correo.loadProfile cfg.profile;
  found = filter (h: h.name == cfg.host) p.hosts;
  known = found != [ ];
  host = head found;
  c = p.cluster;
  hostsWith = role: filter (h: elem role h.roles) p.hosts;
  port = name: svcs.port c (head (filter (s: s.name == name) svcs.services));
in
{
  inherit correo p known host;
  profile = p;
  hostNames = map (h: h.name) p.hosts;
  roles = if known then host.roles else [ ];
  hasRole = role: known && elem role host.roles;
  units = correo.units p cfg.host;
  rules = correo.unitRules;
  inherit port hostsWith;
  # The services this host provides (Host.Provides), the TLS-only ones
  # only with [host.tls], as the socket units have them.
  provided = filter
    (s: svcs.provides host s && !(host.tls == null && elem s.name correo.unitRules.tlsOnly))
    correo.services;
  # Endpoints(dns): every dns host's address, in profile order.
  dnsServers = map (h: h.address) (hostsWith "dns");
  # Endpoints(syslog): the first loghost and the syslog port.
  loghost = let l = hostsWith "loghost"; in if l == [ ] then null else { address = (head l).address; port = port "syslog"; };
}
