# The daemons' systemd units: exactly nix/lib's `units profile host` (the
# Nix twin of src/hostplan's Units, both from src/hostplan/daemons.json),
# written into NixOS's unit options:
#   [Unit]    Description -> description, After -> after, Requires ->
#             requires (lists, so other modules can add to them); any other
#             key -> unitConfig
#   [Service] -> serviceConfig, [Socket] -> socketConfig; a key that
#             repeats (SystemCallFilter) becomes a list, which NixOS writes
#             back as one line per value, in order
#   [Install] WantedBy -> wantedBy (NixOS links the unit into the target's
#             .wants instead of keeping an [Install] section)
# A section or [Install] key the module cannot map stops evaluation rather
# than being dropped.
#
# Differences from `correoctl host render`, both because NixOS has no
# /usr/libexec and no /bin/kill:
#   ExecStart=  ${package}/bin/<program> instead of /usr/libexec/correo/<program>
#   ExecReload= ${coreutils}/bin/kill instead of /bin/kill
# the arguments are the same. NixOS also adds its own entries to every
# service (Environment= PATH, LOCALE_ARCHIVE, TZDIR; X-* bookkeeping).
# nix/modules/tests/run.sh compares every host's units, key by key, with
# the Go golden, these two paths normalised.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkIf hasSuffix removeSuffix hasPrefix removePrefix splitString filter
    foldl' elemAt head length listToAttrs mapAttrs attrNames concatStringsSep;
  cfg = config.services.correo;
  plan = import ./plan.nix cfg;

  binDir = plan.rules.binDir + "/";
  kill = "/bin/kill ";

  # NixOS's paths for the two Debian ones.
  rewrite = key: value:
    if key == "ExecStart" && hasPrefix binDir value then "${cfg.package}/bin/${removePrefix binDir value}"
    else if key == "ExecReload" && hasPrefix kill value then "${pkgs.coreutils}/bin/kill ${removePrefix kill value}"
    else value;

  # Ordered [ key value ] pairs -> attrs; a repeated key's values in a list.
  toAttrs = entries:
    mapAttrs (_: vs: if length vs == 1 then head vs else vs)
      (foldl' (acc: e: let k = elemAt e 0; in acc // { ${k} = (acc.${k} or [ ]) ++ [ (rewrite k (elemAt e 1)) ]; }) { } entries);

  words = s: filter (w: w != "") (splitString " " s);

  cannotMap = unit: what: throw "services.correo (nix/modules/units.nix): unit ${unit.name} from nix/lib has ${what}, which the module does not know how to write as NixOS options; teach nix/modules/units.nix (src/hostplan/daemons.json changed?)";

  # One nix/lib unit -> { kind = "services"|"sockets"; name; value; }.
  toNixOS = unit:
    let
      kind = if hasSuffix ".service" unit.name then "services"
        else if hasSuffix ".socket" unit.name then "sockets"
        else cannotMap unit "an unknown unit type";
      body = if kind == "services" then "Service" else "Socket";
      known = [ "Unit" body "Install" ];
      bad = filter (s: !(builtins.elem s.name known)) unit.sections;
      sec = name: foldl' (acc: s: if s.name == name then acc ++ s.entries else acc) [ ] unit.sections;
      unitAttrs = toAttrs (sec "Unit");
      install = toAttrs (sec "Install");
      lifted = [ "Description" "After" "Requires" ];
      listOf = a: k: if a ? ${k} then (if builtins.isList a.${k} then a.${k} else [ a.${k} ]) else [ ];
    in
    if bad != [ ] then cannotMap unit "a [${(head bad).name}] section"
    else if filter (k: k != "WantedBy") (attrNames install) != [ ] then cannotMap unit "[Install] keys other than WantedBy"
    else {
      inherit kind;
      name = removeSuffix (if kind == "services" then ".service" else ".socket") unit.name;
      value = {
        description = unitAttrs.Description or "";
        after = lib.concatMap words (listOf unitAttrs "After");
        requires = lib.concatMap words (listOf unitAttrs "Requires");
        unitConfig = removeAttrs unitAttrs lifted;
        wantedBy = lib.concatMap words (listOf install "WantedBy");
      } // (if kind == "services"
        then { serviceConfig = toAttrs (sec "Service"); }
        else { socketConfig = toAttrs (sec "Socket"); });
    };

  converted = map toNixOS plan.units;
  ofKind = kind: listToAttrs (map (u: { inherit (u) name value; }) (filter (u: u.kind == kind) converted));
in
{
  config = mkIf (cfg.enable && plan.known) {
    systemd.services = ofKind "services";
    systemd.sockets = ofKind "sockets";
  };
}
