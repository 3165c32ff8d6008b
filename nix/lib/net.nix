# IP address and network arithmetic with integers, enough to validate the
# cluster network and host addresses the way Go's net/netip does.
#
# IPv4 is handled exactly: the same syntax as netip.ParseAddr (four decimal
# octets, no leading zeros), CIDR prefixes, host bits, containment.
# IPv6 is only checked for its character set: an address or network that
# looks like IPv6 is accepted as written, and containment of an IPv6
# address in an IPv6 network is not checked here (Go checks it, and Go is
# what every daemon runs, so a bad IPv6 profile still fails at boot). A
# family mismatch (IPv4 address, IPv6 network or the reverse) is caught,
# as netip.Prefix.Contains is false for it.
let
  inherit (builtins) match elemAt length foldl' genList concatStringsSep toString;
  util = import ./util.nix;
  octetRe = "(0|[1-9][0-9]{0,2})";
in
rec {
  # "10.77.0.2" -> 172818434, or null when it is not an IPv4 address.
  parseIPv4 = s:
    let m = match "${octetRe}\\.${octetRe}\\.${octetRe}\\.${octetRe}" s;
    in if m == null then null
    else
      let octets = map util.parseDecimal m;
      in if builtins.any (o: o > 255) octets then null
      else foldl' (acc: o: acc * 256 + o) 0 octets;

  formatIPv4 = n:
    concatStringsSep "." (map (i: toString (mod (n / (util.pow 256 (3 - i))) 256)) (genList (x: x) 4));

  mod = a: b: a - (a / b) * b;

  # A loose IPv6 check (see above): hex digits and colons, at least two
  # colons, an optional dotted IPv4 tail. parseAddr also takes upper case,
  # so that profile.nix can say "not canonical" rather than "not an address".
  isIPv6 = s: match "[0-9a-f:]*:[0-9a-f]*:[0-9a-f:]*(\\.[0-9.]+)?" s != null;

  # { family = 4|6; addr; } or null.
  parseAddr = s:
    let v4 = parseIPv4 s;
    in if v4 != null then { family = 4; addr = v4; }
    else if isIPv6 (util.toLower s) then { family = 6; addr = s; }
    else null;

  # "10.77.0.0/24" -> { family; addr; bits; masked (string); }, or null.
  parsePrefix = s:
    let m = match "([^/]+)/(0|[1-9][0-9]{0,2})" s;
    in if m == null then null
    else
      let
        a = parseAddr (elemAt m 0);
        bits = util.parseDecimal (elemAt m 1);
      in if a == null then null
      else if a.family == 4 then
        (if bits > 32 then null
         else
           let
             block = util.pow 2 (32 - bits);
             net = a.addr - mod a.addr block;
           in { family = 4; inherit bits block; addr = a.addr; network = net; masked = "${formatIPv4 net}/${toString bits}"; })
      else
        (if bits > 128 then null else { family = 6; inherit bits; addr = a.addr; masked = s; });

  # Whether the written prefix has no host bits (IPv6: assumed, see above).
  isMasked = p: p.family == 6 || p.addr == p.network;

  contains = p: a:
    if p.family != a.family then false
    else if p.family == 6 then true
    else a.addr - mod a.addr p.block == p.network;

  # netip.AddrPort's String form.
  hostPort = addr: port:
    if util.hasInfix ":" addr then "[${addr}]:${toString port}" else "${addr}:${toString port}";
}
