{
  description = "correo: an ISP e-mail cluster that scales by adding hosts";

  # Pinned by flake.lock to the nixos-26.05 commit in the project's pin
  # (shared/nixpkgs-pin.json).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = { self, nixpkgs }:
    let
      # The one place the system is named. aarch64-linux would cost a
      # second vendorHash check and VM test runs nobody has made: not yet.
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      inherit (nixpkgs) lib;

      # The example cluster: one NixOS system per host of its profile.
      exampleProfile = ./hosts/example.toml;
      exampleHosts = map (h: h.name) (self.lib.loadProfile exampleProfile).hosts;

      hostSystem = profile: host: lib.nixosSystem {
        inherit system;
        modules = [
          self.nixosModules.default
          (import ./nix/nixos/host.nix { inherit profile host; })
        ];
      };
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
      } // lib.listToAttrs (map
        (host: lib.nameValuePair "image-${host}"
          # A raw GPT disk (ESP + ext4 root labelled nixos, grown to the
          # disk at first boot) to dd onto the host: the 26.05 image
          # framework's raw-efi variant of the host's system.
          self.nixosConfigurations.${host}.config.system.build.images.raw-efi)
        exampleHosts);

      # services.correo, with this flake's packages as defaults.
      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nix/modules ];
        services.correo.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.correo;
        services.correo.nssPackage = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.nss;
      };

      # nix build .#nixosConfigurations.mx1.config.system.build.vm
      nixosConfigurations = lib.genAttrs exampleHosts (hostSystem exampleProfile);

      checks.${system} = {
        # nix/lib against the golden settings and zones for every
        # hosts/*.toml (produced by the Go side), and every bad profile
        # refused. The same comparison runs offline in nix/lib/tests/run.sh.
        lib-golden = import ./nix/lib/tests/check.nix {
          inherit system;
          shell = "${pkgs.bash}/bin/bash";
        };
        # The whole example cluster as NixOS VMs, running the scenarios of
        # vm-tests/scenario (nix/tests/cluster.py). Needs KVM.
        cluster = import ./nix/tests/cluster.nix {
          inherit pkgs;
          inherit (self.packages.${system}) correo nss;
        };
      };
    };
}
