# Evaluates nix/modules with nixpkgs' real lib and stub.nix (no nixpkgs),
# for nix/modules/tests/run.sh. Called as
#
#   nix-instantiate --eval --strict --json nix/modules/tests/eval.nix \
#     --arg nixpkgsLib /path/to/nixpkgs-lib/lib --argstr profile /abs/hosts/x.toml \
#     [--argstr host mx1] [--argstr what view|force|compare] [--arg extra '{ ... }']
#
# what = "force" (one host, or every host of the profile): the whole
#   config, minus _module, forced with deepSeq (evaluation is lazy: an
#   option nobody reads is never checked), then the failed assertions
#   thrown as NixOS's top-level does; the result is the host names.
# what = "view" (default): the same, then per host what the checks compare
#   with the Go side: the units written back as unit entries, the
#   accounts, tmpfiles lines, rsyslog text, NSD, NSS, firewall ports, /etc.
# what = "compare" (with golden = the Go units JSON): per host, the units
#   of the module against `correoctl host plan`'s, key by key; the result
#   is the list of differences ([] when equal) and what was normalised.
# extra: one more module (an attrset or a function), for the negative tests.
{ nixpkgsLib, profile, host ? null, what ? "view", extra ? { }, golden ? null }:
let
  lib = import nixpkgsLib;
  inherit (lib) filter mapAttrs mapAttrsToList attrNames concatMap concatStringsSep hasPrefix
    removePrefix hasSuffix toList sort unique listToAttrs foldl' elemAt;
  correo = import ../../lib;
  p = correo.loadProfile profile;
  hosts = if host == null then map (h: h.name) p.hosts else [ host ];

  # Stand-ins for store paths (types.package takes a store path string).
  store = name: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-${name}";
  package = store "correo-0.1.0";
  nssPackage = store "correo-nss-0.1.0";
  pkgs = { coreutils = store "coreutils-9.7"; };

  evalHost = h: lib.evalModules {
    modules = [
      ./stub.nix
      ../default.nix
      {
        _module.args.pkgs = pkgs;
        services.correo = {
          enable = true;
          inherit package nssPackage;
          profile = /. + profile;
          host = h;
        };
      }
      # Storage hosts also run Postfix with pdelivery as its local MDA, so
      # mda.nix is evaluated too.
      (if builtins.any (x: x.name == h && builtins.elem "storage" x.roles) p.hosts
       then { services.postfix.enable = true; services.correo.mda.enable = true; } else { })
      extra
    ];
  };

  # NixOS's top-level: warnings traced, failed assertions thrown.
  forced = h:
    let
      e = evalHost h;
      config = removeAttrs e.config [ "_module" ];
      failed = map (a: a.message) (filter (a: !a.assertion) config.assertions);
    in
    builtins.deepSeq config (
      if failed != [ ] then throw "host ${h}: Failed assertions:\n${concatStringsSep "\n" (map (m: "- ${m}") failed)}"
      else lib.foldr (w: x: builtins.trace "warning: ${w}" x) config config.warnings);

  # nixos/lib/systemd-lib.nix: toOption, and a value or list of them.
  toOption = x: if x == true then "true" else if x == false then "false" else toString x;
  entries = attrs: mapAttrs (_: v: map toOption (toList v)) attrs;

  # A NixOS unit written back as section -> key -> [ values ]: [Unit] is
  # unitConfig (which NixOS fills from description/after/requires too),
  # the body its config, [Install] WantedBy the wantedBy links.
  unitBack = kind: name: u: {
    name = "${name}.${kind}";
    value = {
      Unit = entries u.unitConfig;
      ${if kind == "service" then "Service" else "Socket"} =
        if kind == "service" then entries u.serviceConfig
        else entries u.socketConfig
          // lib.optionalAttrs (u.listenStreams != [ ]) { ListenStream = u.listenStreams; }
          // lib.optionalAttrs (u.listenDatagrams != [ ]) { ListenDatagram = u.listenDatagrams; };
    } // lib.optionalAttrs (u.wantedBy != [ ]) { Install.WantedBy = [ (toString u.wantedBy) ]; };
  };
  correoUnits = kind: units:
    mapAttrsToList (unitBack kind) (lib.filterAttrs (n: _: hasPrefix "correo-" n) units);

  # The two paths that differ from Go's, back to Go's.
  binDir = correo.unitRules.binDir;
  normalise = key: v:
    if key == "ExecStart" && hasPrefix "${package}/bin/" v then "${binDir}/${removePrefix "${package}/bin/" v}"
    else if key == "ExecReload" && hasPrefix "${pkgs.coreutils}/bin/kill " v then "/bin/kill ${removePrefix "${pkgs.coreutils}/bin/kill " v}"
    else v;

  view = h:
    let c = forced h;
    in {
      units = listToAttrs (correoUnits "service" c.systemd.services ++ correoUnits "socket" c.systemd.sockets);
      users = mapAttrs (_: u: { inherit (u) isSystemUser group description home; }) c.users.users;
      groups = attrNames c.users.groups;
      tmpfiles = c.systemd.tmpfiles.rules;
      etc = mapAttrs (_: f: toString f.source) c.environment.etc;
      inherit (c.networking) hostName nameservers search;
      nss = { modules = map toString c.system.nssModules.list; inherit (c.system.nssDatabases) passwd group; };
      rsyslog = { inherit (c.services.rsyslogd) enable extraConfig; };
      syslogUnit = if c.systemd.services ? syslog then { inherit (c.systemd.services.syslog) after wants; } else null;
      nsd = {
        inherit (c.services.nsd) enable interfaces port ipFreebind;
        zones = mapAttrs (_: z: z.data) c.services.nsd.zones;
      };
      firewall = { tcp = c.networking.firewall.allowedTCPPorts; udp = c.networking.firewall.allowedUDPPorts; };
      mailboxCommand = c.services.postfix.settings.main.mailbox_command or null;
      inherit package;
    };

  # The units of `correoctl host plan` in the same shape: section -> key
  # -> values in the order Go writes them.
  goUnits = units: listToAttrs (map
    (u: {
      inherit (u) name;
      value = listToAttrs (map
        (s: {
          inherit (s) name;
          value = foldl' (acc: e: acc // { ${elemAt e 0} = (acc.${elemAt e 0} or [ ]) ++ [ (elemAt e 1) ]; }) { } s.entries;
        })
        u.sections);
    })
    units);

  compareHost = h: goHost:
    let
      nix = (view h).units;
      go = goUnits goHost;
      names = sort (a: b: a < b) (unique (attrNames nix ++ attrNames go));
      normalised = lib.count (x: x) (concatMap
        (n: concatMap
          (s: concatMap (k: map (v: normalise k v != v) nix.${n}.${s}.${k}) (attrNames nix.${n}.${s}))
          (attrNames (nix.${n} or { })))
        (attrNames nix));
      diffUnit = n:
        if !(nix ? ${n}) then [ "${h}: ${n}: in correoctl host plan, not made by the module" ]
        else if !(go ? ${n}) then [ "${h}: ${n}: made by the module, not in correoctl host plan" ]
        else concatMap
          (s:
            let
              gs = go.${n}.${s} or { };
              ns = nix.${n}.${s} or { };
            in
            concatMap
              (k:
                let
                  gv = gs.${k} or null;
                  nv = if ns ? ${k} then map (normalise k) ns.${k} else null;
                in
                if gv == nv then [ ]
                else [ "${h}: ${n} [${s}] ${k}: Go ${builtins.toJSON gv}, module ${builtins.toJSON nv}" ])
              (sort (a: b: a < b) (unique (attrNames gs ++ attrNames ns))))
          (sort (a: b: a < b) (unique (attrNames go.${n} ++ attrNames nix.${n})));
    in
    {
      diffs = concatMap diffUnit names;
      units = builtins.length names;
      keys = lib.foldl' (acc: n: acc + lib.foldl' (a: s: a + builtins.length (attrNames s)) 0 (builtins.attrValues (nix.${n} or { }))) 0 names;
      inherit normalised;
    };
in
if what == "force" then map (h: builtins.seq (forced h) h) hosts
else if what == "view" then listToAttrs (map (h: { name = h; value = view h; }) hosts)
else if what == "compare" then
  let g = builtins.fromJSON (builtins.readFile golden);
  in listToAttrs (map (h: { name = h; value = compareHost h (g.${h} or (throw "golden ${golden} has no host ${h}")); }) hosts)
else throw "eval.nix: what must be force, view or compare, not ${what}"
