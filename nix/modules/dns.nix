# DNS: on hosts with the dns role, NSD serves the cluster zone nix/lib
# generates (byte for byte `correoctl dns zone`), on the host's profile
# address and the profile's DNS port, binding it even before the address
# is configured (ip-freebind), as src/hostplan's nsd.conf.d file does.
# Every host resolves through the cluster's DNS servers with the zone as
# search domain (Go's resolv.conf and networkd DNS=/Domains=), as defaults.
{ config, lib, ... }:
let
  inherit (lib) mkIf mkMerge mkDefault;
  cfg = config.services.correo;
  plan = import ./plan.nix cfg;
  c = plan.profile.cluster;
in
{
  config = mkIf (cfg.enable && plan.known) (mkMerge [
    {
      networking.nameservers = mkDefault plan.dnsServers;
      networking.search = mkDefault [ c.dns.zone ];
    }
    (mkIf (plan.hasRole "dns") {
      services.nsd = {
        enable = true;
        interfaces = [ plan.host.address ];
        port = plan.port "dns";
        ipFreebind = true;
        zones.${c.dns.zone}.data = plan.correo.zone plan.profile;
      };
    })
  ]);
}
