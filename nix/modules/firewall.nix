# With openFirewall, the ports of the services this host provides in the
# profile (those of its roles; submissions and pop3s only with [host.tls],
# as their sockets), by transport: smtp/relay 25, submission 587,
# submissions 465, lmtp 24, pop3 110, pop3s 995, pop3_backend, imap 143,
# imaps 993, imap_backend, dns 53
# (TCP and UDP), syslog 514 (TCP and UDP), passwd (UDP), passwd_admin
# (TCP), mailbox_move 4424 and each daemon's metrics port (9420 + the program's offset),
# or the profile's own ports. The cluster-only daemons, and every metrics socket,
# restrict their peers to the profile's network themselves (IPAddressAllow=).
{ config, lib, ... }:
let
  inherit (lib) mkIf filter unique sort;
  cfg = config.services.correo;
  plan = import ./plan.nix cfg;
  ports = pred: sort (a: b: a < b) (unique (map (s: plan.port s.name) (filter pred plan.provided)));
in
{
  config = mkIf (cfg.enable && plan.known && cfg.openFirewall) {
    networking.firewall.allowedTCPPorts = ports (s: s.tcp);
    networking.firewall.allowedUDPPorts = ports (s: s.udp);
  };
}
