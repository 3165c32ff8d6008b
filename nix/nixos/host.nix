# One host of a correo profile as a NixOS system: the machine around
# services.correo (nix/modules). The hardware-free part an ISP would
# otherwise write by hand for every host: its name, its address from the
# profile on the first Ethernet link, the cluster's DNS servers and search
# domain, a root file system and a boot loader, and services.correo for
# this host. flake.nix makes one nixosConfiguration per host with it;
# nix/tests/cluster.nix reuses it for every node of the VM test.
#
#   import ./nix/nixos/host.nix { profile = ./hosts/example.toml; host = "mx1"; }
#
# The cluster key is never put into the Nix store (the store is readable
# by every local user): keyFile (a string) names where a secret manager
# puts it before boot (services.correo.keyFile); left null, the operator
# copies it to the profile's key_file.
{ profile, host, keyFile ? null }:
{ config, lib, pkgs, ... }:
let
  correo = import ../lib;
  p = correo.loadProfile profile;
  matching = builtins.filter (h: h.name == host) p.hosts;
  h = builtins.head matching;
  prefixLength = lib.toInt (lib.last (lib.splitString "/" p.cluster.network));
  dnsServers = map (d: d.address) (builtins.filter (d: builtins.elem "dns" d.roles) p.hosts);
in
{
  # services.correo sets the host name, the resolvers and search domain,
  # and asserts that the profile has this host.
  imports = [ ../modules ];

  networking.domain = p.cluster.dns.zone;
  # systemd-networkd, as on the Debian hosts `correoctl host render`
  # writes (10-correo.network): the profile's address on the first
  # Ethernet link, kept when the link flaps.
  networking.useNetworkd = true;
  networking.useDHCP = false;
  systemd.network.networks."10-correo" = lib.mkIf (matching != [ ]) {
    matchConfig.Name = "en* eth*";
    address = [ "${h.address}/${toString prefixLength}" ];
    dns = dnsServers;
    domains = [ p.cluster.dns.zone ];
    networkConfig.IgnoreCarrierLoss = "yes";
  };

  services.correo = {
    enable = true;
    inherit profile host;
    inherit keyFile;
    openFirewall = true;
  };

  # A disk with an ext4 root labelled nixos and an ESP, as the image
  # (system.build.images.raw-efi) makes it; the VM overrides both.
  fileSystems."/" = lib.mkDefault { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  fileSystems."/boot" = lib.mkDefault { device = "/dev/disk/by-label/ESP"; fsType = "vfat"; };
  boot.loader.systemd-boot.enable = lib.mkDefault true;
  boot.loader.efi.canTouchEfiVariables = false;

  # Central syslog is the record; journald keeps a little locally.
  services.journald.extraConfig = "SystemMaxUse=200M";

  system.stateVersion = "26.05";
}
