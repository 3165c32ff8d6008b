# The options of services.correo, and the assertions about the profile and
# the host that every other file relies on.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types literalExpression concatStringsSep;
  cfg = config.services.correo;
  plan = import ./plan.nix cfg;
  # Every role nix/lib accepts in a profile (src/cluster's Roles). Each file
  # of this module says what it does for the roles it serves; a role added
  # to nix/lib but not handled here must stop the build, not be skipped.
  rolesHandled = [ "dns" "loghost" "passwd-primary" "passwd-secondary" "mx" "relay" "storage" "mailproxy" ];
in
{
  options.services.correo = {
    enable = mkEnableOption "correo, the ISP e-mail cluster: this host's daemons, accounts and system services, from the host profile";

    package = mkOption {
      type = types.package;
      defaultText = literalExpression "correo.packages.\${system}.default";
      description = ''
        The correo programs (passwdd, nssd, pdeliveryd, pdelivery, pop3d,
        smtpd, mailproxy, correoctl) in {file}`bin/`. The flake's
        `nixosModules.default` sets it to the flake's package.
      '';
    };

    nssPackage = mkOption {
      type = types.package;
      defaultText = literalExpression "correo.packages.\${system}.nss";
      description = ''
        The package with {file}`lib/libnss_correo.so.2`, the NSS module
        that asks this host's nssd for the cluster's users and groups.
      '';
    };

    profile = mkOption {
      type = types.path;
      example = literalExpression "./hosts/example.toml";
      description = ''
        The cluster's host profile (TOML). Every host of the cluster gets
        the same file; it is installed as {file}`/etc/correo/profile.toml`,
        where the daemons read it, and decides this host's roles, ports,
        peers and policy. It holds no secret (the cluster key is
        {option}`services.correo.keyFile`), so it may live in the Nix store.
      '';
    };

    host = mkOption {
      type = types.str;
      example = "store1";
      description = ''
        This host's name in the profile (a `[[host]]` entry): its
        address and roles. Also the default host name.
      '';
    };

    keyFile = mkOption {
      # A string, never a Nix path: a path would be copied into the
      # world-readable store.
      type = types.nullOr (types.pathWith { absolute = true; inStore = false; });
      default = null;
      example = "/run/keys/correo-cluster.key";
      description = ''
        Where the cluster key is on this host before boot (put there by
        your secret manager: agenix, sops-nix, nixops keys, ...). When set,
        systemd-tmpfiles copies it to the profile's `key_file` if that file
        does not exist yet; either way `key_file` is made
        `0640 root:correo-key` at every boot. Null: the key is put at
        `key_file` some other way (`correoctl key new`, a copy).
        Must be a string, not a Nix path, so the key never enters the
        world-readable Nix store.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether to open the firewall for the services this host provides
        in the profile (SMTP, submission, POP3, LMTP, DNS, syslog, the
        passwd ports). The cluster-only daemons (passwdd, nssd,
        pdeliveryd, pop3d) still accept packets from the profile's network
        and loopback only (IPAddressAllow= in their units).
      '';
    };

    mda.enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether Postfix on this storage host hands local mail to
        {command}`pdelivery` (`mailbox_command`), which delivers it through
        this host's pdeliveryd. Needs {option}`services.postfix.enable` and
        the storage role. An MTA that can speak LMTP may instead use
        `lmtp:inet:<storage host>:24` directly and needs none of this.
      '';
    };

    rolesHandled = mkOption {
      type = types.listOf types.str;
      default = rolesHandled;
      internal = true;
      description = ''
        The roles this module knows what to do with. Internal: a host
        with any other role fails an assertion. The tests lower it to
        check that assertion.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions =
      [{
        assertion = plan.known;
        message = "services.correo.host = \"${cfg.host}\": ${toString cfg.profile} has no such host (hosts: ${concatStringsSep " " plan.hostNames}); set services.correo.host to one of them";
      }]
      ++ map
        (role: {
          assertion = builtins.elem role cfg.rolesHandled;
          message = "services.correo: host \"${cfg.host}\" has role \"${role}\" in ${toString cfg.profile}, which this NixOS module does not handle (it handles: ${concatStringsSep " " cfg.rolesHandled}); update nix/modules for the new role";
        })
        plan.roles;
  };
}
