# A small stub of the NixOS options nix/modules touches, so the modules
# evaluate offline with nixpkgs' real lib (nix/vendor/nixpkgs-lib) and Nix
# 2.8, without nixpkgs. Each option is declared with the type nixpkgs gives
# it, in the file named next to it (paths in NixOS/nixpkgs); only the
# options the modules set or read are here, and a submodule holds only the
# sub-options they use. drift.sh compares every type below with nixpkgs'
# own where a real nixpkgs is available.
#
# Where NixOS computes something from an option that the checks look at,
# the stub computes it the same way and says so: the [Unit] entries from
# description/after/requires/wants (nixos/lib/systemd-lib.nix,
# unitConfig), system.nssModules' apply and the nsswitch order
# (nixos/modules/config/nsswitch.nix), and a few of nixpkgs' assertions.
{ config, lib, ... }:
let
  inherit (lib) mkOption types mkBefore mkAfter optionalAttrs concatStringsSep;

  # nixos/lib/systemd-lib.nix: unitNameType.
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  # nixos/lib/systemd-unit-options.nix: unitOption. A value, or a list of
  # values for a key that repeats; lists from several definitions
  # concatenate, single values must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge = loc: defs:
      let defs' = lib.filterOverrides defs;
      in if lib.any (def: lib.isList def.value) defs'
      then lib.concatMap (def: lib.toList def.value) defs'
      else lib.mergeEqualOption loc defs';
  };

  # nixos/lib/systemd-unit-options.nix: checkService (through
  # systemd-lib.nix's checkUnitConfig / assertValueOneOf): Type= and
  # Restart= must be values systemd knows.
  oneOf = name: values: attrs:
    !(attrs ? ${name}) || lib.elem attrs.${name} values
    || throw "The value `${toString attrs.${name}}' for option `${name}' in section [Service] is not one of ${lib.generators.toPretty { } values}.";
  checkService = attrs:
    oneOf "Type" [ "exec" "simple" "forking" "oneshot" "dbus" "notify" "notify-reload" "idle" ] attrs
    && oneOf "Restart" [ "no" "on-success" "on-failure" "on-abnormal" "on-abort" "on-watchdog" "always" ] attrs;

  unitNames = description: mkOption { type = types.listOf unitNameType; default = [ ]; inherit description; };

  # nixos/lib/systemd-unit-options.nix: sharedOptions + commonUnitOptions
  # (the part used), and systemd-lib.nix's unitConfig, which turns them
  # into [Unit] entries.
  commonUnit = { config, ... }: {
    options = {
      enable = mkOption { type = types.bool; default = true; description = "Whether the unit exists."; };
      description = mkOption { type = types.singleLineStr; default = ""; description = "Description of this unit."; };
      wantedBy = unitNames "Units that want this unit.";
      requiredBy = unitNames "Units that require this unit.";
      requires = unitNames "Units this unit requires.";
      wants = unitNames "Units this unit wants.";
      after = unitNames "Units this unit starts after.";
      before = unitNames "Units this unit starts before.";
      unitConfig = mkOption { type = types.attrsOf unitOption; default = { }; description = "[Unit] entries."; };
    };
    config.unitConfig =
      optionalAttrs (config.requires != [ ]) { Requires = toString config.requires; }
      // optionalAttrs (config.wants != [ ]) { Wants = toString config.wants; }
      // optionalAttrs (config.after != [ ]) { After = toString config.after; }
      // optionalAttrs (config.before != [ ]) { Before = toString config.before; }
      // optionalAttrs (config.description != "") { Description = config.description; };
  };

  # nixos/lib/systemd-unit-options.nix: serviceOptions (serviceConfig).
  service = {
    imports = [ commonUnit ];
    options.serviceConfig = mkOption {
      type = types.addCheck (types.attrsOf unitOption) checkService;
      default = { };
      description = "[Service] entries.";
    };
  };

  # nixos/lib/systemd-unit-options.nix: socketOptions.
  socket = {
    imports = [ commonUnit ];
    options = {
      listenStreams = mkOption { type = types.listOf types.str; default = [ ]; description = "ListenStream= entries."; };
      listenDatagrams = mkOption { type = types.listOf types.str; default = [ ]; description = "ListenDatagram= entries."; };
      socketConfig = mkOption { type = types.attrsOf unitOption; default = { }; description = "[Socket] entries."; };
    };
  };

  # nixos/modules/config/users-groups.nix: userOpts (the part used).
  userOpts = { name, ... }: {
    options = {
      name = mkOption { type = types.passwdEntry types.str; default = name; description = "The user's name."; };
      uid = mkOption { type = types.nullOr types.int; default = null; description = "The user's UID."; };
      isSystemUser = mkOption { type = types.bool; default = false; description = "Whether this is a system user."; };
      isNormalUser = mkOption { type = types.bool; default = false; description = "Whether this is a normal user."; };
      group = mkOption { type = types.str; default = ""; description = "The user's primary group."; };
      extraGroups = mkOption { type = types.listOf types.str; default = [ ]; description = "The user's auxiliary groups."; };
      description = mkOption { type = types.passwdEntry types.str; default = ""; description = "The GECOS field."; };
      home = mkOption { type = types.passwdEntry types.path; default = "/var/empty"; description = "The user's home directory."; };
      createHome = mkOption { type = types.bool; default = false; description = "Whether to create the home directory."; };
    };
  };
  # nixos/modules/config/users-groups.nix: groupOpts.
  groupOpts = { name, ... }: {
    options = {
      name = mkOption { type = types.passwdEntry types.str; default = name; description = "The group's name."; };
      gid = mkOption { type = types.nullOr types.int; default = null; description = "The group's GID."; };
      members = mkOption { type = types.listOf (types.passwdEntry types.str); default = [ ]; description = "The group's members."; };
    };
  };

  # nixos/modules/system/etc/etc.nix: environment.etc's submodule (the part used).
  etcOpts = { name, ... }: {
    options = {
      enable = mkOption { type = types.bool; default = true; description = "Whether the file is generated."; };
      target = mkOption { type = types.str; default = name; description = "Name of the file under /etc."; };
      text = mkOption { type = types.nullOr types.lines; default = null; description = "Text of the file."; };
      source = mkOption { type = types.path; description = "Path of the source file."; };
      mode = mkOption { type = types.str; default = "symlink"; description = "Mode, or symlink."; };
    };
  };

  # nixos/modules/services/networking/nsd.nix: zoneOptions (the part used).
  nsdZone = {
    options.data = mkOption { type = types.lines; default = ""; description = "The zone file's text."; };
  };
