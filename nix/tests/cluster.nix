# checks.x86_64-linux.cluster: every host of hosts/example.toml booted as
# a NixOS VM from nix/nixos/host.nix (so from services.correo), plus
# `outside`, the Internet, running the scenarios of vm-tests/scenario
# (nix/tests/cluster.py). Needs a machine with Nix, nixpkgs and KVM:
#
#   nix build .#checks.x86_64-linux.cluster -L
#   nix run .#checks.x86_64-linux.cluster.driverInteractive   # to poke at it
#
# The test framework gives every node 192.168.<vlan>.<n> on its own; the
# profile's addresses are forced instead, on vlan 1, so the cluster runs
# with exactly the addresses and DNS of the profile. The Internet is
# 192.0.2.10/24 on the same wire, reached on-link from both sides (as in
# vm-tests/netns and vm-tests/nspawn), so it is outside cluster.network:
# the cluster treats it as any sender on the Internet.
{ pkgs, correo, nss, profile ? ../../hosts/example.toml }:
let
  inherit (pkgs) lib;
  p = (import ../lib).loadProfile profile;
  zone = p.cluster.dns.zone;
  prefixLength = lib.toInt (lib.last (lib.splitString "/" p.cluster.network));
  outsideAddr = "192.0.2.10";
  dnsServers = map (h: h.address) (lib.filter (h: lib.elem "dns" h.roles) p.hosts);

  # One key for the test cluster, made at build time. It sits in the
  # store, readable by anyone on the build machine: a test key only. Real
  # hosts get theirs from the operator at services.correo.keyFile.
  testKey = pkgs.runCommand "correo-test-cluster-key" { } ''
    ${correo}/bin/correoctl key new $out
  '';

  # The Internet's domain the relay scenario writes to; its MX is outside.
  foreignZone = ''
    $ORIGIN foreign.example.
    $TTL 60
    @   IN SOA ns1.${zone}. hostmaster.foreign.example. 1 3600 900 1209600 60
    @   IN NS  ns1.${zone}.
    @   IN MX  10 mx.foreign.example.
    mx  IN A   ${outsideAddr}
  '';

  clusterNode = h: { config, ... }: {
    imports = [ (import ../nixos/host.nix { inherit profile; host = h.name; }) ];
    services.correo.package = correo;
    services.correo.nssPackage = nss;
    environment.systemPackages = [ correo ];

    virtualisation.vlans = [ 1 ];
    virtualisation.memorySize = 768;
    # The profile's address, not the framework's 192.168.1.n, on the test
    # wire only (eth0 is the driver's own link).
    networking.interfaces.eth1.ipv4.addresses = lib.mkForce [ ];
    networking.interfaces.eth1.ipv6.addresses = lib.mkForce [ ];
    networking.primaryIPAddress = lib.mkForce h.address;
    systemd.network.networks."10-correo" = {
      matchConfig.Name = lib.mkForce "eth1";
      routes = [{ Destination = "192.0.2.0/24"; Scope = "link"; }];
    };

    # The cluster key where the profile says, then owned as on every host.
    # Copied first, then given its mode by the module's own line.
    systemd.tmpfiles.rules = lib.mkBefore [ "C ${p.cluster.key_file} - - - - ${testKey}" ];

    # What an operator brings from their CA, self-signed here, before the
    # daemons that read it start.
    systemd.services.correo-test-tls = lib.mkIf (h.tls != null) {
      wantedBy = [ "multi-user.target" ];
      before = [ "correo-smtpd.service" "correo-mailproxy.service" ];
      requiredBy = [ "correo-smtpd.service" ] ++ lib.optional (lib.elem "mailproxy" h.roles) "correo-mailproxy.service";
      serviceConfig.Type = "oneshot";
      serviceConfig.RemainAfterExit = true;
      script = ''
        mkdir -p "$(dirname ${h.tls.cert})" "$(dirname ${h.tls.key})"
        if [ ! -e ${h.tls.cert} ]; then
          ${pkgs.openssl}/bin/openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
            -subj "/CN=${h.name}.${zone}" -addext "subjectAltName=DNS:${h.name}.${zone},IP:${h.address}" \
            -keyout ${h.tls.key} -out ${h.tls.cert}
        fi
        chown root:correo-tls ${h.tls.key}
        chmod 0640 ${h.tls.key}
        chmod 0644 ${h.tls.cert}
      '';
    };

    services.nsd.zones = lib.mkIf (lib.elem "dns" h.roles) {
      "foreign.example".data = foreignZone;
    };
  };

  outsideNode = { ... }: {
    virtualisation.vlans = [ 1 ];
    networking.interfaces.eth1.ipv4.addresses = lib.mkForce [{ address = outsideAddr; prefixLength = 24; }];
    networking.interfaces.eth1.ipv6.addresses = lib.mkForce [ ];
    networking.interfaces.eth1.ipv4.routes = [{ address = lib.head (lib.splitString "/" p.cluster.network); inherit prefixLength; }];
    networking.primaryIPAddress = lib.mkForce outsideAddr;
    networking.nameservers = lib.mkForce dnsServers;
    networking.firewall.allowedTCPPorts = [ 25 ];
    environment.systemPackages = [ pkgs.swaks pkgs.dnsutils pkgs.python3 pkgs.curl ];
    users.users.friend.isNormalUser = true;
    # A sender's relay on the Internet that finds the cluster's MX hosts in
    # the cluster DNS, and the MX of foreign.example.
    services.postfix = {
      enable = true;
      settings.main = {
        myhostname = "mx.foreign.example";
        mydomain = "foreign.example";
        mydestination = [ "foreign.example" "mx.foreign.example" "localhost" ];
        mynetworks = [ "127.0.0.0/8" "192.0.2.0/24" ];
        smtp_host_lookup = "dns";
        smtp_tls_security_level = "may";
        smtp_connection_cache_on_demand = false;
      };
    };
  };
in
pkgs.testers.runNixOSTest {
  name = "correo-cluster";
  nodes = lib.listToAttrs (map (h: lib.nameValuePair h.name (clusterNode h)) p.hosts) // {
    outside = outsideNode;
  };
  testScript = builtins.readFile ./cluster.py;
}
