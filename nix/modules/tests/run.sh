#!/usr/bin/env bash
# Offline checks of the NixOS module (nix/modules) with Debian's Nix 2.8,
# nixpkgs' real lib (the module system) and stub.nix in place of nixpkgs'
# NixOS options. Run from anywhere:
#
#   bash nix/modules/tests/run.sh
#
# NIXPKGS_LIB: nixpkgs' lib/ (default: the vendored copy,
# nix/vendor/nixpkgs-lib/lib). CORREOCTL: a built correoctl (default: built here with go);
# without one the comparisons with `correoctl host render` are skipped and
# say so. Prints one line per check and "N passed, M failed, K skipped";
# exits non-zero when anything failed. What it cannot check here (the real
# NixOS options, a build, a boot) is for drift.sh and the flake's checks on
# a machine with Nix and nixpkgs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
start=$(date +%s.%N)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
skipped=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "skip $*"; }
show() { [ -f "$1" ] || return 0; grep -v "build-users-group' does not exist" "$1" | awk 'NR <= 20 { print "     | " $0 }'; }

evalnix=nix/modules/tests/eval.nix
lib=${NIXPKGS_LIB:-$root/nix/vendor/nixpkgs-lib/lib}

# 1. Every file of the module and its tests parses.
for f in nix/modules/*.nix nix/modules/tests/*.nix; do
	if nix-instantiate --parse "$f" >/dev/null 2>"$tmp/parse.err"; then
		pass "modules: parse $f"
	else
		fail "modules: parse $f"; show "$tmp/parse.err"
	fi
done

if [ ! -f "$lib/default.nix" ]; then
	# Under the test command the module must be evaluated: a missing lib
	# is a failure, not a silent pass.
	fail "modules: no nixpkgs lib at $lib (set NIXPKGS_LIB to nixpkgs' lib/): the module was NOT evaluated"
	echo "$passed passed, $failed failed, $skipped skipped"
	exit 1
fi

# ev OUT ERR ARGS...: evaluate eval.nix; the JSON on OUT, errors on ERR.
ev() {
	local out=$1 err=$2
	shift 2
	nix-instantiate --eval --strict --json "$evalnix" --arg nixpkgsLib "$lib" "$@" >"$out" 2>"$err"
}
# refused WHAT WANT ARGS...: the evaluation must fail, and say WANT.
refused() {
	local what=$1 want=$2
	shift 2
	if ev "$tmp/neg.json" "$tmp/neg.err" "$@"; then
		fail "modules: $what: evaluation succeeded (want an error: $want)"
	elif grep -qF -- "$want" "$tmp/neg.err"; then
		pass "modules: $what: refused: $want"
	else
		fail "modules: $what: error lacks: $want"; show "$tmp/neg.err"
	fi
}

# correoctl, for the comparisons with what Go renders.
correoctl=${CORREOCTL:-}
if [ -z "$correoctl" ] && command -v go >/dev/null; then
	if go build -o "$tmp/correoctl" ./src/cmd/correoctl 2>"$tmp/build.err"; then
		correoctl=$tmp/correoctl
	else
		fail "modules: go build ./src/cmd/correoctl"; show "$tmp/build.err"
	fi
fi

# 2. Every host of every profile in hosts/: the whole config forced
#    (deepSeq, minus _module) and its assertions checked. Profiles listed
#    here must be refused for every host with the message Go's
#    `correoctl host render` gives for them (dev.toml's NSS socket is under
#    .dev/, where systemd cannot make nssd's runtime directory).
declare -A refused_profiles=([dev]="under systemd the NSS socket must live in a directory under /run")
#    After hosts/, the unit edge cases of src/hostplan/testdata/units (every
#    role but one on a host, no certificate, IPv6), against a live
#    `correoctl host plan` instead of a golden.
edge=()
[ -n "$correoctl" ] && edge=(src/hostplan/testdata/units/*.toml)
for toml in hosts/*.toml "${edge[@]}"; do
	name=$(basename "$toml" .toml)
	hosts=$(nix-instantiate --eval --strict --json -E "map (h: h.name) ((import ./nix/lib).loadProfile $root/$toml).hosts" 2>/dev/null | jq -r '.[]' || true)
	if [ -z "$hosts" ]; then
		fail "modules: $toml: nix/lib lists no hosts"
		continue
	fi
	if [ -n "${refused_profiles[$name]:-}" ]; then
		want=${refused_profiles[$name]}
		for h in $hosts; do
			if [ -n "$correoctl" ]; then
				if "$correoctl" host render -profile "$toml" -host "$h" -root "$tmp/refused-go" >/dev/null 2>"$tmp/go.err"; then
					fail "modules: $toml host $h: go host render accepts it, but run.sh expects it refused"
				elif grep -qF -- "$want" "$tmp/go.err"; then
					pass "modules: $toml host $h: go host render refuses it: $want"
				else
					fail "modules: $toml host $h: go host render's error lacks: $want"; show "$tmp/go.err"
				fi
			fi
			refused "$toml host $h (as Go)" "$want" --argstr profile "$root/$toml" --argstr host "$h" --argstr what force
		done
		continue
	fi
	if ev "$tmp/$name.force.json" "$tmp/$name.force.err" --argstr profile "$root/$toml" --argstr what force; then
		pass "modules: $toml: every host evaluates, forced, assertions hold ($(jq -r 'join(" ")' "$tmp/$name.force.json"))"
	else
		fail "modules: $toml: every host evaluates, forced, assertions hold"; show "$tmp/$name.force.err"
		continue
	fi

	# 3. Units: the module's, written back as unit entries, == Go's golden
	#    (`correoctl host plan`), key by key; ExecStart's and ExecReload's
	#    store paths normalised back to /usr/libexec/correo and /bin/kill.
	gold=nix/lib/tests/golden/$name.units.json
	case $toml in
	hosts/*) ;;
	*)
		gold=$tmp/$name.plan.json
		if ! "$correoctl" host plan -profile "$toml" >"$gold" 2>"$tmp/go.err"; then
			fail "modules: $toml: correoctl host plan"; show "$tmp/go.err"
			continue
		fi
		;;
	esac
	if [ ! -f "$gold" ]; then
		fail "modules: $toml: no golden $gold"
	elif ev "$tmp/$name.cmp.json" "$tmp/$name.cmp.err" --argstr profile "$root/$toml" --argstr what compare --argstr golden "$(cd "$(dirname "$gold")" && pwd)/$(basename "$gold")"; then
		for h in $hosts; do
			d=$(jq -r --arg h "$h" '.[$h].diffs | length' "$tmp/$name.cmp.json")
			summary=$(jq -r --arg h "$h" '.[$h] | "\(.units) units, \(.keys) keys, \(.normalised) store paths normalised"' "$tmp/$name.cmp.json")
			if [ "$d" = 0 ]; then
				pass "modules: $toml host $h: units == $gold ($summary)"
			else
				fail "modules: $toml host $h: units == $gold"
				jq -r --arg h "$h" '.[$h].diffs[]' "$tmp/$name.cmp.json" | head -20 | sed 's/^/     | /'
			fi
		done
	else
		fail "modules: $toml: units compare evaluates"; show "$tmp/$name.cmp.err"
	fi
	# Every golden host is a host of the profile (a host Go plans that the
	# module never sees would otherwise go unnoticed).
	if [ -f "$gold" ] && [ "$(jq -r 'keys | sort | join(" ")' "$gold")" = "$(echo $hosts | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')" ]; then
		pass "modules: $toml: the golden and the profile have the same hosts"
	elif [ -f "$gold" ]; then
		fail "modules: $toml: the golden's hosts ($(jq -r 'keys | join(" ")' "$gold")) != the profile's ($hosts)"
	fi

	# 4. The rest of the host against what `correoctl host render` writes:
	#    tmpfiles lines, accounts, rsyslog text, NSD, NSS order, /etc, the
	#    host name, the resolver, Postfix's mailbox_command.
	if [ -z "$correoctl" ]; then
		skip "modules: $toml: no correoctl (no go): the module's files were NOT compared with host render"
		continue
	fi
	if ! ev "$tmp/$name.view.json" "$tmp/$name.view.err" --argstr profile "$root/$toml"; then
		fail "modules: $toml: view evaluates"; show "$tmp/$name.view.err"
		continue
	fi
	for h in $hosts; do
		r=$tmp/render-$h
		if ! "$correoctl" host render -profile "$toml" -host "$h" -root "$r" >/dev/null 2>"$tmp/go.err"; then
			fail "modules: $toml host $h: correoctl host render"; show "$tmp/go.err"
			continue
		fi
		v() { jq -r --arg h "$h" ".[\$h]$1" "$tmp/$name.view.json"; }
		errs=()
		# tmpfiles.d, without its comment line.
		if [ "$(grep -v '^#' "$r/etc/tmpfiles.d/correo.conf")" != "$(v '.tmpfiles[]')" ]; then
			errs+=("tmpfiles: go [$(grep -v '^#' "$r/etc/tmpfiles.d/correo.conf" | paste -sd'|')] module [$(v '.tmpfiles[]' | paste -sd'|')]")
		fi
		# sysusers.d: "g NAME -" and `u NAME - "DESC" HOME -`, as NixOS
		# users (isSystemUser, own group, description, home) and groups.
		gousers=$(sed -n 's/^u \([^ ]*\) - "\([^"]*\)" \([^ ]*\) -$/\1 \1 \2|\3/p' "$r/etc/sysusers.d/correo.conf" | sort)
		nixusers=$(v '.users | to_entries[] | select(.value.isSystemUser) | "\(.key) \(.value.group) \(.value.description)|\(.value.home)"' | sort)
		[ "$gousers" = "$nixusers" ] || errs+=("users: go [$gousers] module [$nixusers]")
		gogroups=$( (sed -n 's/^g \([^ ]*\) -$/\1/p; s/^u \([^ ]*\) .*/\1/p' "$r/etc/sysusers.d/correo.conf") | sort | paste -sd' ')
		nixgroups=$(v '.groups[]' | sort | paste -sd' ')
		[ "$gogroups" = "$nixgroups" ] || errs+=("groups: go [$gogroups] module [$nixgroups]")
		# rsyslog, byte for byte (jq -j: no newline added).
		jq -j --arg h "$h" '.[$h].rsyslog.extraConfig' "$tmp/$name.view.json" >"$tmp/rsyslog.nix"
		cmp -s "$r/etc/rsyslog.d/correo.conf" "$tmp/rsyslog.nix" || errs+=("rsyslog: $(diff "$r/etc/rsyslog.d/correo.conf" "$tmp/rsyslog.nix" | head -5 | paste -sd'|')")
		[ "$(v '.rsyslog.enable')" = true ] || errs+=("rsyslog not enabled")
		if [ -f "$r/etc/systemd/system/rsyslog.service.d/correo.conf" ]; then
			[ "$(v '.syslogUnit.after | index("network-online.target") != null')" = true ] &&
				[ "$(v '.syslogUnit.wants | index("network-online.target") != null')" = true ] ||
				errs+=("loghost: syslog.service does not want/follow network-online.target")
		fi
		# NSD: the zone, byte for byte, on the address and port of Go's nsd.conf.
		conf=$r/etc/nsd/nsd.conf.d/correo.conf
		if [ -f "$conf" ]; then
			zone=$(sed -n 's/^    name: "\(.*\)"$/\1/p' "$conf")
			zfile=$(sed -n 's/^    zonefile: "\(.*\)"$/\1/p' "$conf")
			jq -j --arg h "$h" --arg z "$zone" '.[$h].nsd.zones[$z] // ""' "$tmp/$name.view.json" >"$tmp/zone.nix"
			cmp -s "$r$zfile" "$tmp/zone.nix" || errs+=("nsd zone $zone differs from $zfile")
			want="true $(sed -n 's/^    ip-address: //p' "$conf") $(sed -n 's/^    port: //p' "$conf") true"
			got=$(v '.nsd | "\(.enable) \(.interfaces | join(",")) \(.port) \(.ipFreebind)"')
			[ "$want" = "$got" ] || errs+=("nsd: go [$want] module [$got]")
		elif [ "$(v '.nsd.enable')" != false ]; then
			errs+=("nsd enabled on a host Go gives no NSD")
		fi
		# NSS: the passwd and group lines, and the module loaded.
		for db in passwd group; do
			want=$(sed -n "s/^$db: *//p" "$r/etc/nsswitch.conf")
			got=$(v ".nss.$db | join(\" \")")
			[ "$want" = "$got" ] || errs+=("nsswitch $db: go [$want] module [$got]")
		done
		[ "$(v '.nss.modules | length')" = 1 ] || errs+=("system.nssModules: $(v '.nss.modules')")
		# /etc/correo/profile.toml is the profile; the host name.
		[ "$(v '.etc["correo/profile.toml"]')" = "$root/$toml" ] || errs+=("/etc/correo/profile.toml: $(v '.etc["correo/profile.toml"]')")
		[ "$(cat "$r/etc/hostname")" = "$(v '.hostName')" ] || errs+=("hostname: go $(cat "$r/etc/hostname") module $(v '.hostName')")
		# Every other file render puts in /etc/correo (the DKIM records
		# beside the profile) is in the module's /etc, with the same keys.
		for f in $(cd "$r/etc" && find correo -maxdepth 1 -type f ! -name profile.toml | sort); do
			src=$(v ".etc[\"$f\"]")
			if [ "$src" = null ] || ! cmp -s <(grep -v '^#' "$r/etc/$f" | grep -v '^$') <(grep -v '^#' "$src" | grep -v '^$'); then
				errs+=("/etc/$f: rendered by Go, module has [$src]")
			fi
		done
		# The resolver: resolv.conf's search and nameservers.
		want="$(sed -n 's/^search //p' "$r/etc/resolv.conf") $(sed -n 's/^nameserver //p' "$r/etc/resolv.conf" | paste -sd,)"
		got="$(v '.search | join(" ")') $(v '.nameservers | join(",")')"
		[ "$want" = "$got" ] || errs+=("resolver: go [$want] module [$got]")
		# Postfix's mailbox_command on storage hosts (eval.nix enables
		# Postfix and mda there), the package's pdelivery for /usr/bin's.
		if [ -f "$r/etc/correo/mda/postfix-main.cf" ]; then
			want=$(sed -n 's/^mailbox_command = //p' "$r/etc/correo/mda/postfix-main.cf")
			got=$(v '.mailboxCommand' | sed "s|^$(v '.package')/bin/pdelivery |/usr/bin/pdelivery |")
			[ "$want" = "$got" ] || errs+=("mailbox_command: go [$want] module [$got]")
		elif [ "$(v '.mailboxCommand')" != null ]; then
			errs+=("mailbox_command set on a host Go gives no MDA lines")
		fi
		if [ ${#errs[@]} = 0 ]; then
			pass "modules: $toml host $h: tmpfiles, accounts, rsyslog, NSD, NSS, /etc, hostname, resolver, MDA == host render"
		else
			fail "modules: $toml host $h: == host render"
			printf '     | %s\n' "${errs[@]}"
		fi
	done
done

ex=(--argstr profile "$root/hosts/example.toml")

# 5. Options that are not the Go side's: keyFile, openFirewall.
if ev "$tmp/key.json" "$tmp/key.err" "${ex[@]}" --argstr host store1 --arg extra '{ services.correo.keyFile = "/run/keys/correo.key"; }' &&
	[ "$(jq -r '.store1.tmpfiles[1:3] | join("|")' "$tmp/key.json")" = "C /var/lib/correo/cluster.key - - - - /run/keys/correo.key|z /var/lib/correo/cluster.key 0640 root correo-key -" ]; then
	pass "modules: keyFile copies the key into key_file before its mode and group are set"
else
	fail "modules: keyFile copies the key into key_file"; show "$tmp/key.err"; show "$tmp/key.json"
fi
declare -A want_fw=([ns1]='[53,514,9421] [53,514]' [pw1]='[7002,9420,9421] [7001]' [mx1]='[25,110,143,993,995,9421,9422,9426] []' [relay1]='[25,465,587,9421,9422] []' [store1]='[24,110,143,4424,9421,9423,9424,9425] []')
for h in ns1 pw1 mx1 relay1 store1; do
	if ev "$tmp/fw.json" "$tmp/fw.err" "${ex[@]}" --argstr host "$h" --arg extra '{ services.correo.openFirewall = true; }'; then
		got=$(jq -c --arg h "$h" '.[$h].firewall | .tcp, .udp' "$tmp/fw.json" | paste -sd' ')
		if [ "$got" = "${want_fw[$h]}" ]; then
			pass "modules: openFirewall on $h: TCP and UDP $got"
		else
			fail "modules: openFirewall on $h: want ${want_fw[$h]}, got $got"
		fi
	else
		fail "modules: openFirewall on $h evaluates"; show "$tmp/fw.err"
	fi
done
if ev "$tmp/fw.json" "$tmp/fw.err" "${ex[@]}" --argstr host mx1 && [ "$(jq -c '.mx1.firewall' "$tmp/fw.json")" = '{"tcp":[],"udp":[]}' ]; then
	pass "modules: without openFirewall no port is opened"
else
	fail "modules: without openFirewall no port is opened"
fi

# A host that imports the module but leaves it off gets nothing from it,
# and needs no profile or host (everything but the unset services.correo
# options forced).
expr="let lib = import $lib; e = lib.evalModules { modules = [ $root/nix/modules/tests/stub.nix $root/nix/modules { _module.args.pkgs = { }; } ]; };
  c = removeAttrs e.config [ \"_module\" \"services\" ] // { services = removeAttrs e.config.services [ \"correo\" ]; };
  in builtins.deepSeq c { services = builtins.attrNames c.systemd.services; sockets = builtins.attrNames c.systemd.sockets; users = builtins.attrNames c.users.users;
    tmpfiles = c.systemd.tmpfiles.rules; rsyslog = c.services.rsyslogd.enable; nss = c.system.nssModules.list; etc = builtins.attrNames c.environment.etc; }"
if nix-instantiate --eval --strict --json -E "$expr" >"$tmp/off.json" 2>"$tmp/off.err" &&
	[ "$(jq -c . "$tmp/off.json")" = '{"etc":[],"nss":[],"rsyslog":false,"services":[],"sockets":[],"tmpfiles":[],"users":[]}' ]; then
	pass "modules: imported but not enabled: no unit, account, file or service, and no profile needed"
else
	fail "modules: imported but not enabled: sets nothing"; show "$tmp/off.err"; show "$tmp/off.json"
fi

# 6. Negative tests: each must fail, with a message that says what is wrong.
refused "a misspelled option (services.correo.hots)" "The option \`services.correo.hots' does not exist" \
	"${ex[@]}" --argstr host mx1 --arg extra '{ services.correo.hots = "mx1"; }' --argstr what force
refused "a misspelled unit option, found only by forcing" "The option \`systemd.services.correo-nssd.wantedby' does not exist" \
	"${ex[@]}" --argstr host mx1 --arg extra '{ systemd.services.correo-nssd.wantedby = [ "multi-user.target" ]; }' --argstr what force
sed 's/^udp_port = 7001$/udp_port = 70000/' hosts/example.toml >"$tmp/port.toml"
refused "a port out of range in the profile" "$tmp/port.toml: cluster.passwd.udp_port: port 70000 out of range 1-65535" \
	--argstr profile "$tmp/port.toml" --argstr host pw1 --argstr what force
refused "a role unknown to the profile (src/cluster/testdata/bad/unknown-role.toml)" 'unknown role "webmail"' \
	--argstr profile "$root/src/cluster/testdata/bad/unknown-role.toml" --argstr host x --argstr what force
refused "a role nix/lib accepts but the module does not handle" 'host "store1" has role "storage" in '"$root"'/hosts/example.toml, which this NixOS module does not handle' \
	"${ex[@]}" --argstr host store1 --arg extra '{ lib, ... }: { services.correo.rolesHandled = lib.mkForce [ "dns" "loghost" ]; }' --argstr what force
refused "a host missing from the profile" 'services.correo.host = "mx9": '"$root"'/hosts/example.toml has no such host (hosts: ns1 pw1 pw2 mx1 mx2 relay1 store1 store2 store3)' \
	"${ex[@]}" --argstr host mx9 --argstr what force
refused "keyFile as a Nix path (it would be copied into the store)" "is not of type \`null or absolute path not in the Nix store'" \
	"${ex[@]}" --argstr host mx1 --arg extra '{ services.correo.keyFile = ./run.sh; }' --argstr what force
refused "NSS modules without nscd/nsncd" "requires services.nscd.enable being set to true" \
	"${ex[@]}" --argstr host mx1 --arg extra '{ services.nscd.enable = false; }' --argstr what force
refused "mda without Postfix" "services.correo.mda.enable makes pdelivery Postfix's local delivery agent, but services.postfix.enable is false" \
	"${ex[@]}" --argstr host store1 --arg extra '{ lib, ... }: { services.postfix.enable = lib.mkForce false; }' --argstr what force
refused "mda on a host without storage" 'services.correo.mda.enable: host "mx1" has no storage role' \
	"${ex[@]}" --argstr host mx1 --arg extra '{ services.postfix.enable = true; services.correo.mda.enable = true; }' --argstr what force
refused "a unit option conflicting with the profile's" "conflicting definition values" \
	"${ex[@]}" --argstr host mx1 --arg extra '{ systemd.services.correo-smtpd.serviceConfig.User = "root"; }' --argstr what force

# Profiles whose units Go and nix/lib refuse (NSS socket paths systemd
# cannot use): the module refuses them too, with the message their first
# line names.
for toml in src/hostplan/testdata/units/bad/*.toml; do
	want=$(head -n 1 "$toml" | sed -n 's/^# error: //p')
	h=$(nix-instantiate --eval --strict --json -E "(builtins.head (builtins.fromTOML (builtins.readFile $root/$toml)).host).name" 2>/dev/null | jq -r . || true)
	refused "units refused by Go: $toml host $h" "$want" --argstr profile "$root/$toml" --argstr host "$h" --argstr what force
done

# 7. The comparison itself sees a difference (a key more, a value changed).
if ev "$tmp/cmp.json" "$tmp/cmp.err" "${ex[@]}" --argstr host mx1 --argstr what compare --argstr golden "$root/nix/lib/tests/golden/example.units.json" \
	--arg extra '{ lib, ... }: { systemd.services.correo-nssd.serviceConfig.LimitNOFILE = "1024"; systemd.sockets.correo-smtpd-smtp.socketConfig.FreeBind = lib.mkForce "no"; }' &&
	[ "$(jq -r '.mx1.diffs | length' "$tmp/cmp.json")" = 2 ]; then
	pass "modules: the unit comparison reports an added key and a changed value ($(jq -r '.mx1.diffs | join("; ")' "$tmp/cmp.json"))"
else
	fail "modules: the unit comparison reports an added key and a changed value"; show "$tmp/cmp.err"; show "$tmp/cmp.json"
fi

# 8. drift.sh cannot compare the stub with NixOS here (no nixpkgs); check
#    its machinery at least: against a stand-in "nixpkgs" whose NixOS is
#    the stub itself every option agrees, and with one type changed that
#    option, and only it, is reported. Then drift.sh itself, which without
#    NIXPKGS says it checked nothing.
fake=$tmp/fake-nixpkgs
mkdir -p "$fake/nixos/lib"
ln -s "$lib" "$fake/lib"
cp nix/modules/tests/stub.nix "$fake/nixos/stub.nix"
echo '{ system, modules }: (import ../../lib).evalModules { modules = [ ../stub.nix ] ++ modules; }' >"$fake/nixos/lib/eval-config.nix"
if NIXPKGS=$fake bash nix/modules/tests/drift.sh >"$tmp/drift.out" 2>&1; then
	pass "modules: drift.sh against the stub itself: $(tail -n 1 "$tmp/drift.out")"
else
	fail "modules: drift.sh against the stub itself"; show "$tmp/drift.out"
fi
sed -i 's/allowedUDPPorts = mkOption { type = types.listOf types.port;/allowedUDPPorts = mkOption { type = types.listOf types.int;/' "$fake/nixos/stub.nix"
if ! NIXPKGS=$fake bash nix/modules/tests/drift.sh >"$tmp/drift.out" 2>&1 &&
	[ "$(grep -c '^FAIL' "$tmp/drift.out")" = 1 ] &&
	grep -q '^FAIL drift: networking.firewall.allowedUDPPorts: stub "list of 16 bit unsigned integer' "$tmp/drift.out"; then
	pass "modules: drift.sh reports a type that differs (networking.firewall.allowedUDPPorts), and only it"
else
	fail "modules: drift.sh reports a type that differs"; show "$tmp/drift.out"
fi
if [ -n "${NIXPKGS:-}" ]; then
	if bash nix/modules/tests/drift.sh >"$tmp/drift.out" 2>&1; then
		pass "modules: drift.sh against $NIXPKGS: $(tail -n 1 "$tmp/drift.out")"
	else
		fail "modules: drift.sh against $NIXPKGS"; grep '^FAIL' "$tmp/drift.out" | head -20 | sed 's/^/     | /'
	fi
else
	skip "modules: drift against a real nixpkgs: NIXPKGS unset (see nix/modules/tests/drift.sh): the stub's types were NOT compared with NixOS"
fi

echo "$passed passed, $failed failed, $skipped skipped ($(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s)"
[ "$failed" -eq 0 ]
