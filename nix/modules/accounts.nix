# Accounts, directories and files, as src/hostplan's sysusers, tmpfiles and
# profile files:
# - one static system account per role family of the daemons this host
#   runs (correo-passwd, -nss, -store for pdeliveryd and pop3d, which share
#   the Maildirs, -smtp, -proxy), in its own group, with the description
#   and home Go's sysusers.d line gives it; the groups correo-key (reads
#   the cluster key) and, on hosts with [host.tls], correo-tls;
# - systemd.tmpfiles.rules: Go's tmpfiles.d lines, in order (the cluster
#   key 0640 root:correo-key, the TLS pair, data_dir owned by the Maildir
#   account, /var/log/correo), plus, with keyFile, a line that copies the
#   key into place before the one that sets its owner and mode;
# - /etc/correo/profile.toml, where every daemon reads the profile;
# - the host name (Go's /etc/hostname): the loghost files each host's log
#   by it. Above mkDefault, so that the NixOS test framework's default
#   (the node's name) does not conflict with it; a plain definition wins.
{ config, lib, ... }:
let
  inherit (lib) mkIf filter head elemAt hasSuffix removePrefix removeSuffix
    foldl' listToAttrs optional optionals;
  cfg = config.services.correo;
  plan = import ./plan.nix cfg;
  inherit (plan) host rules;
  c = plan.profile.cluster;

  # The service units in order, and the value of a [Service] key of one.
  services = filter (u: hasSuffix ".service" u.name) plan.units;
  serviceKey = key: u:
    let es = filter (e: elemAt e 0 == key) (foldl' (acc: s: acc ++ s.entries) [ ] u.sections);
    in if es == [ ] then null else elemAt (head es) 1;
  programOf = u: removeSuffix ".service" (removePrefix "correo-" u.name);

  # sysusers(): one account per User=, first daemon's name wins.
  accounts = foldl'
    (acc: u:
      let user = serviceKey "User" u;
      in if user == null || builtins.elem user (map (a: a.user) acc) then acc
      else acc ++ [{ inherit user; program = programOf u; }])
    [ ] services;

  # The account that owns the Maildirs: the first mail daemon's (the one
  # with ReadWritePaths= data_dir), as tmpfiles() in Go.
  mailUser =
    let m = filter (u: serviceKey "ReadWritePaths" u != null) services;
    in if m == [ ] then null else serviceKey "User" (head m);

  tmpfiles =
    [
      "d ${rules.stateRoot} 0755 root root -"
    ]
    ++ optional (cfg.keyFile != null) "C ${c.key_file} - - - - ${cfg.keyFile}"
    ++ [ "z ${c.key_file} 0640 root ${rules.keyGroup} -" ]
    ++ optionals (host.tls != null) [
      "z ${host.tls.cert} 0644 root root -"
      "z ${host.tls.key} 0640 root ${rules.tlsGroup} -"
    ]
    # The relays' DKIM private keys (tmpfiles() in Go).
    ++ optionals (builtins.elem "relay" host.roles && c.mail_auth.dkim_records != "") [
      "d ${c.mail_auth.dkim_key_dir} 0750 root ${rules.keyGroup} -"
      "Z ${c.mail_auth.dkim_key_dir} - root ${rules.keyGroup} -"
    ]
    ++ optional (host.storage != null && mailUser != null) "d ${host.storage.data_dir} 0750 ${mailUser} ${mailUser} -"
    ++ [ "d /var/log/correo 0750 root adm -" ];
in
{
  config = mkIf (cfg.enable && plan.known) {
    users.users = listToAttrs (map
      (a: {
        name = a.user;
        value = {
          isSystemUser = true;
          group = a.user;
          description = "correo ${a.program}";
          home = "${rules.stateRoot}/${a.program}";
        };
      })
      accounts);
    users.groups = listToAttrs (map (name: { inherit name; value = { }; })
      ([ rules.keyGroup ] ++ optional (host.tls != null) rules.tlsGroup ++ map (a: a.user) accounts));

    systemd.tmpfiles.rules = tmpfiles;

    environment.etc = {
      ${removePrefix "/etc/" rules.profilePath}.source = cfg.profile;
    }
    # The DKIM records file beside the profile, as host render installs
    # it (a relative dkim_records; an absolute one is the operator's).
    // lib.optionalAttrs (c.mail_auth.dkim_records != "" && builtins.substring 0 1 c.mail_auth.dkim_records != "/") {
      "${dirOf (removePrefix "/etc/" rules.profilePath)}/${c.mail_auth.dkim_records}".source =
        "${dirOf (toString cfg.profile)}/${c.mail_auth.dkim_records}";
    };

    networking.hostName = lib.mkOverride 900 cfg.host;
  };
}
