# The cluster's users and groups for the operating system: libnss_correo
# after `files`, as src/hostplan's nsswitch.conf has it
# ("passwd: files correo systemd": nixpkgs' nsswitch.nix puts files first
# with mkBefore and systemd last with mkAfter, so a plain definition lands
# between them).
#
# NixOS does not load NSS modules into every process: glibc there reads the
# modules of system.nssModules only through nscd's socket, and the nscd
# service (nsncd by default since NixOS 23.11) is the one process that
# loads them, with LD_LIBRARY_PATH = system.nssModules.path (nixpkgs'
# nscd.nix; nsswitch.nix asserts services.nscd.enable when
# system.nssModules is set). So on NixOS it is nsncd, not the calling
# process, that connects to nssd's Unix socket (cluster.nss.socket, by
# default /run/correo/nssd.sock). That socket must be reachable from
# nsncd's unit: nsncd runs as the static user nscd under
# ProtectSystem=strict, which leaves /run read-only but still lets it
# connect to a socket there; nssd makes the directory 0755 (its unit's
# RuntimeDirectoryMode, kept across restarts) and the socket 0666, and its
# IPAddressAllow= does not apply to Unix sockets. nsncd starts before
# nss-user-lookup.target, long before nssd: until nssd is up
# libnss_correo answers "unavailable" and `files` (the service accounts,
# root) answers alone, so nothing at boot waits for the cluster.
{ config, lib, ... }:
let
  cfg = config.services.correo;
  plan = import ./plan.nix cfg;
in
{
  config = lib.mkIf (cfg.enable && plan.known) {
    system.nssModules = [ cfg.nssPackage ];
    system.nssDatabases.passwd = [ "correo" ];
    system.nssDatabases.group = [ "correo" ];
  };
}
