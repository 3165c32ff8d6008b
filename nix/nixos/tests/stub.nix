# The NixOS options nix/nixos/host.nix and the VM test's nodes
# (nix/tests/cluster.nix) set beyond what services.correo touches
# (nix/modules/tests/stub.nix declares those). Each is declared with the
# type nixpkgs gives it, in the file named next to it; only the
# sub-options used are here. With both stubs the hosts and the test nodes
# evaluate offline, so a misspelt or mistyped option fails here instead of
# on the first machine with nixpkgs.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  # nixos/lib/systemd-unit-options.nix: unitOption (as in the other stub).
  unitOption = types.oneOf [ types.bool types.int types.str (types.listOf (types.oneOf [ types.bool types.int types.str ])) ];
  # nixos/modules/tasks/network-interfaces.nix: addrOpts, routeOpts.
  addrOpts = {
    options.address = mkOption { type = types.str; description = "IP address."; };
    options.prefixLength = mkOption { type = types.addCheck types.int (n: n >= 0 && n <= 128); description = "Prefix length."; };
  };
  routeOpts = {
    options.address = mkOption { type = types.str; description = "Destination."; };
    options.prefixLength = mkOption { type = types.addCheck types.int (n: n >= 0 && n <= 128); description = "Prefix length."; };
    options.via = mkOption { type = types.nullOr types.str; default = null; description = "Gateway."; };
  };
  family = {
    options.addresses = mkOption { type = types.listOf (types.submodule addrOpts); default = [ ]; description = "Addresses."; };
    options.routes = mkOption { type = types.listOf (types.submodule routeOpts); default = [ ]; description = "Routes."; };
  };
  interfaceOpts = {
    options.ipv4 = mkOption { type = types.submodule family; default = { }; description = "IPv4."; };
    options.ipv6 = mkOption { type = types.submodule family; default = { }; description = "IPv6."; };
  };
  # nixos/modules/system/boot/networkd.nix: networkOptions (the part used).
  networkOpts = {
    options.matchConfig = mkOption { type = types.attrsOf unitOption; default = { }; description = "[Match]."; };
    options.networkConfig = mkOption { type = types.attrsOf unitOption; default = { }; description = "[Network]."; };
    options.address = mkOption { type = types.listOf types.str; default = [ ]; description = "Addresses."; };
    options.dns = mkOption { type = types.listOf types.str; default = [ ]; description = "DNS servers."; };
    options.domains = mkOption { type = types.nullOr (types.listOf types.str); default = null; description = "Search domains."; };
    options.routes = mkOption { type = types.listOf (types.attrsOf unitOption); default = [ ]; description = "[Route] sections."; };
  };
  # nixos/modules/tasks/filesystems.nix: fileSystemOpts (the part used).
  fsOpts = {
    options.device = mkOption { type = types.nullOr types.nonEmptyStr; default = null; description = "Device."; };
    options.fsType = mkOption { type = types.nonEmptyStr; default = "auto"; description = "Type."; };
  };
in
{
  options = {
    # nixos/modules/tasks/network-interfaces.nix
    networking.domain = mkOption { type = types.nullOr types.str; default = null; description = "Domain."; };
    networking.useDHCP = mkOption { type = types.bool; default = true; description = "DHCP on every interface."; };
    networking.useNetworkd = mkOption { type = types.bool; default = false; description = "Use systemd-networkd."; };
    networking.interfaces = mkOption { type = types.attrsOf (types.submodule interfaceOpts); default = { }; description = "Interfaces."; };
    # nixos/modules/virtualisation/qemu-vm.nix (set by the test framework)
    networking.primaryIPAddress = mkOption { type = types.str; default = ""; description = "Primary IP address."; };
    virtualisation.vlans = mkOption { type = types.listOf types.ints.unsigned; default = [ 1 ]; description = "VLANs."; };
    virtualisation.memorySize = mkOption { type = types.ints.positive; default = 1024; description = "Memory (MiB)."; };
    # nixos/modules/system/boot/networkd.nix
    systemd.network.networks = mkOption { type = types.attrsOf (types.submodule networkOpts); default = { }; description = "networkd .network units."; };
    # nixos/lib/systemd-unit-options.nix: serviceOptions' script and
    # requiredBy, which the test's TLS service uses.
    systemd.services = mkOption {
      type = types.attrsOf (types.submodule {
        options.script = mkOption { type = types.lines; default = ""; description = "Shell commands."; };
      });
    };
    # nixos/modules/tasks/filesystems.nix
    fileSystems = mkOption { type = types.attrsOf (types.submodule fsOpts); default = { }; description = "File systems."; };
    # nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix, loader/efi.nix
    boot.loader.systemd-boot.enable = mkOption { type = types.bool; default = false; description = "systemd-boot."; };
    boot.loader.efi.canTouchEfiVariables = mkOption { type = types.bool; default = false; description = "Write EFI variables."; };
    # nixos/modules/system/boot/journald.nix
    services.journald.extraConfig = mkOption { type = types.lines; default = ""; description = "journald.conf lines."; };
    # nixos/modules/misc/version.nix
    system.stateVersion = mkOption { type = types.str; default = "26.05"; description = "State version (nixpkgs: the release, with a warning)."; };
    # nixos/modules/config/system-path.nix
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; description = "Packages."; };
  };
}