in
{
  options = {
    # nixos/modules/misc/assertions.nix
    assertions = mkOption { type = types.listOf types.unspecified; internal = true; default = [ ]; description = "Assertions."; };
    warnings = mkOption { type = types.listOf types.str; internal = true; default = [ ]; description = "Warnings."; };

    # nixos/modules/system/boot/systemd.nix
    systemd.services = mkOption { type = types.attrsOf (types.submodule service); default = { }; description = "Services."; };
    systemd.sockets = mkOption { type = types.attrsOf (types.submodule socket); default = { }; description = "Sockets."; };
    # nixos/modules/system/boot/systemd/tmpfiles.nix
    systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; description = "tmpfiles.d lines."; };

    # nixos/modules/config/users-groups.nix
    users.users = mkOption { type = types.attrsOf (types.submodule userOpts); default = { }; description = "Users."; };
    users.groups = mkOption { type = types.attrsOf (types.submodule groupOpts); default = { }; description = "Groups."; };

    # nixos/modules/system/etc/etc.nix
    environment.etc = mkOption { type = types.attrsOf (types.submodule etcOpts); default = { }; description = "Files in /etc."; };

    # nixos/modules/config/nsswitch.nix
    system.nssModules = mkOption {
      type = types.listOf types.path;
      internal = true;
      default = [ ];
      description = "NSS modules.";
      apply = list: { inherit list; path = lib.makeLibraryPath list; };
    };
    system.nssDatabases = {
      passwd = mkOption { type = types.listOf types.str; default = [ ]; description = "passwd sources."; };
      group = mkOption { type = types.listOf types.str; default = [ ]; description = "group sources."; };
    };
    # nixos/modules/services/system/nscd.nix
    services.nscd.enable = mkOption { type = types.bool; default = true; description = "Whether to run nscd (nsncd)."; };

    # nixos/modules/tasks/network-interfaces.nix
    networking.hostName = mkOption { type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$"; default = "nixos"; description = "The host name."; };
    networking.nameservers = mkOption { type = types.listOf types.str; default = [ ]; description = "Name servers."; };
    networking.search = mkOption { type = types.listOf types.str; default = [ ]; description = "Search domains."; };

    # nixos/modules/services/networking/firewall.nix
    networking.firewall.enable = mkOption { type = types.bool; default = true; description = "Whether to enable the firewall."; };
    networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; description = "Open TCP ports."; };
    networking.firewall.allowedUDPPorts = mkOption { type = types.listOf types.port; default = [ ]; description = "Open UDP ports."; };

    # nixos/modules/services/networking/nsd.nix
    services.nsd = {
      enable = lib.mkEnableOption "NSD authoritative DNS server";
      interfaces = mkOption { type = types.listOf types.str; default = [ "127.0.0.0" "::1" ]; description = "Listen addresses."; };
      port = mkOption { type = types.int; default = 53; description = "Port."; };
      ipFreebind = mkOption { type = types.bool; default = false; description = "Bind nonlocal addresses."; };
      zones = mkOption { type = types.attrsOf (types.submodule nsdZone); default = { }; description = "Zones."; };
    };

    # nixos/modules/services/logging/rsyslogd.nix
    services.rsyslogd = {
      enable = mkOption { type = types.bool; default = false; description = "Whether to enable syslogd."; };
      extraConfig = mkOption { type = types.lines; default = ""; description = "Text appended to syslog.conf."; };
    };

    # nixos/modules/services/mail/postfix.nix (settings.main: the main.cf
    # parameters, a freeform submodule of these values)
    services.postfix = {
      enable = mkOption { type = types.bool; default = false; description = "Whether to run Postfix."; };
      settings.main = mkOption {
        type = types.submodule { freeformType = types.attrsOf (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ]); };
        default = { };
        description = "main.cf parameters.";
      };
    };

    # nixos/modules/services/mail/mail.nix
    services.mail.sendmailSetuidWrapper = mkOption { type = types.nullOr (types.attrsOf types.anything); default = null; internal = true; description = "The sendmail setuid wrapper."; };
  };

  config = {
    # nixos/modules/config/nsswitch.nix and systemd's nss-systemd
    # (nixos/modules/system/boot/systemd.nix): files first, systemd last.
    system.nssDatabases.passwd = lib.mkMerge [ (mkBefore [ "files" ]) (mkAfter [ "systemd" ]) ];
    system.nssDatabases.group = lib.mkMerge [ (mkBefore [ "files" ]) (mkAfter [ "systemd" ]) ];
    assertions = [
      # nixos/modules/config/nsswitch.nix
      {
        assertion = config.system.nssModules.path != "" -> config.services.nscd.enable;
        message = "Loading NSS modules from system.nssModules (${config.system.nssModules.path}), requires services.nscd.enable being set to true.";
      }
    ]
    # nixos/modules/config/users-groups.nix
    # nixos/modules/config/users-groups.nix
    ++ lib.mapAttrsToList
      (n: u: {
        assertion = u.isSystemUser -> u.group != "";
        message = "users.users.${n}.group is unset.";
      })
      config.users.users
    ++ lib.mapAttrsToList
      (n: u: {
        assertion = u.group == "" || config.users.groups ? ${u.group};
        message = "users.users.${n}.group = \"${u.group}\": no such group in users.groups.";
      })
      config.users.users;
  };
}
