# flake.nix cannot be evaluated offline (its nixpkgs input needs a
# download), so run.sh calls its `outputs` function with a stub nixpkgs:
# just enough of lib, buildGoModule and stdenv to show that the outputs evaluate,
# that the package sees the commands under src/cmd, and that the
# lib-golden check instantiates. Not a substitute for `nix flake check`
# on a machine with network access.
let
  inherit (builtins) listToAttrs filter attrNames readFile;
  stubLib = {
    filterAttrs = pred: set: listToAttrs (map (name: { inherit name; value = set.${name}; })
      (filter (name: pred name set.${name}) (attrNames set)));
    fileContents = f: readFile f;
    fileset = { toSource = x: x; unions = x: x; };
    platforms.linux = [ "x86_64-linux" ];
  };
  pkgs = {
    bash = "/bin";  # "${pkgs.bash}/bin/bash" -> "/bin/bin/bash": never built here
    # Like nixpkgs' callPackage: each package gets only the arguments it
    # names.
    callPackage = f: args:
      let fn = import f;
      in fn (builtins.intersectAttrs (builtins.functionArgs fn)
        ({ lib = stubLib; buildGoModule = a: a; stdenv.mkDerivation = a: a; } // args));
  };
  flake = import ../../../flake.nix;
  # The nixpkgs lib functions flake.nix itself calls; the NixOS systems
  # are stood in for here (nix/nixos/tests/eval.nix evaluates them
  # against NixOS option stubs).
  nixpkgsLib = {
    listToAttrs = builtins.listToAttrs;
    nameValuePair = name: value: { inherit name value; };
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    nixosSystem = args: { config.system.build.images.raw-efi = "raw-efi image of a stub system"; };
  };
  outputs = flake.outputs {
    self = outputs;
    nixpkgs = { lib = nixpkgsLib; legacyPackages.x86_64-linux = pkgs; };
  };
  pkg = outputs.packages.x86_64-linux.correo;
  nss = outputs.packages.x86_64-linux.nss;
in
{
  description = flake.description;
  libHasFunctions = outputs.lib ? loadProfile && outputs.lib ? settings && outputs.lib ? zone;
  inherit (pkg) pname version vendorHash subPackages;
  cgo = pkg.env.CGO_ENABLED;
  nssPname = nss.pname;
  nssSources = map baseNameOf nss.src.fileset;
  checkDrv = outputs.checks.x86_64-linux.lib-golden.drvPath;
  # One image and one nixosConfiguration per host of hosts/example.toml.
  images = builtins.filter (n: builtins.substring 0 6 n == "image-") (builtins.attrNames outputs.packages.x86_64-linux);
  nixosConfigurations = builtins.attrNames outputs.nixosConfigurations;
  hasModule = outputs ? nixosModules.default;
}
