# The golden comparison in pure Nix, builtins only: for every hosts/*.toml,
# nix/lib's settings must equal golden/<profile>.settings.json (as JSON
# values, so key order does not matter), its zone must equal
# golden/<profile>.zone byte for byte, and every host's units must equal
# golden/<profile>.units.json (a profile without that file is one whose
# units Go refuses, like dev.toml's NSS socket outside /run: Nix must
# refuse them too); every profile in src/cluster/testdata/bad must fail to
# load, and every one in src/hostplan/testdata/units/bad must have its
# units refused. The golden files come from the Go side (correoctl);
# run.sh checks Go against them too.
#
# Used by the flake's checks.<system>.lib-golden (which asserts `ok`) and
# by run.sh:  nix-instantiate --eval --strict --json nix/lib/tests/golden.nix -A summary
{ root ? ../../.. }:
let
  inherit (builtins) attrNames readDir filter match head elemAt readFile fromJSON
    tryEval deepSeq all map pathExists;
  correo = import ../default.nix;
  tomlNames = dir:
    map (f: head (match "(.*)\\.toml" f))
      (filter (f: match ".*\\.toml" f != null && (readDir dir).${f} == "regular") (attrNames (readDir dir)));

  hostsDir = root + "/hosts";
  goldenDir = ./golden;
  badDir = root + "/src/cluster/testdata/bad";
  badUnitsDir = root + "/src/hostplan/testdata/units/bad";

  # Whether evaluating every host's units fails (a throw).
  unitsRefused = p: !(tryEval (deepSeq (correo.allUnits p) true)).success;

  good = map
    (name:
      let
        p = correo.loadProfile (hostsDir + "/${name}.toml");
        settingsFile = goldenDir + "/${name}.settings.json";
        zoneFile = goldenDir + "/${name}.zone";
        unitsFile = goldenDir + "/${name}.units.json";
      in [
        {
          check = "settings ${name}";
          ok = pathExists settingsFile && correo.settings p == fromJSON (readFile settingsFile);
        }
        {
          check = "zone ${name}";
          ok = pathExists zoneFile && correo.zone p == readFile zoneFile;
        }
        (if pathExists unitsFile then {
          check = "units ${name}";
          ok = correo.allUnits p == fromJSON (readFile unitsFile);
        } else {
          check = "units ${name} refused (no golden ${name}.units.json)";
          ok = unitsRefused p;
        })
      ])
    (tomlNames hostsDir);

  bad = map
    (name: {
      check = "bad ${name}";
      ok = !(tryEval (deepSeq (correo.settings (correo.loadProfile (badDir + "/${name}.toml"))) true)).success;
    })
    (if pathExists badDir then tomlNames badDir else [ ]);

  badUnits = map
    (name: {
      check = "units bad ${name}";
      ok = unitsRefused (correo.loadProfile (badUnitsDir + "/${name}.toml"));
    })
    (if pathExists badUnitsDir then tomlNames badUnitsDir else [ ]);

  results = builtins.concatLists good ++ bad ++ badUnits;
in
{
  inherit results;
  ok = all (r: r.ok) results;
  failed = map (r: r.check) (filter (r: !r.ok) results);
  summary = map (r: "${if r.ok then "ok  " else "FAIL"} golden.nix: ${r.check}") results;
}
