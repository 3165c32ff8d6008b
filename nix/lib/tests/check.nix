# The golden comparison as a derivation, for the flake's
# checks.<system>.lib-golden. The comparison itself happens at evaluation
# time with builtins only (golden.nix); the derivation just records the
# per-check lines, so `nix flake check` fails at evaluation when a golden
# file and nix/lib disagree, naming the failing checks.
#
# builtins.derivation rather than nixpkgs' runCommand, so that it also
# builds offline without nixpkgs: `nix-build nix/lib/tests/check.nix`
# (run.sh does) uses /bin/sh; the flake passes a shell from nixpkgs,
# since a sandboxed builder need not have /bin/sh. The script uses shell
# built-ins only: there is no coreutils in the build environment.
{ system ? builtins.currentSystem, shell ? "/bin/sh" }:
let
  golden = import ./golden.nix { };
  summary = builtins.toFile "correo-lib-golden-summary"
    (builtins.concatStringsSep "\n" golden.summary + "\n");
in
assert golden.ok || throw "nix/lib golden tests failed: ${builtins.concatStringsSep ", " golden.failed}";
builtins.derivation {
  name = "correo-lib-golden";
  inherit system;
  builder = shell;
  args = [ "-c" "while IFS= read -r line; do printf '%s\\n' \"$line\"; done < ${summary} > \"$out\"" ];
}
