# Entry point for nix/lib/tests/run.sh: evaluate one profile, given as an
# absolute path string (--argstr profile /abs/path.toml), to its settings
# document or its zone text (--argstr what zone).
{ profile, what ? "settings" }:
let
  correo = import ../default.nix;
  p = correo.fromTOMLString profile (builtins.readFile profile);
in
if what == "settings" then correo.settings p
else if what == "zone" then correo.zone p
else throw "eval.nix: what must be settings or zone, not ${what}"
