# The cluster's DNS zone: the Nix twin of dnszone.Zone in
# src/dnszone/zone.go, byte for byte (nix/lib/tests/run.sh compares them).
# Plain master-file text, one record per line, tab separated, names
# relative to $ORIGIN, so string concatenation is enough.
let
  inherit (builtins) concatStringsSep concatMap filter map toString sort length head stringLength substring;
  svcs = import ./services.nix;
  util = import ./util.nix;

  # Fixed SOA timers, as in zone.go.
  soaRefresh = 3600;
  soaRetry = 900;
  soaExpire = 1209600;

  # The round-robin pools and the role whose hosts each holds.
  pools = [
    { name = "mx"; role = "mx"; }
    { name = "relay"; role = "relay"; }
    { name = "pop"; role = "mailproxy"; }
    { name = "imap"; role = "mailproxy"; }
  ];

  # RFC 6186's SRV records, as dnszone.SRV: the implicit-TLS ones only
  # when a host of the pool has a TLS pair.
  srvs = [
    { name = "_submission._tcp"; svc = "submission"; pool = "relay"; role = "relay"; tls = false; }
    { name = "_submissions._tcp"; svc = "submissions"; pool = "relay"; role = "relay"; tls = true; }
    { name = "_pop3s._tcp"; svc = "pop3s"; pool = "pop"; role = "mailproxy"; tls = true; }
    { name = "_imaps._tcp"; svc = "imaps"; pool = "imap"; role = "mailproxy"; tls = true; }
  ];
  svcNamed = n: head (filter (s: s.name == n) svcs.services);

  # txtStrings in zone.go: quoted character-strings of at most 255 bytes.
  txtStrings = s:
    if stringLength s <= 255 then "\"${s}\""
    else "\"${substring 0 255 s}\" " + txtStrings (substring 255 (stringLength s - 255) s);

  under = label: owner: if owner == "@" then label else "${label}.${owner}";

  addrType = addr: if util.hasInfix ":" addr then "AAAA" else "A";

  # The owner of domain relative to zone ("@" for the apex), or null when
  # the domain lies outside the zone (the ISP's own DNS delegates it).
  ownerIn = domain: zone:
    if domain == zone then "@"
    else if util.hasSuffix ".${zone}" domain then util.removeSuffix ".${zone}" domain
    else null;
in
profile:
let
  c = profile.cluster;
  zone = c.dns.zone;
  fqdn = host: "${host}.${zone}.";
  withRole = svcs.hostsWithRole profile;
  nsHosts = withRole "dns";
  # builtins.sort is stable: equal preferences keep profile order, as Go's
  # sort.SliceStable does.
  mxHosts = sort (a: b: a.mx.preference < b.mx.preference) (withRole "mx");
  line = fields: concatStringsSep "\t" fields + "\n";
  ts = toString;
  q = s: "\"${s}\"";
  ma = c.mail_auth;
  all = if ma.spf_all == "softfail" then "~all" else "-all";
  spf = if withRole "relay" != [ ] then "v=spf1 a:relay.${zone} ${all}" else "v=spf1 ${all}";
  dmarc = "v=DMARC1; p=${ma.dmarc_policy}" + (if ma.dmarc_reports != "" then "; rua=mailto:${ma.dmarc_reports}" else "");
  # writeMailAuth in zone.go.
  mailAuth =
    concatMap
      (d:
        let owner = ownerIn d zone;
        in if owner == null then [ ]
        else [
          (line [ owner "IN" "TXT" (q spf) ])
          (line [ (under "_dmarc" owner) "IN" "TXT" (q dmarc) ])
        ]
        ++ map
          (k: line [ (under "${k.selector}._domainkey" owner) "IN" "TXT" (txtStrings "v=DKIM1; k=${k.algorithm}; p=${k.public_key}") ])
          (filter (k: k.domain == d) ma.dkim_keys)
        ++ concatMap
          (s:
            let hosts = withRole s.role;
            in if hosts == [ ] || (s.tls && !builtins.any (h: h.tls != null) hosts) then [ ]
            else [ (line [ (under s.name owner) "IN" "SRV" "0 1 ${ts (svcs.port c (svcNamed s.svc))} ${s.pool}.${zone}." ]) ])
          srvs)
      c.domains
    ++ concatMap
      (h: if svcs.hasRole h "mx" || svcs.hasRole h "relay" then [ (line [ h.name "IN" "TXT" (q "v=spf1 a ${all}") ]) ] else [ ])
      profile.hosts;
in
if nsHosts == [ ] then
  throw "${profile.source}: no host has role dns: the zone ${zone} needs at least one name server"
else
  concatStringsSep "" (
    [
      "; zone ${zone} of correo cluster ${c.name}, generated from its host profile; do not edit\n"
      "$ORIGIN ${zone}.\n"
      "$TTL ${ts c.dns.ttl}\n"
      (line [ "@" "IN" "SOA" (fqdn (head nsHosts).name) "hostmaster.${zone}." "${ts c.dns.serial} ${ts soaRefresh} ${ts soaRetry} ${ts soaExpire} ${ts c.dns.ttl}" ])
    ]
    ++ map (h: line [ "@" "IN" "NS" (fqdn h.name) ]) nsHosts
    ++ concatMap
      (d:
        let owner = ownerIn d zone;
        in if owner == null then [ ]
        else map (h: line [ owner "IN" "MX" "${ts h.mx.preference} ${fqdn h.name}" ]) mxHosts)
      c.domains
    ++ map (h: line [ h.name "IN" (addrType h.address) h.address ]) profile.hosts
    ++ concatMap (p: map (h: line [ p.name "IN" (addrType h.address) h.address ]) (withRole p.role)) pools
    ++ mailAuth
  )
