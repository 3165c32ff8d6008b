# correo's builtins-only Nix library: host profiles (hosts/*.toml) to
# validated profiles, the resolved settings document and the DNS zone.
# No nixpkgs and no `lib`: it evaluates with plain Nix on any machine
# (the flake exposes it as `lib`; nix/lib/tests/run.sh imports it
# directly). The Go side is src/cluster and src/dnszone; the golden tests
# hold the two equal.
#
#   let correo = import ./nix/lib; p = correo.loadProfile ./hosts/example.toml;
#   in { settings = correo.settings p; zone = correo.zone p; }
let
  profile = import ./profile.nix;
  services = import ./services.nix;
in
{
  # path -> validated profile with defaults applied (throws on errors).
  inherit (profile) loadProfile;
  # source name -> TOML text -> validated profile.
  inherit (profile) fromTOMLString;
  # source name -> attrs as builtins.fromTOML returns them -> profile.
  inherit (profile) fromAttrs;

  # profile -> the document `correoctl profile settings` prints.
  settings = import ./settings.nix;
  # profile -> the zone text `correoctl dns zone` prints.
  zone = import ./zone.nix;

  # Convenience: straight from a path.
  settingsOf = path: import ./settings.nix (profile.loadProfile path);
  zoneOf = path: import ./zone.nix (profile.loadProfile path);

  inherit (profile) parseDuration formatDuration;
  inherit (services) roles services layouts;
  net = import ./net.nix;
}
