# Evaluates, offline, the NixOS systems the flake builds and the VM test's
# nodes, with nixpkgs' real lib and two stubs of NixOS's options
# (nix/modules/tests/stub.nix for what services.correo touches,
# ./stub.nix for the rest), for nix/nixos/tests/run.sh:
#
#   nix-instantiate --eval --strict --json nix/nixos/tests/eval.nix \
#     --arg nixpkgsLib /path/to/nixpkgs-lib/lib [--argstr what flake|nodes] [--arg extra '{ ... }']
#
# what = "flake": flake.nix's outputs, called with a stand-in nixpkgs whose
#   lib.nixosSystem evaluates the given modules against the stubs: so every
#   nixosConfigurations.<host> the flake defines is evaluated from the
#   flake's own module list (nixosModules.default + nix/nixos/host.nix).
# what = "nodes": nix/tests/cluster.nix with a stand-in
#   pkgs.testers.runNixOSTest, then every node's modules.
# Each system is forced whole (deepSeq, minus _module: evaluation is lazy,
# and an option nobody reads is never checked), its failed assertions
# thrown; the result is, per system, what the checks compare.
{ nixpkgsLib, what ? "flake", extra ? { } }:
let
  lib = import nixpkgsLib;
  store = name: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-${name}";
  drv = name: { type = "derivation"; outPath = store name; inherit name; };

  # What the modules read from pkgs.
  pkgs = {
    inherit lib;
    stdenv.hostPlatform.system = "x86_64-linux";
    coreutils = drv "coreutils";
    openssl = drv "openssl";
    swaks = drv "swaks";
    dnsutils = drv "dnsutils";
    python3 = drv "python3";
    curl = drv "curl";
    bash = drv "bash";
    runCommand = name: _: _: drv name;
    callPackage = f: args: drv (baseNameOf (toString f));
    testers.runNixOSTest = t: t;
  };

  evalSystem = modules: lib.evalModules {
    modules = [ ../../modules/tests/stub.nix ./stub.nix { _module.args.pkgs = pkgs; } extra ] ++ modules;
  };

  force = name: e:
    let
      config = removeAttrs e.config [ "_module" ];
      failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
    in
    if failed != [ ] then throw "${name}: failed assertions:\n- ${lib.concatStringsSep "\n- " failed}"
    else builtins.deepSeq config {
      hostName = config.networking.hostName;
      network = config.systemd.network.networks."10-correo" or null;
      units = lib.sort lib.lessThan (lib.attrNames config.systemd.services ++ lib.attrNames config.systemd.sockets);
      key = config.services.correo.keyFile or null;
      fileSystems = lib.mapAttrs (_: fs: fs.device) config.fileSystems;
      interfaces = lib.mapAttrs (_: i: map (a: "${a.address}/${toString a.prefixLength}") i.ipv4.addresses) config.networking.interfaces;
      tmpfiles = config.systemd.tmpfiles.rules;
      zones = lib.attrNames (config.services.nsd.zones or { });
    };

  # flake.nix's outputs with a nixpkgs whose nixosSystem evaluates here.
  flake = import ../../../flake.nix;
  outputs = flake.outputs {
    self = outputs;
    nixpkgs = {
      lib = lib // {
        nixosSystem = { system, modules }: evalSystem modules;
      };
      legacyPackages.x86_64-linux = pkgs;
    };
  };

  test = import ../../tests/cluster.nix {
    inherit pkgs;
    correo = drv "correo";
    nss = drv "correo-nss";
  };
in
if what == "flake" then lib.mapAttrs force outputs.nixosConfigurations
else if what == "nodes" then
  { inherit (test) name; script = builtins.stringLength test.testScript; }
  // lib.mapAttrs (n: m: force n (evalSystem [ m ])) test.nodes
else throw "eval.nix: what = ${what}: expected flake or nodes"
