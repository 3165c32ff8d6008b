# services.correo: a NixOS host of a correo cluster, from the one host profile.
#
#   imports = [ correo.nixosModules.default ];   # or ./nix/modules
#   services.correo = {
#     enable = true;
#     package = correo.packages.${system}.default;
#     nssPackage = correo.packages.${system}.nss;
#     profile = ./hosts/example.toml;
#     host = "store1";
#     keyFile = "/run/keys/correo-cluster.key";
#   };
#
# The host's roles come from the profile, read by nix/lib (builtins only):
# the same units, accounts, files and services `correoctl host render`
# writes for a Debian host (src/hostplan), in NixOS's own options. One file
# per concern:
#   options.nix   the options, and the assertions about the profile and host
#   plan.nix      (not a module) what nix/lib says about this host
#   units.nix     systemd.services / systemd.sockets from nix/lib's units
#   accounts.nix  users, groups, tmpfiles, /etc/correo/profile.toml, hostname
#   nss.nix       libnss_correo through nscd/nsncd
#   dns.nix       NSD with the cluster zone on dns hosts; the resolver
#   syslog.nix    rsyslog: the loghost files by host, the rest forward
#   firewall.nix  the ports of the host's services
#   mda.nix       pdelivery as Postfix's local delivery agent (opt-in)
# nix/modules/tests/run.sh checks them offline against the Go side.
{
  imports = [
    ./options.nix
    ./units.nix
    ./accounts.nix
    ./nss.nix
    ./dns.nix
    ./syslog.nix
    ./firewall.nix
    ./mda.nix
  ];
}
