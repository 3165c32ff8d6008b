# For drift.sh: every option stub.nix declares, next to the option of the
# same name in a real nixpkgs' NixOS (nixos/lib/eval-config.nix), by the
# description of their types ("list of 16 bit unsigned integer; ...",
# "attribute set of (submodule)", ...). Submodules are walked into through
# type.getSubOptions, as the manual's generator does, but only for the
# sub-options the stub declares. Nothing is built; only option declarations
# are evaluated.
#   nix-instantiate --eval --strict --json drift.nix --arg nixpkgs /path/to/nixpkgs
# gives a list of { path; stub; real; } (real = null: nixpkgs has no such
# option).
{ nixpkgs, system ? "x86_64-linux" }:
let
  lib = import (nixpkgs + "/lib");
  real = import (nixpkgs + "/nixos/lib/eval-config.nix") { inherit system; modules = [ ]; };
  stub = lib.evalModules { modules = [ ./stub.nix ]; };
  inherit (lib) isOption concatLists mapAttrsToList;

  walk = prefix: stubOpts: realOpts:
    concatLists (mapAttrsToList
      (name: s:
        let
          path = prefix ++ [ name ];
          r = realOpts.${name} or null;
        in
        if name == "_module" then [ ]
        else if isOption s then
          [{ path = lib.showOption (s.loc or path); stub = s.type.description; real = if isOption r then r.type.description else null; }]
          ++ (
            let sub = s.type.getSubOptions path;
            in if sub == { } then [ ] else walk path sub (if isOption r then r.type.getSubOptions path else { }))
        else walk path s (if r == null || isOption r then { } else r))
      stubOpts);
in
walk [ ] stub.options real.options
