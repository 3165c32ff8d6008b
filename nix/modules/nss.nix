# The cluster's users and groups for the operating system: libnss_correo
# after `files`, as src/hostplan's nsswitch.conf has it
# ("passwd: files correo systemd": nixpkgs' nsswitch.nix puts files first
# with mkBefore and systemd last with mkAfter, so a plain definition lands
# between them).
#
# NixOS does not load NSS modules into every process: glibc there only
# reads the modules of system.nssModules through nscd's socket, and the
# nscd service (nsncd by default since NixOS 23.11) is the one process that
# loads them (nixpkgs' nsswitch.nix asserts services.nscd.enable when
# system.nssModules is set). So on NixOS it is nsncd, not the calling
# process, that opens nssd's Unix socket (cluster.nss.socket, by default
# /run/correo/nssd.sock). nssd's unit makes that directory 0755 and keeps
# it across restarts, and the socket itself must be connectable by nsncd's
# (dynamic) user; nssd's IPAddressAllow= does not apply to Unix sockets.
# Nothing at boot waits for nssd: `files` answers the service accounts and
# root first, and libnss_correo answers "unavailable" while nssd is down.
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
