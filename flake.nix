{
  description = "correo: an ISP e-mail cluster that scales by adding hosts";

  # Pinned by flake.lock to the nixos-26.05 commit in the project's pin
  # (shared/nixpkgs-pin.json).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
    in
    {
      # The builtins-only library: host profile -> settings and DNS zone.
      # It needs no nixpkgs, so it is the same for every system; without
      # the flake it is `import ./nix/lib`.
      lib = import ./nix/lib;

      packages.${system} = rec {
        correo = pkgs.callPackage ./nix/packages/correo.nix { };
        # libnss_correo.so.2 (C): the operating system's view of the
        # cluster's users, through nssd.
        nss = pkgs.callPackage ./nix/packages/nss.nix { };
        default = correo;
      };

      # nix/lib against the golden settings and zones for every hosts/*.toml
      # (produced by the Go side), and every bad profile refused. The same
      # comparison runs offline in nix/lib/tests/run.sh.
      checks.${system}.lib-golden = import ./nix/lib/tests/check.nix {
        inherit system;
        shell = "${pkgs.bash}/bin/bash";
      };
    };
}
