# correo's builtins-only Nix library: host profiles (hosts/*.toml) to
# validated profiles, the resolved settings document, the DNS zone and
# each host's systemd units.
# No nixpkgs and no `lib`: it evaluates with plain Nix on any machine
# (the flake exposes it as `lib`; nix/lib/tests/run.sh imports it
# directly). The Go side is src/cluster, src/dnszone and src/hostplan; the
# golden tests hold the two equal.
#
#   let correo = import ./nix/lib; p = correo.loadProfile ./hosts/example.toml;
#   in { settings = correo.settings p; zone = correo.zone p; units = correo.units p "mx1"; }
let
  profile = import ./profile.nix;
  services = import ./services.nix;
  units = import ./units.nix;
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

  # profile -> host name -> the host's systemd units, as
  # `correoctl host plan --host H` prints them: a list of
  # { name; sections = [ { name; entries = [ [ key value ] ... ]; } ]; }.
  inherit (units) units;
  # profile -> { <host> = units; } for every host.
  inherit (units) allUnits;
  # path -> { <host> = units; }: what `correoctl host plan --profile P` prints.
  unitsOf = path: units.allUnits (profile.loadProfile path);
  # header -> unit -> the unit file text, as Go's Unit.Text(header).
  inherit (units) unitText;
  # src/hostplan/daemons.json, checked (stopMarginMs added).
  unitRules = units.rules;

  inherit (profile) parseDuration formatDuration;
  inherit (services) roles services layouts;
  net = import ./net.nix;
}
