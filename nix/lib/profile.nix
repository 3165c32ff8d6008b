# Loading a host profile: the Nix twin of src/cluster/load.go.
#
# A profile is read with builtins.fromTOML, checked, and completed with the
# same defaults Go applies, so nix/lib/settings.nix and zone.nix see exactly
# what the daemons see. Errors use Go's wording ("<source>: <key>: <msg>")
# so that the bad profiles in src/cluster/testdata/bad, whose first line
# names the expected message, test both implementations with one file.
#
# Differences from Go, each on purpose:
#  - no line numbers (fromTOML keeps no positions);
#  - the cluster key file is not checked: Nix evaluates profiles for other
#    machines, where the key does not exist (Go skips it too with
#    Options.SkipFiles);
#  - checks run in three phases and the first phase with problems throws
#    all of its messages at once: (1) unknown keys and wrong value types
#    (Go's TOML decoder stops at the first type error; unknown keys Go
#    reports with the rest), (2) everything Go's validator checks, (3) port
#    clashes (Go too runs them only on an otherwise valid profile);
#  - durations accept Go's integer forms only (h, m, s, ms, combined as in
#    "1m30s"); Go also takes fractions and us/ns, which no profile needs;
#  - IPv6 is checked loosely, see net.nix.
let
  inherit (builtins) attrNames concatStringsSep concatLists concatMap elem elemAt
    filter foldl' fromTOML genList hasAttr head isAttrs isBool isInt isList isString
    length listToAttrs match readFile split stringLength toString typeOf;
  util = import ./util.nix;
  net = import ./net.nix;
  svcs = import ./services.nix;
  inherit (util) quote goList toLower imap0;

  # --- phase 1: shape -------------------------------------------------------

  # The TOML schema, in Go's struct field order (the order Go lists the
  # expected keys in when it meets an unknown one).
  t = {
    str = "string";
    int = "integer";
    bool = "boolean";
    strs = "array of strings";
  };
  table = fields: { table = fields; };
  arrayOfTables = fields: { arrayOf = fields; };
  mailproxyTable = table [
    { k = "fail_delay"; t = t.str; }
    { k = "max_fail_delay"; t = t.str; }
    { k = "max_connections"; t = t.int; }
    { k = "max_connections_per_client"; t = t.int; }
  ];

  schema = table [
    {
      k = "cluster";
      t = table [
        { k = "name"; t = t.str; }
        { k = "domains"; t = t.strs; }
        { k = "network"; t = t.str; }
        { k = "key_file"; t = t.str; }
        { k = "layout"; t = t.str; }
        { k = "placement"; t = t.str; }
        { k = "trusted_network"; t = t.bool; }
        { k = "run_as"; t = t.str; }
        { k = "shutdown_grace"; t = t.str; }
        {
          k = "passwd";
          t = table [
            { k = "udp_port"; t = t.int; }
            { k = "tcp_port"; t = t.int; }
            { k = "timeout"; t = t.str; }
            { k = "bcrypt_cost"; t = t.int; }
            { k = "auth_cache_ttl"; t = t.str; }
            { k = "auth_cache_entries"; t = t.int; }
            { k = "auth_queue"; t = t.int; }
          ];
        }
        {
          k = "log";
          t = table [
            { k = "target"; t = t.str; }
            { k = "network"; t = t.str; }
            { k = "level"; t = t.str; }
          ];
        }
        {
          k = "dns";
          t = table [
            { k = "zone"; t = t.str; }
            { k = "serial"; t = t.int; }
            { k = "ttl"; t = t.int; }
          ];
        }
        { k = "ports"; t = table (map (k: { inherit k; t = t.int; }) svcs.portKeys); }
        {
          k = "nss";
          t = table [
            { k = "positive_ttl"; t = t.str; }
            { k = "negative_ttl"; t = t.str; }
            { k = "cache_entries"; t = t.int; }
            { k = "socket"; t = t.str; }
            { k = "socketmap"; t = t.str; }
            {
              k = "groups";
              t = arrayOfTables [
                { k = "name"; t = t.str; }
                { k = "gid"; t = t.int; }
              ];
            }
          ];
        }
        {
          k = "queue";
          t = table [
            { k = "retry"; t = t.strs; }
            { k = "lifetime"; t = t.str; }
          ];
        }
        {
          k = "moves";
          t = table [
            { k = "grace"; t = t.str; }
            { k = "freeze_timeout"; t = t.str; }
            { k = "rate_limit_mb"; t = t.int; }
            { k = "journal_dir"; t = t.str; }
          ];
        }
        {
          k = "mail_auth";
          t = table [
            { k = "spf_all"; t = t.str; }
            { k = "dmarc_policy"; t = t.str; }
            { k = "dmarc_reports"; t = t.str; }
            { k = "dkim_records"; t = t.str; }
            { k = "dkim_key_dir"; t = t.str; }
            { k = "dkim_publish_wait"; t = t.str; }
            { k = "authserv_id"; t = t.str; }
            { k = "inbound"; t = t.str; }
          ];
        }
        {
          k = "milter";
          t = arrayOfTables [
            { k = "name"; t = t.str; }
            { k = "address"; t = t.str; }
            { k = "roles"; t = t.strs; }
            { k = "timeout"; t = t.str; }
            { k = "on_failure"; t = t.str; }
          ];
        }
      ];
    }
    {
      k = "host";
      t = arrayOfTables [
        { k = "name"; t = t.str; }
        { k = "address"; t = t.str; }
        { k = "roles"; t = t.strs; }
        { k = "mx"; t = table [ { k = "preference"; t = t.int; } ]; }
        {
          k = "storage";
          t = table [
            { k = "data_dir"; t = t.str; }
            { k = "weight"; t = t.int; }
          ];
        }
        {
          k = "smtpd";
          t = table [
            { k = "max_message_bytes"; t = t.int; }
            { k = "max_recipients"; t = t.int; }
            { k = "max_connections"; t = t.int; }
            { k = "max_connections_per_client"; t = t.int; }
            { k = "max_messages_per_hour"; t = t.int; }
            { k = "expose_auth_user"; t = t.bool; }
            { k = "command_timeout"; t = t.str; }
            { k = "data_timeout"; t = t.str; }
            { k = "workers"; t = t.int; }
          ];
        }
        { k = "mailproxy"; t = mailproxyTable; }
        # [host.popproxy]: the section's name before the proxy served IMAP.
        { k = "popproxy"; t = mailproxyTable; }
        {
          k = "tls";
          t = table [
            { k = "cert"; t = t.str; }
            { k = "key"; t = t.str; }
          ];
        }
      ];
    }
  ];

  tomlType = v:
    { int = "integer"; float = "float"; string = "string"; bool = "boolean"; list = "array"; set = "table"; }.${typeOf v} or (typeOf v);

  # Problems with the value v at path (dotted, as Go's Undecoded keys are)
  # against type ty; each problem is { key; msg; }.
  checkShape = path: ty: v:
    let bad = want: [{ key = path; msg = "expected ${want}, got ${tomlType v}"; }];
    in
    if ty == t.str then (if isString v then [ ] else bad "a string")
    else if ty == t.int then (if isInt v then [ ] else bad "an integer")
    else if ty == t.bool then (if isBool v then [ ] else bad "a boolean (true or false)")
    else if ty == t.strs then (if isList v && builtins.all isString v then [ ] else bad "an array of strings")
    else if ty ? table then (if isAttrs v then checkTable path ty.table v else bad "a table")
    else if ty ? arrayOf then
      (if isList v && builtins.all isAttrs v
       then concatMap (checkTable path ty.arrayOf) v
       else bad "an array of tables ([[${path}]])")
    else throw "correo/nix/lib: bad schema type at ${path}";

  checkTable = path: fields: v:
    let
      known = map (f: f.k) fields;
      sub = k: if path == "" then k else "${path}.${k}";
    in
    concatMap
      (k:
        let f = head (filter (f: f.k == k) fields);
        in if elem k known then checkShape (sub k) f.t v.${k}
        else [{ key = sub k; msg = "unknown key ${quote k}; expected one of: ${concatStringsSep ", " known}"; }])
      (attrNames v);

  # --- helpers mirroring load.go ---------------------------------------------

  isLabel = s: stringLength s >= 1 && stringLength s <= 63 && match "[a-z0-9]([a-z0-9-]*[a-z0-9])?" s != null;

  isDomain = s:
    let labels = filter isString (split "\\." s);
    in stringLength s >= 1 && stringLength s <= 253 && length labels >= 2 && builtins.all isLabel labels;

  # Go duration strings, integer forms only (see the header), to
  # milliseconds: { ms; } or { error; }.
  parseDuration = s:
    let
      unit = { h = 3600000; m = 60000; s = 1000; ms = 1; };
      parts = filter isList (split "([0-9]+)(ms|h|m|s)" s);
      tooBig = builtins.any (p: stringLength (elemAt p 0) > 9) parts;
      ms = foldl' (acc: p: acc + util.parseDecimal (elemAt p 0) * unit.${elemAt p 1}) 0 parts;
    in
    if match "([0-9]+(ms|h|m|s))+" s == null then
      { error = "expected a duration such as \"2s\" or \"1m30s\", got ${quote s} (units: h, m, s, ms)"; }
    else if tooBig then { error = "${s} is too long for a failover timeout: clients would hang that long when the primary is down (the paper uses 2s)"; }
    else if ms <= 0 then { error = "expected a positive duration, got ${quote s}"; }
    else { inherit ms; };

  # time.Duration.String for whole milliseconds: "2s", "1m30s", "500ms",
  # "1.5s", "1h0m0s".
  formatDuration = ms:
    let
      h = ms / 3600000;
      m = (ms / 60000) - h * 60;
      s = (ms / 1000) - (ms / 60000) * 60;
      frac = ms - (ms / 1000) * 1000;
      fracStr =
        if frac == 0 then ""
        else "." + util.removeSuffix "0" (util.removeSuffix "0" (builtins.substring 1 3 (toString (1000 + frac))));
      secs = "${toString s}${fracStr}s";
    in
    if ms < 1000 then "${toString ms}ms"
    else if h > 0 then "${toString h}h${toString m}m${secs}"
    else if m > 0 then "${toString m}m${secs}"
    else secs;

  # --- phases 2 and 3 --------------------------------------------------------

  validate = source: raw:
    let
      err = key: msg: { inherit key msg; };
      rc = raw.cluster or { };
      get = set: k: def: set.${k} or def;

      # Go's decoded Cluster, zero values where the profile is silent.
      passwdRaw = rc.passwd or { };
      logRaw = rc.log or { };
      dnsRaw = rc.dns or { };
      portsRaw = rc.ports or { };

      name = get rc "name" "";
      domains = map toLower (get rc "domains" [ ]);
      network = get rc "network" "";
      keyFile = get rc "key_file" "";
      layout = get rc "layout" "";
      placement = get rc "placement" "";
      runAs = get rc "run_as" "";
      shutdownGrace = if rc ? shutdown_grace then parseDuration rc.shutdown_grace else { ms = 30000; };
      udpPort = get passwdRaw "udp_port" 0;
      tcpPort = get passwdRaw "tcp_port" 0;
      timeout = if passwdRaw ? timeout then parseDuration passwdRaw.timeout else { ms = 2000; };
      # validatePasswdAuth in Go.
      bcryptCost = let x = get passwdRaw "bcrypt_cost" 0; in if x == 0 then 10 else x;
      authCacheTTL = if passwdRaw ? auth_cache_ttl then parseDuration passwdRaw.auth_cache_ttl else { ms = 900000; };
      authCacheEntries = let x = get passwdRaw "auth_cache_entries" 0; in if x == 0 then 1000000 else x;
      authQueue = let x = get passwdRaw "auth_queue" 0; in if x == 0 then 1024 else x;

      logTarget = let x = get logRaw "target" ""; in if x == "" then "stderr" else x;
      logNetworkRaw = get logRaw "network" "";
      logNetwork = if logTarget == "syslog" && logNetworkRaw == "" then "udp" else logNetworkRaw;
      logLevel = let x = get logRaw "level" ""; in if x == "" then "info" else x;

      zone =
        let z = get dnsRaw "zone" "";
        in toLower (if z == "" && domains != [ ] then head domains else z);
      serial = let x = get dnsRaw "serial" 0; in if x == 0 then 1 else x;
      ttl = let x = get dnsRaw "ttl" 0; in if x == 0 then 300 else x;
      ports = listToAttrs (map (k: { name = k; value = get portsRaw k 0; }) svcs.portKeys);

      # [cluster.nss] (validateNSS in Go).
      nssRaw = rc.nss or { };
      nssTTL = k: def: if nssRaw ? ${k} then parseDuration nssRaw.${k} else { ms = def; };
      positiveTTL = nssTTL "positive_ttl" 300000;
      negativeTTL = nssTTL "negative_ttl" 30000;
      cacheEntries = let x = get nssRaw "cache_entries" 0; in if x == 0 then 100000 else x;
      nssSocket = let x = get nssRaw "socket" ""; in if x == "" then "/run/correo/nssd.sock" else x;
      nssSocketmap = get nssRaw "socketmap" "";
      # dirPart in Go: everything before the last '/', uncleaned.
      dirPart = p: let m = match "(.*)/[^/]*" p; in if m == null then "" else head m;
      nssGroups =
        let g = map (x: { name = x.name or ""; gid = x.gid or 0; }) (get nssRaw "groups" [ ]);
        in if g == [ ] then [{ name = "correo"; gid = 5000; }] else g;
      # [cluster.queue] (defaults in validateCluster in Go).
      queueRaw = rc.queue or { };
      queueRetry =
        let r = map parseDuration (get queueRaw "retry" [ ]);
        in if r == [ ] then map (ms: { inherit ms; }) [ 60000 300000 900000 1800000 3600000 ] else r;
      queueLifetime = if queueRaw ? lifetime then parseDuration queueRaw.lifetime else { ms = 432000000; };
      # [cluster.moves] (validateMoves in Go).
      movesRaw = rc.moves or { };
      moveDuration = k: def:
        let d = if movesRaw ? ${k} then parseDuration movesRaw.${k} else { ms = 0; };
        in if d ? error then d else if d.ms == 0 then { ms = def; } else d;
      moveGrace = moveDuration "grace" 604800000;
      moveFreezeTimeout = moveDuration "freeze_timeout" 10000;
      moveRateLimit = get movesRaw "rate_limit_mb" 0;
      moveJournalDir = let x = get movesRaw "journal_dir" ""; in if x == "" then "/var/lib/correo/moves" else x;
      movesErrors = concatLists [
        (if moveGrace ? error then [ (err "cluster.moves.grace" moveGrace.error) ] else [ ])
        (if moveFreezeTimeout ? error then [ (err "cluster.moves.freeze_timeout" moveFreezeTimeout.error) ] else [ ])
        (if moveRateLimit < 0 then [ (err "cluster.moves.rate_limit_mb" "${toString moveRateLimit} must be positive (MB/s; 0 for no limit)") ] else [ ])
      ];
      # [[cluster.milter]] (validateMilters in Go).
      milters = map
        (m: {
          name = m.name or "";
          address = m.address or "";
          roles = m.roles or [ ];
          timeout = if m ? timeout then parseDuration m.timeout else { ms = 30000; };
          on_failure = let x = m.on_failure or ""; in if x == "" then "tempfail" else x;
        })
        (rc.milter or [ ]);
      validMilterAddress = a:
        let
          u = builtins.match "unix:(/.+)" a;
          t = builtins.match "tcp:(.+):([0-9]+)" a;
          digits = if t == null then [ "0" ] else builtins.match "0*([0-9]{1,6}).*" (elemAt t 1);
          port = if digits == null then 0 else builtins.fromJSON (if head digits == "" then "0" else head digits);
        in u != null || (t != null && builtins.match "[][]*" (elemAt t 0) == null
          && port >= 1 && port <= 65535);
      milterErrors = concatLists (imap0
        (i: m:
          let
            key = "cluster.milter[${toString i}]";
            before = genList (j: elemAt milters j) i;
          in
          concatLists [
            (if !isLabel m.name then [ (err "${key}.name" "${quote m.name} is not a name: use 1-63 lower-case letters, digits and '-'") ]
             else if builtins.any (b: b.name == m.name) before then [ (err "${key}.name" "milter ${quote m.name} named twice") ]
             else [ ])
            (if validMilterAddress m.address then [ ] else [ (err "${key}.address" "${quote m.address} is not a milter address: want \"tcp:HOST:PORT\" or \"unix:/PATH\"") ])
            (if m.roles == [ ] then [ (err "${key}.roles" "missing: \"mx\" (mail from outside), \"relay\" (the cluster's own mail) or both") ] else [ ])
            (concatMap (r: if elem r [ "mx" "relay" ] then [ ] else [ (err "${key}.roles" "role ${quote r} has no smtpd: expected \"mx\" or \"relay\"") ]) m.roles)
            (if m.timeout ? error then [ (err "${key}.timeout" m.timeout.error) ]
             else if m.timeout.ms > 600000 then [ (err "${key}.timeout" "${formatDuration m.timeout.ms} is out of range: more than 0s, at most 10m0s") ]
             else [ ])
            (if elem m.on_failure [ "tempfail" "accept" ] then [ ] else [ (err "${key}.on_failure" "unknown failure policy ${quote m.on_failure}: expected \"tempfail\" or \"accept\"") ])
          ])
        milters);
      # [cluster.mail_auth] (validateMailAuth in Go).
      mailAuthRaw = rc.mail_auth or { };
      spfAll = let x = get mailAuthRaw "spf_all" ""; in if x == "" then "fail" else x;
      dmarcPolicy = let x = get mailAuthRaw "dmarc_policy" ""; in if x == "" then "none" else x;
      dmarcReports = get mailAuthRaw "dmarc_reports" "";
      dkimRecords = get mailAuthRaw "dkim_records" "";
      authServIDRaw = toLower (get mailAuthRaw "authserv_id" "");
      authServID = if authServIDRaw == "" then zone else authServIDRaw;
      inbound = let x = get mailAuthRaw "inbound" ""; in if x == "" then "enforce" else x;
      dkimKeyDir = let x = get mailAuthRaw "dkim_key_dir" ""; in if x == "" then "/var/lib/correo/dkim" else x;
      dkimPublishWait = if mailAuthRaw ? dkim_publish_wait then parseDuration mailAuthRaw.dkim_publish_wait else { ms = 3600000; };
      # Profile.DKIMRecordsPath: relative to the profile's directory. A
      # file not made yet holds no keys (dkimkeys.Load). Go also checks
      # each public key's encoding, which Nix cannot decode.
      dkimPath = if dkimRecords == "" || builtins.substring 0 1 dkimRecords == "/" then dkimRecords
        else "${dirOf source}/${dkimRecords}";
      dkimFile = if dkimPath != "" && builtins.pathExists dkimPath then fromTOML (readFile dkimPath) else { };
      dkimKeys = map
        (k: { domain = k.domain or ""; selector = k.selector or ""; algorithm = k.algorithm or ""; public_key = k.public_key or ""; created = k.created or ""; })
        (dkimFile.key or [ ]);
      # Go stops at the first bad key (dkimkeys.Parse), and checks the
      # domains only of a file that parsed.
      dkimKeyErrors = concatLists (imap0
        (i: k:
          let
            e = msg: [ (err "cluster.mail_auth.dkim_records" "DKIM records file ${dkimPath}: key[${toString i}]: ${msg}") ];
            before = genList (j: elemAt dkimKeys j) i;
          in
          if builtins.match "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" k.selector == null
          then e "selector ${quote k.selector} is not a DNS label (letters, digits and '-', at most 63)"
          else if k.created == "" then e "selector ${k.selector} has no created time"
          else if !elem k.algorithm [ "rsa" "ed25519" ] then e "selector ${k.selector}: unknown algorithm ${quote k.algorithm}: expected \"rsa\" or \"ed25519\""
          else if builtins.any (b: b.domain == k.domain && b.selector == k.selector) before
          then e "selector ${k.selector} of ${k.domain} appears twice"
          else [ ])
        dkimKeys);
      dkimErrors =
        if dkimKeyErrors != [ ] then [ (head dkimKeyErrors) ]
        else concatMap
          (k: if elem k.domain domains then [ ] else [ (err "cluster.mail_auth.dkim_records" "key ${k.selector} is for ${quote k.domain}, which is not one of the cluster's domains") ])
          dkimKeys;
      # isMailAddress in Go.
      isMailAddress = a:
        let
          m = builtins.match "([A-Za-z0-9._+-]+)@(.*)" a;
          local = if m == null then "" else elemAt m 0;
        in m != null && stringLength local <= 64 && isDomain (toLower (elemAt m 1))
          && builtins.match "[.].*|.*[.]|.*[.][.].*" local == null;
      mailAuthErrors = concatLists [
        (if elem spfAll [ "fail" "softfail" ] then [ ]
         else [ (err "cluster.mail_auth.spf_all" "unknown SPF verdict ${quote spfAll}: expected \"fail\" (-all) or \"softfail\" (~all)") ])
        (if elem dmarcPolicy [ "none" "quarantine" "reject" ] then [ ]
         else [ (err "cluster.mail_auth.dmarc_policy" "unknown DMARC policy ${quote dmarcPolicy}: expected \"none\", \"quarantine\" or \"reject\"") ])
        (if authServIDRaw != "" && !isDomain authServIDRaw then [ (err "cluster.mail_auth.authserv_id" "${quote authServIDRaw} is not a domain name (RFC 8601 wants the receiving host's or cluster's name)") ] else [ ])
        (if elem inbound [ "enforce" "record" ] then [ ] else [ (err "cluster.mail_auth.inbound" "unknown inbound policy ${quote inbound}: expected \"enforce\" or \"record\"") ])
        (if dkimPublishWait ? error then [ (err "cluster.mail_auth.dkim_publish_wait" dkimPublishWait.error) ] else [ ])
        dkimErrors
        (if dmarcReports == "" || isMailAddress dmarcReports then [ ]
         else [ (err "cluster.mail_auth.dmarc_reports" "${quote dmarcReports} is not a plain address such as \"dmarc@example.net\" (it goes into a DNS record: no spaces, ';', ',' or '!')") ])
      ];
      nssErrors = concatLists [
        (if positiveTTL ? error then [ (err "cluster.nss.positive_ttl" positiveTTL.error) ] else [ ])
        (if negativeTTL ? error then [ (err "cluster.nss.negative_ttl" negativeTTL.error) ] else [ ])
        (if cacheEntries < 0 then [ (err "cluster.nss.cache_entries" "${toString cacheEntries} must be positive (number of cached answers)") ] else [ ])
        (if stringLength nssSocket > 107
         then [ (err "cluster.nss.socket" "${quote nssSocket} is ${toString (stringLength nssSocket)} bytes: a Unix socket path holds at most 107") ]
         else [ ])
        (if nssSocketmap == "" then [ ]
         else if stringLength nssSocketmap > 107
         then [ (err "cluster.nss.socketmap" "${quote nssSocketmap} is ${toString (stringLength nssSocketmap)} bytes: a Unix socket path holds at most 107") ]
         else if dirPart nssSocketmap != dirPart nssSocket || nssSocketmap == nssSocket
         then [ (err "cluster.nss.socketmap" "${quote nssSocketmap}: put it beside cluster.nss.socket (${quote nssSocket}), in the same directory and under another name: that directory is the one nssd may write under systemd") ]
         else [ ])
        (concatLists (imap0
          (i: g:
            let
              before = genList (j: elemAt nssGroups j) i;
              n = toString i;
            in
            (if match "[a-z_][a-z0-9_-]{0,31}" g.name == null
             then [ (err "cluster.nss.groups" "group ${n}: name ${quote g.name}: use 1-32 of a-z, 0-9, '_' and '-', starting with a letter or '_'") ]
             else if builtins.any (b: b.name == g.name) before
             then [ (err "cluster.nss.groups" "group ${n}: name ${quote g.name} listed twice") ]
             else [ ])
            ++ (if g.gid < 1 || g.gid > 4294967294
             then [ (err "cluster.nss.groups" "group ${n} (${g.name}): gid ${toString g.gid} out of range 1-4294967294") ]
             else if builtins.any (b: b.gid == g.gid) before
             then [ (err "cluster.nss.groups" "group ${n} (${g.name}): gid ${toString g.gid} listed twice") ]
             else [ ]))
          nssGroups))
      ];

      prefix = if network == "" then null else net.parsePrefix network;
      networkOK = prefix != null && net.isMasked prefix;

      clusterErrors = concatLists [
        (if name == "" then [ (err "cluster.name" "missing: every cluster needs a name (a DNS label such as \"isp1\")") ]
         else if !isLabel name then [ (err "cluster.name" "${quote name} is not a DNS label: use 1-63 lower-case letters, digits and '-'") ]
         else [ ])
        (if domains == [ ] then [ (err "cluster.domains" "missing: list the mail domains the cluster receives mail for") ] else [ ])
        (concatLists (imap0
          (i: d:
            (if isDomain d then [ ] else [ (err "cluster.domains" "${quote d} is not a domain name") ])
            ++ (if elem d (genList (j: elemAt domains j) i) then [ (err "cluster.domains" "domain ${quote d} listed twice") ] else [ ]))
          domains))
        (if network == "" then [ (err "cluster.network" "missing: the cluster network in CIDR form, e.g. \"10.77.0.0/24\"") ]
         else if prefix == null then [ (err "cluster.network" "${quote network} is not a network in CIDR form such as \"10.77.0.0/24\"") ]
         else if !net.isMasked prefix then [ (err "cluster.network" "${quote network} has host bits set: did you mean ${quote prefix.masked}?") ]
         else [ ])
        (if keyFile == "" then [ (err "cluster.key_file" "missing: the path of the cluster key that seals passwd traffic") ] else [ ])
        (if layout == "" then [ (err "cluster.layout" "missing: one of ${concatStringsSep ", " svcs.layouts}") ]
         else if !elem layout svcs.layouts then [ (err "cluster.layout" "unknown mailbox layout ${quote layout}: expected one of ${concatStringsSep ", " svcs.layouts}") ]
         else [ ])
        (if placement == "" then [ (err "cluster.placement" "missing: \"letters\" or \"least-users\"") ]
         else if !elem placement svcs.placements then [ (err "cluster.placement" "unknown placement policy ${quote placement}: expected \"letters\" or \"least-users\"") ]
         else [ ])
        (if runAs != "" && match "[a-z_][a-z0-9_-]{0,31}" runAs == null
         then [ (err "cluster.run_as" "${quote runAs} is not an account name: use lower-case letters, digits, '_' and '-', starting with a letter or '_'") ]
         else [ ])
        (concatMap
          (p:
            if p.val == 0 then [ (err p.key "missing: passwd has no standard port, so the profile must choose one (1-65535)") ]
            else if p.val < 1 || p.val > 65535 then [ (err p.key "port ${toString p.val} out of range 1-65535") ]
            else [ ])
          [{ key = "cluster.passwd.udp_port"; val = udpPort; } { key = "cluster.passwd.tcp_port"; val = tcpPort; }])
        (if shutdownGrace ? error then [ (err "cluster.shutdown_grace" shutdownGrace.error) ]
         else if shutdownGrace.ms > 600000 then [ (err "cluster.shutdown_grace" "${formatDuration shutdownGrace.ms} is longer than 10m0s: every stop and restart would wait that long for slow clients") ]
         else [ ])
        (if timeout ? error then [ (err "cluster.passwd.timeout" timeout.error) ]
         else if timeout.ms > 60000 then [ (err "cluster.passwd.timeout" "${formatDuration timeout.ms} is too long for a failover timeout: clients would hang that long when the primary is down (the paper uses 2s)") ]
         else [ ])
        # validatePasswdAuth
        (if bcryptCost < 4 || bcryptCost > 16
         then [ (err "cluster.passwd.bcrypt_cost" "${toString bcryptCost} out of range 4-16 (each step doubles the CPU a login costs; 10 is about 75 ms of a core)") ]
         else [ ])
        (if authCacheTTL ? error then [ (err "cluster.passwd.auth_cache_ttl" authCacheTTL.error) ]
         else if authCacheTTL.ms > 86400000 then [ (err "cluster.passwd.auth_cache_ttl" "${formatDuration authCacheTTL.ms} is longer than a day: a verified password would stay in memory that long") ]
         else [ ])
        (if authCacheEntries < 0 then [ (err "cluster.passwd.auth_cache_entries" "${toString authCacheEntries} must be positive (number of cached logins)") ] else [ ])
        (if authQueue < 0 then [ (err "cluster.passwd.auth_queue" "${toString authQueue} must be positive (logins waiting for a verifier)") ] else [ ])
        # validateLog
        (if logTarget == "stderr" || logTarget == "journald" then
          (if logNetworkRaw != "" then [ (err "cluster.log.network" "network is only for target \"syslog\" (target is ${quote logTarget})") ] else [ ])
         else if logTarget == "syslog" then
          (if elem logNetwork [ "udp" "tcp" "unix" ] then [ ] else [ (err "cluster.log.network" "unknown syslog network ${quote logNetwork}: expected udp, tcp or unix") ])
         else [ (err "cluster.log.target" "unknown log target ${quote logTarget}: expected stderr, journald or syslog") ])
        (if elem logLevel [ "debug" "info" "warn" "error" ] then [ ]
         else [ (err "cluster.log.level" "unknown log level ${quote logLevel}: expected one of debug, info, warn, error") ])
        (if zone != "" && !isDomain zone then [ (err "cluster.dns.zone" "${quote zone} is not a domain name") ] else [ ])
        # Go decodes the serial into a uint32.
        (if serial < 0 || serial > 4294967295 then [ (err "cluster.dns.serial" "serial ${toString serial} out of range 0-4294967295") ] else [ ])
        (if ttl < 0 then [ (err "cluster.dns.ttl" "TTL ${toString ttl} must be positive (seconds)") ] else [ ])
        (concatMap
          (k: let n = ports.${k}; in
            if n < 0 || n > 65535 then [ (err "cluster.ports.${k}" "port ${toString n} out of range 1-65535 (0 or absent: the standard port)") ] else [ ])
          svcs.portKeys)
        (let n = ports.metrics; last = 65535 - (svcs.metricsPorts - 1); in
          if n > last && n <= 65535 then [ (err "cluster.ports.metrics" "port ${toString n} leaves no room for the ${toString svcs.metricsPorts} daemons' metrics ports (${toString n} to ${toString (n + svcs.metricsPorts - 1)}): at most ${toString last}") ] else [ ])
        nssErrors
        mailAuthErrors
        milterErrors
        (concatMap (r: if r ? error then [ (err "cluster.queue.retry" r.error) ] else [ ]) queueRetry)
        (if queueLifetime ? error then [ (err "cluster.queue.lifetime" queueLifetime.error) ] else [ ])
        movesErrors
      ];

      # --- hosts ---
      rawHosts = raw.host or [ ];
      names = map (h: h.name or "") rawHosts;
      addrs = map (h: h.address or "") rawHosts;
      firstIndex = list: x: util.findIndex (y: y == x) list;

      hostKey = i: rest:
        let n = elemAt names i;
        in "host[${toString i}]${if rest == "" then "" else "." + rest}${if n != "" then " (${n})" else ""}";

      hostChecks = i: h:
        let
          herr = rest: msg: err (hostKey i rest) msg;
          hname = elemAt names i;
          address = elemAt addrs i;
          a = net.parseAddr address;
          # popproxy: mailproxy's name before it served IMAP too.
          roles = map (r: if r == "popproxy" then "mailproxy" else r) (h.roles or [ ]);
          has = r: elem r roles;
          canonical =
            a == null || a.family == 4 || (match ".*\\..*" address == null && address == toLower address);
          j = firstIndex addrs address;
          jn = firstIndex names hname;

          mxRaw = h.mx or null;
          storageRaw = h.storage or null;
          smtpdRaw = h.smtpd or null;
          tlsRaw = h.tls or null;

          pref = if mxRaw == null then 10 else mxRaw.preference or 10;
          dataDir = if storageRaw == null then "" else storageRaw.data_dir or "";
          weightRaw = if storageRaw == null then 0 else storageRaw.weight or 0;
          smtpdGet = k: def: let x = if smtpdRaw == null then 0 else smtpdRaw.${k} or 0; in if x == 0 then def else x;
          # Durations as { ms; } or { error; }, as parseDuration returns.
          smtpdDur = k: def: if smtpdRaw != null && smtpdRaw ? ${k} then parseDuration smtpdRaw.${k} else { ms = def; };
          commandTimeout = smtpdDur "command_timeout" 300000;
          dataTimeout = smtpdDur "data_timeout" 600000;
          smtpd = {
            max_message_bytes = smtpdGet "max_message_bytes" 26214400;
            max_recipients = smtpdGet "max_recipients" 100;
            max_connections = smtpdGet "max_connections" 1000;
            max_connections_per_client = smtpdGet "max_connections_per_client" 20;
            max_messages_per_hour = smtpdGet "max_messages_per_hour" 500;
            expose_auth_user = if smtpdRaw == null then false else smtpdRaw.expose_auth_user or false;
            command_timeout_ms = commandTimeout.ms or 0;
            data_timeout_ms = dataTimeout.ms or 0;
            workers = smtpdGet "workers" 32;
          };
          popRaw = h.mailproxy or h.popproxy or null;
          popGet = k: def: let x = if popRaw == null then 0 else popRaw.${k} or 0; in if x == 0 then def else x;
          popDur = k: def: if popRaw != null && popRaw ? ${k} then parseDuration popRaw.${k} else { ms = def; };
          failDelay = popDur "fail_delay" 500;
          maxFailDelay = popDur "max_fail_delay" 8000;
          mailproxy = {
            fail_delay_ms = failDelay.ms or 0;
            max_fail_delay_ms = maxFailDelay.ms or 0;
            max_connections = popGet "max_connections" 5000;
            max_connections_per_client = popGet "max_connections_per_client" 20;
          };
          cert = if tlsRaw == null then "" else tlsRaw.cert or "";
          key = if tlsRaw == null then "" else tlsRaw.key or "";
          isSMTP = has "mx" || has "relay";
        in
        {
          errors = concatLists [
            (if hname == "" then [ (herr "name" "missing: every host needs a name") ]
             else if !isLabel hname then [ (herr "name" "${quote hname} is not a DNS label: use 1-63 lower-case letters, digits and '-'") ]
             else if elem hname [ "mx" "relay" "pop" ] then [ (herr "name" "${quote hname} is the name of a DNS pool (mx, relay, pop): choose another host name") ]
             else if jn != i then [ (herr "name" "duplicate host name ${quote hname} (also host[${toString jn}])") ]
             else [ ])
            (if address == "" then [ (herr "address" "missing: the host's IP address") ]
             else if a == null then [ (herr "address" "${quote address} is not an IP address") ]
             else concatLists [
               # Go names the canonical form; this loose IPv6 check only
               # knows that upper case and an embedded IPv4 part never are.
               (if canonical then [ ] else [ (herr "address" "write the address in canonical form (lower case, no embedded IPv4), not ${quote address}") ])
               (if j != i then [ (herr "address" "duplicate address ${address} (also host[${toString j}] ${elemAt names j})") ] else [ ])
               (if networkOK && !net.contains prefix a then [ (herr "address" "address ${address} is outside the cluster network ${prefix.masked}") ] else [ ])
             ])
            # validateRoles
            (if roles == [ ] then [ (herr "roles" "missing: list the host's roles from ${goList svcs.roles}") ] else [ ])
            (concatLists (imap0
              (ri: r:
                if !elem r svcs.roles then [ (herr "roles" "unknown role ${quote r}: expected one of ${goList svcs.roles}") ]
                else if elem r (genList (x: elemAt roles x) ri) then [ (herr "roles" "role ${quote r} listed twice") ]
                else [ ])
              roles))
            (if has "passwd-primary" && has "passwd-secondary" then [ (herr "roles" "a host cannot be both passwd-primary and passwd-secondary: the secondary exists to survive the primary's host") ] else [ ])
            # validateHostTables
            (if mxRaw != null && !has "mx" then [ (herr "mx" "[host.mx] settings on a host without role mx") ] else [ ])
            (if has "mx" && (pref < 0 || pref > 65535) then [ (herr "mx.preference" "MX preference ${toString pref} out of range 0-65535") ] else [ ])
            (if storageRaw != null && !has "storage" then [ (herr "storage" "[host.storage] settings on a host without role storage") ] else [ ])
            (if !has "storage" then [ ]
             else if dataDir == "" then [ (herr "storage.data_dir" "missing: a storage host needs [host.storage] data_dir, the root of its Maildirs") ]
             else if weightRaw < 0 then [ (herr "storage.weight" "weight ${toString weightRaw} must be positive") ]
             else [ ])
            (if smtpdRaw != null && !isSMTP then [ (herr "smtpd" "[host.smtpd] settings on a host without role mx or relay") ] else [ ])
            (if !isSMTP then [ ]
             else
              concatMap (k: if smtpd.${k} < 0 then [ (herr "smtpd.${k}" "${toString smtpd.${k}} must be positive") ] else [ ])
                [ "max_message_bytes" "max_recipients" "max_connections" "max_connections_per_client" "max_messages_per_hour" "workers" ]
              ++ (if smtpd.max_connections_per_client > smtpd.max_connections
              then [ (herr "smtpd.max_connections_per_client" "${toString smtpd.max_connections_per_client} exceeds max_connections ${toString smtpd.max_connections}") ]
              else [ ])
              ++ (if commandTimeout ? error then [ (herr "smtpd.command_timeout" commandTimeout.error) ] else [ ])
              ++ (if dataTimeout ? error then [ (herr "smtpd.data_timeout" dataTimeout.error) ] else [ ])
              ++ (if commandTimeout ? ms && dataTimeout ? ms && dataTimeout.ms < commandTimeout.ms
              then [ (herr "smtpd.data_timeout" "${formatDuration dataTimeout.ms} is shorter than command_timeout ${formatDuration commandTimeout.ms}: a DATA phase is at least one read") ]
              else [ ]))
            (if h ? mailproxy && h ? popproxy then [ (herr "popproxy" "[host.popproxy] is the old name of [host.mailproxy]: keep one of them") ] else [ ])
            (if popRaw != null && !has "mailproxy" then [ (herr "mailproxy" "[host.mailproxy] settings on a host without role mailproxy") ] else [ ])
            (if !has "mailproxy" then [ ]
             else
              concatMap (k: if mailproxy.${k} < 0 then [ (herr "mailproxy.${k}" "${toString mailproxy.${k}} must be positive") ] else [ ])
                [ "max_connections" "max_connections_per_client" ]
              ++ (if mailproxy.max_connections_per_client > mailproxy.max_connections
              then [ (herr "mailproxy.max_connections_per_client" "${toString mailproxy.max_connections_per_client} exceeds max_connections ${toString mailproxy.max_connections}") ]
              else [ ])
              ++ (if failDelay ? error then [ (herr "mailproxy.fail_delay" failDelay.error) ] else [ ])
              ++ (if maxFailDelay ? error then [ (herr "mailproxy.max_fail_delay" maxFailDelay.error) ] else [ ])
              ++ (if failDelay ? ms && maxFailDelay ? ms && maxFailDelay.ms < failDelay.ms
              then [ (herr "mailproxy.max_fail_delay" "${formatDuration maxFailDelay.ms} is shorter than fail_delay ${formatDuration failDelay.ms}: the delay starts at fail_delay and doubles up to max_fail_delay") ]
              else [ ]))
            (if tlsRaw != null && (cert == "" || key == "") then [ (herr "tls" "[host.tls] needs both cert and key") ] else [ ])
          ];
          # The host as Go holds it after validateHostTables: every table
          # of a role the host has is complete; others are null.
          value = {
            name = hname;
            inherit address roles;
            mx = if has "mx" then { preference = pref; } else mxRaw;
            storage =
              if has "storage" then { data_dir = dataDir; weight = if weightRaw == 0 then 1 else weightRaw; }
              else if storageRaw == null then null
              else { data_dir = dataDir; weight = weightRaw; };
            smtpd = if isSMTP then smtpd else smtpdRaw;
            mailproxy = if has "mailproxy" then mailproxy else popRaw;
            tls = if tlsRaw == null then null else { inherit cert key; };
          };
        };

      checked = imap0 hostChecks rawHosts;
      hosts = map (c: c.value) checked;
      countRole = r: util.count (h: elem r h.roles) hosts;

      hostErrors =
        if rawHosts == [ ] then [ (err "host" "no [[host]] entries: a cluster needs at least a passwd-primary and a storage host") ]
        else concatLists [
          (concatMap (c: c.errors) checked)
          (if countRole "passwd-primary" == 0 then [ (err "host" "no host has role passwd-primary: exactly one must") ]
           else if countRole "passwd-primary" > 1 then [ (err "host" "more than one host has role passwd-primary: exactly one must") ]
           else [ ])
          (if countRole "passwd-secondary" > 1 then [ (err "host" "more than one host has role passwd-secondary: at most one may") ] else [ ])
          (if countRole "storage" == 0 then [ (err "host" "no host has role storage: at least one must hold the mailboxes") ] else [ ])
          (if countRole "loghost" > 1 then [ (err "host" "more than one host has role loghost: the cluster logs to one central loghost") ] else [ ])
          (if logTarget == "syslog" && logNetwork != "unix" && countRole "loghost" == 0
           then [ (err "cluster.log.target" "log target is syslog over ${logNetwork} but no host has role loghost") ] else [ ])
        ];

      cluster = {
        inherit name domains network zone;
        key_file = keyFile;
        inherit layout placement;
        trusted_network = get rc "trusted_network" false;
        run_as = runAs;
        shutdown_grace_ms = shutdownGrace.ms or 0;
        passwd = {
          udp_port = udpPort;
          tcp_port = tcpPort;
          timeout_ms = timeout.ms or 0;
          bcrypt_cost = bcryptCost;
          auth_cache_ttl_ms = authCacheTTL.ms or 0;
          auth_cache_entries = authCacheEntries;
          auth_queue = authQueue;
        };
        log = { target = logTarget; network = logNetwork; level = logLevel; };
        dns = { inherit zone serial ttl; };
        inherit ports;
        nss = {
          positive_ttl_ms = positiveTTL.ms or 0;
          negative_ttl_ms = negativeTTL.ms or 0;
          cache_entries = cacheEntries;
          socket = nssSocket;
          socketmap = nssSocketmap;
          groups = nssGroups;
        };
        queue = {
          retry_ms = map (r: r.ms or 0) queueRetry;
          lifetime_ms = queueLifetime.ms or 0;
        };
        mail_auth = {
          spf_all = spfAll;
          dmarc_policy = dmarcPolicy;
          dmarc_reports = dmarcReports;
          dkim_records = dkimRecords;
          dkim_key_dir = dkimKeyDir;
          dkim_publish_wait_ms = dkimPublishWait.ms or 0;
          dkim_keys = dkimKeys;
          authserv_id = authServID;
          inherit inbound;
        };
        milters = map (m: { inherit (m) name address roles on_failure; timeout_ms = m.timeout.ms or 0; }) milters;
        moves = {
          grace_ms = moveGrace.ms or 0;
          freeze_timeout_ms = moveFreezeTimeout.ms or 0;
          rate_limit_mb = moveRateLimit;
          journal_dir = moveJournalDir;
        };
      };

      # validatePorts: two services of one host on the same port and
      # transport. Go walks Services() and, per service, TCP then UDP,
      # remembering the last service seen on each port.
      portErrors = concatLists (imap0
        (i: h:
          (foldl'
            (st: x:
              let k = "${x.tr}/${toString x.port}";
              in {
                used = st.used // { ${k} = x.svc; };
                errs = st.errs ++ (if st.used ? ${k}
                  then [ (err (hostKey i "roles") "services ${st.used.${k}} and ${x.svc} would both listen on port ${toString x.port}: set a different port for one of them in [cluster.ports]") ]
                  else [ ]);
              })
            { used = { }; errs = [ ]; }
            (concatMap
              (s: map (tr: { svc = s.name; inherit tr; port = svcs.port cluster s; })
                ((if s.tcp then [ "tcp" ] else [ ]) ++ (if s.udp then [ "udp" ] else [ ])))
              (filter (svcs.provides h) svcs.services))).errs)
        hosts);

      semanticErrors = clusterErrors ++ hostErrors;
    in
    {
      errors = if semanticErrors != [ ] then semanticErrors else portErrors;
      profile = { inherit source cluster hosts; };
    };

  fail = source: errors:
    throw (concatStringsSep "\n" (map (e: "${source}: ${e.key}: ${e.msg}") errors));
in
rec {
  inherit parseDuration formatDuration isLabel isDomain;

  # A validated profile from an attribute set as fromTOML returns it.
  # source names the profile in messages.
  fromAttrs = source: raw:
    let
      shape = if isAttrs raw then checkTable "" schema.table raw else [{ key = "profile"; msg = "expected a table"; }];
      v = validate source raw;
    in
    if shape != [ ] then fail source shape
    else if v.errors != [ ] then fail source v.errors
    else v.profile;

  fromTOMLString = source: text: fromAttrs source (fromTOML text);

  loadProfile = path: fromTOMLString (toString path) (readFile path);
}
