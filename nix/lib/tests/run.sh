#!/usr/bin/env bash
# Golden tests for nix/lib against the Go implementation (src/cluster,
# src/dnszone, src/hostplan). Run from the repository root:
#
#   bash nix/lib/tests/run.sh
#
# Needs go, nix (2.8+, nix-command is enabled per call), jq and
# named-checkzone (bind9-utils). Prints one line per check and a final
# "N passed, M failed"; exits non-zero when anything failed.
#
# To refresh the golden files after a deliberate change to the settings
# document, the zone or the units, regenerate them from Go and review the
# diff:
#   UPDATE_GOLDEN=1 bash nix/lib/tests/run.sh
set -euo pipefail

# The repository root is three levels above this script, wherever it is
# called from.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

golden=nix/lib/tests/golden
evalnix=nix/lib/tests/eval.nix
nixflags=(--extra-experimental-features nix-command)
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
# Show the first lines of a file indented, to explain a failure.
show() { [ -f "$1" ] || return 0; awk 'NR <= 20 { print "     | " $0 }' "$1"; }

# nix_settings PROFILE OUT ERR: settings as sorted JSON. (On an error,
# nix-instantiate --json has already printed part of the document: only
# a successful evaluation goes through jq.)
nix_settings() {
	nix-instantiate --eval --strict --json "$evalnix" --argstr profile "$root/$1" >"$2.raw" 2>"$3" &&
		jq -S . "$2.raw" >"$2"
}
# nix_units PROFILE OUT ERR: every host's units as sorted JSON.
nix_units() {
	nix-instantiate --eval --strict --json "$evalnix" --argstr profile "$root/$1" --argstr what units >"$2.raw" 2>"$3" &&
		jq -S . "$2.raw" >"$2"
}
# go_units PROFILE OUT ERR: the same from `correoctl host plan`.
go_units() {
	"$tmp/correoctl" host plan --profile "$root/$1" >"$2.raw" 2>"$3" && jq -S . "$2.raw" >"$2"
}
# message PROFILE ERR: the error about PROFILE in ERR, from its path on
# (Go prefixes "correoctl host plan: ", Nix "error: "; both get the
# absolute path, so the rest must be the same).
message() {
	awk -v p="$root/$1: " 'index($0, p) { print substr($0, index($0, p)); exit }' "$2"
}
# refused WHAT PROFILE WANT: Go and Nix both refuse PROFILE's units, with
# the same message, and it contains WANT.
refused() {
	local what=$1 toml=$2 want=$3 gomsg nixmsg
	if [ "$have_go" = 1 ]; then
		if go_units "$toml" "$tmp/refused.go.json" "$tmp/refused.go.err"; then
			fail "$what: go host plan $toml accepted it (want: $want)"
		elif grep -qF -- "$want" "$tmp/refused.go.err"; then
			pass "$what: go host plan $toml refuses it: $want"
		else
			fail "$what: go host plan $toml error lacks: $want"; show "$tmp/refused.go.err"
		fi
	fi
	if nix_units "$toml" "$tmp/refused.nix.json" "$tmp/refused.nix.err"; then
		fail "$what: nix units $toml accepted it (want: $want)"
		return
	elif grep -qF -- "$want" "$tmp/refused.nix.err"; then
		pass "$what: nix units $toml refuses it: $want"
	else
		fail "$what: nix units $toml error lacks: $want"; show "$tmp/refused.nix.err"
		return
	fi
	if [ "$have_go" = 1 ]; then
		gomsg=$(message "$toml" "$tmp/refused.go.err")
		nixmsg=$(message "$toml" "$tmp/refused.nix.err")
		if [ -n "$gomsg" ] && [ "$gomsg" = "$nixmsg" ]; then
			pass "$what: go and nix refuse $toml with the same message"
		else
			fail "$what: go and nix refuse $toml with different messages"
			echo "     | go:  $gomsg"; echo "     | nix: $nixmsg"
		fi
	fi
}
# nix_zone PROFILE OUT ERR: the zone text, raw.
nix_zone() {
	nix "${nixflags[@]}" eval --raw --file "$evalnix" \
		--apply "f: f { profile = \"$root/$1\"; what = \"zone\"; }" >"$2" 2>"$3"
}

# 1. Every .nix file parses (syntax, undefined variables, duplicate attributes).
while IFS= read -r f; do
	if nix-instantiate --parse "$f" >/dev/null 2>"$tmp/parse.err"; then
		pass "parse $f"
	else
		fail "parse $f"; show "$tmp/parse.err"
	fi
done < <(find . -name '*.nix' -not -path './.git/*' | sort)

# 2. Build correoctl once.
if go build -o "$tmp/correoctl" ./src/cmd/correoctl 2>"$tmp/build.err"; then
	pass "go build ./src/cmd/correoctl"
	have_go=1
else
	fail "go build ./src/cmd/correoctl"; show "$tmp/build.err"
	have_go=0
fi

# 3. Every profile in hosts/: Nix settings == golden == Go; Nix zone == Go
#    zone == golden zone; named-checkzone accepts it.
for toml in hosts/*.toml; do
	name=$(basename "$toml" .toml)
	gold="$golden/$name.settings.json"
	goldzone="$golden/$name.zone"
	if [ "${UPDATE_GOLDEN:-}" = 1 ] && [ "$have_go" = 1 ]; then
		"$tmp/correoctl" profile settings --profile "$toml" >"$gold"
		"$tmp/correoctl" dns zone --profile "$toml" >"$goldzone"
		echo "     updated $gold $goldzone"
	fi

	have_nix=0
	if nix_settings "$toml" "$tmp/$name.nix.json" "$tmp/$name.nix.err"; then
		have_nix=1
	else
		fail "nix settings $toml evaluates"; show "$tmp/$name.nix.err"
	fi
	if [ ! -f "$gold" ]; then
		fail "golden $gold exists (UPDATE_GOLDEN=1 creates it)"
	else
		jq -S . "$gold" >"$tmp/$name.gold.json"
		if [ "$have_nix" = 1 ]; then
			if diff -u "$tmp/$name.gold.json" "$tmp/$name.nix.json" >"$tmp/diff"; then
				pass "nix settings $toml == $gold"
			else
				fail "nix settings $toml == $gold"; show "$tmp/diff"
			fi
		fi
		if [ "$have_go" = 1 ]; then
			if "$tmp/correoctl" profile settings --profile "$toml" 2>"$tmp/go.err" | jq -S . >"$tmp/$name.go.json" &&
				diff -u "$tmp/$name.gold.json" "$tmp/$name.go.json" >"$tmp/diff"; then
				pass "go settings $toml == $gold"
			else
				fail "go settings $toml == $gold"; show "$tmp/go.err"; show "$tmp/diff"
			fi
		fi
	fi

	if nix_zone "$toml" "$tmp/$name.nix.zone" "$tmp/$name.zone.err"; then
		if [ "$have_go" = 1 ]; then
			if "$tmp/correoctl" dns zone --profile "$toml" >"$tmp/$name.go.zone" 2>"$tmp/go.err" &&
				cmp -s "$tmp/$name.go.zone" "$tmp/$name.nix.zone"; then
				pass "nix zone $toml == go dns zone (bytes)"
			else
				diff -u "$tmp/$name.go.zone" "$tmp/$name.nix.zone" >"$tmp/diff" || true
				fail "nix zone $toml == go dns zone (bytes)"; show "$tmp/go.err"; show "$tmp/diff"
			fi
		fi
		if [ -f "$goldzone" ] && cmp -s "$goldzone" "$tmp/$name.nix.zone"; then
			pass "nix zone $toml == $goldzone"
		else
			fail "nix zone $toml == $goldzone"
		fi
		zone=$(sed -n 's/^\$ORIGIN \(.*\)\.$/\1/p' "$tmp/$name.nix.zone")
		if named-checkzone "$zone" "$tmp/$name.nix.zone" >"$tmp/checkzone.out" 2>&1; then
			pass "named-checkzone $zone ($toml)"
		else
			fail "named-checkzone $zone ($toml)"; show "$tmp/checkzone.out"
		fi
	else
		fail "nix zone $toml evaluates"; show "$tmp/$name.zone.err"
	fi
done

# 4. Units: every host's systemd units (src/hostplan/units.go and
#    nix/lib/units.nix, both from src/hostplan/daemons.json). For every
#    profile in hosts/ but those listed here, Nix units == golden == Go
#    `host plan`; the listed ones both sides must refuse, with the same
#    message (dev.toml's NSS socket is in .dev/, where systemd cannot give
#    nssd a runtime directory).
declare -A units_refused=([dev]="under systemd the NSS socket must live in a directory under /run")
for toml in hosts/*.toml; do
	name=$(basename "$toml" .toml)
	gold="$golden/$name.units.json"
	if [ -n "${units_refused[$name]:-}" ]; then
		refused "units" "$toml" "${units_refused[$name]}"
		if [ -e "$gold" ]; then
			fail "units: $gold exists but $toml is refused: delete it (or drop $name from units_refused in run.sh)"
		fi
		continue
	fi
	if [ "${UPDATE_GOLDEN:-}" = 1 ] && [ "$have_go" = 1 ]; then
		"$tmp/correoctl" host plan --profile "$toml" >"$gold"
		echo "     updated $gold"
	fi
	if [ ! -f "$gold" ]; then
		fail "units: golden $gold exists (UPDATE_GOLDEN=1 creates it; or list $name in units_refused)"
		continue
	fi
	jq -S . "$gold" >"$tmp/$name.units.gold.json"
	if nix_units "$toml" "$tmp/$name.units.nix.json" "$tmp/$name.units.nix.err"; then
		if diff -u "$tmp/$name.units.gold.json" "$tmp/$name.units.nix.json" >"$tmp/diff"; then
			pass "nix units $toml == $gold"
		else
			fail "nix units $toml == $gold"; show "$tmp/diff"
		fi
	else
		fail "nix units $toml evaluates"; show "$tmp/$name.units.nix.err"
	fi
	if [ "$have_go" = 1 ]; then
		if go_units "$toml" "$tmp/$name.units.go.json" "$tmp/go.err" &&
			diff -u "$tmp/$name.units.gold.json" "$tmp/$name.units.go.json" >"$tmp/diff"; then
			pass "go host plan $toml == $gold"
		else
			fail "go host plan $toml == $gold"; show "$tmp/go.err"; show "$tmp/diff"
		fi
	fi
done

# 5. Edge cases of the unit rules no profile in hosts/ has (one host with
#    nearly every role, no certificate, IPv6, a grace that is not whole
#    seconds, NSS socket paths systemd cannot use): src/hostplan/testdata/
#    units, Go and Nix compared directly (no golden); each bad one refused
#    by both with the message its first line names.
if [ "$have_go" = 1 ]; then
	for toml in src/hostplan/testdata/units/*.toml; do
		if ! go_units "$toml" "$tmp/edge.go.json" "$tmp/go.err"; then
			fail "units edge case $toml: go host plan"; show "$tmp/go.err"
		elif ! nix_units "$toml" "$tmp/edge.nix.json" "$tmp/edge.nix.err"; then
			fail "units edge case $toml: nix units evaluate"; show "$tmp/edge.nix.err"
		elif diff -u "$tmp/edge.go.json" "$tmp/edge.nix.json" >"$tmp/diff"; then
			pass "units edge case $toml: nix == go host plan"
		else
			fail "units edge case $toml: nix == go host plan"; show "$tmp/diff"
		fi
	done
	for toml in src/hostplan/testdata/units/bad/*.toml; do
		want=$(head -n 1 "$toml" | sed -n 's/^# error: //p')
		if [ -z "$want" ]; then
			fail "units bad $toml: first line is not '# error: <substring>'"
			continue
		fi
		refused "units bad" "$toml" "$want"
	done
fi

# 6. Unit files: Nix's unitText of every unit of every host of
#    example.toml is, byte for byte, the file `correoctl host render`
#    writes under /etc/systemd/system (every regular file there, so a unit
#    Go renders that Nix lacks fails too).
if [ "$have_go" = 1 ]; then
	toml=hosts/example.toml
	if nix-instantiate --eval --strict --json "$evalnix" --argstr profile "$root/$toml" --argstr what unitTexts \
		>"$tmp/texts.json" 2>"$tmp/texts.err"; then
		for host in $(jq -r 'keys[]' "$tmp/texts.json"); do
			rm -rf "$tmp/render" "$tmp/units.go" "$tmp/units.nix"
			mkdir -p "$tmp/units.go" "$tmp/units.nix"
			if ! "$tmp/correoctl" host render --profile "$toml" --host "$host" --root "$tmp/render" >/dev/null 2>"$tmp/go.err"; then
				fail "unit files of $host: correoctl host render"; show "$tmp/go.err"
				continue
			fi
			find "$tmp/render/etc/systemd/system" -maxdepth 1 -type f -exec cp {} "$tmp/units.go/" \;
			for unit in $(jq -r --arg h "$host" '.[$h] | keys[]' "$tmp/texts.json"); do
				jq -j --arg h "$host" --arg u "$unit" '.[$h][$u]' "$tmp/texts.json" >"$tmp/units.nix/$unit"
			done
			if diff -ru "$tmp/units.go" "$tmp/units.nix" >"$tmp/diff"; then
				pass "unit files of $host ($toml): nix unitText == host render ($(find "$tmp/units.go" -type f | wc -l) files)"
			else
				fail "unit files of $host ($toml): nix unitText == host render"; show "$tmp/diff"
			fi
		done
	else
		fail "nix unitTexts $toml evaluates"; show "$tmp/texts.err"
	fi
fi

# 7. Every bad profile: Nix must refuse it with the message its first line
#    names ("# error: <substring>").
for toml in src/cluster/testdata/bad/*.toml; do
	want=$(head -n 1 "$toml" | sed -n 's/^# error: //p')
	if [ -z "$want" ]; then
		fail "bad $toml: first line is not '# error: <substring>'"
		continue
	fi
	if nix_settings "$toml" "$tmp/bad.json" "$tmp/bad.err"; then
		fail "bad $toml: nix accepted it (want: $want)"
	elif grep -qF -- "$want" "$tmp/bad.err"; then
		pass "bad $toml: nix refuses it: $want"
	else
		fail "bad $toml: nix error lacks: $want"; show "$tmp/bad.err"
	fi
done

# 7b. A profile written before the proxy served IMAP (role popproxy,
#     [host.popproxy]) loads, in Nix and in Go, as hosts/example.toml does.
#     It sits beside example.toml (paths in it are relative to it), hidden
#     from the hosts/*.toml loops, and is removed at once.
legacy=$(mktemp -p hosts .legacy-XXXXXX.toml)
trap 'rm -rf "$tmp" "$legacy"' EXIT
sed -e 's/"mailproxy"/"popproxy"/g' -e 's/^\[host\.mailproxy\]/[host.popproxy]/' hosts/example.toml >"$legacy"
if grep -q '"popproxy"' "$legacy" && grep -q '^\[host\.popproxy\]' "$legacy" &&
	nix_settings "$legacy" "$tmp/legacy.nix.json" "$tmp/legacy.err" &&
	jq -S 'del(.source)' "$tmp/legacy.nix.json" >"$tmp/legacy.a" && jq -S 'del(.source)' "$golden/example.settings.json" >"$tmp/legacy.b" &&
	cmp -s "$tmp/legacy.a" "$tmp/legacy.b"; then
	pass "nix: a profile saying popproxy loads as mailproxy (== example's settings)"
else
	fail "nix: a profile saying popproxy loads as mailproxy (== example's settings)"; show "$tmp/legacy.err"
	diff -u "$tmp/legacy.b" "$tmp/legacy.a" >"$tmp/diff" 2>&1 || true; show "$tmp/diff"
fi
if [ "$have_go" = 1 ]; then
	if "$tmp/correoctl" profile settings --profile "$legacy" 2>"$tmp/go.err" | jq -S 'del(.source)' >"$tmp/legacy.go" &&
		cmp -s "$tmp/legacy.go" "$tmp/legacy.b"; then
		pass "go: a profile saying popproxy loads as mailproxy (== example's settings)"
	else
		fail "go: a profile saying popproxy loads as mailproxy (== example's settings)"; show "$tmp/go.err"
	fi
fi
rm -f "$legacy"

# 7c. DKIM keys: a profile with a records file (src/cluster/testdata/dkim)
#     gives the same settings and zone bytes in Nix and Go, RSA keys split
#     into 255-byte strings, and BIND loads the zone.
dk=src/cluster/testdata/dkim/profile.toml
if nix_settings "$dk" "$tmp/dk.nix.json" "$tmp/dk.err" && nix_zone "$dk" "$tmp/dk.nix.zone" "$tmp/dk.zerr"; then
	if [ "$(jq '.cluster.mail_auth.dkim_keys | length' "$tmp/dk.nix.json")" -ge 4 ] && grep -q '_domainkey.mail	IN	TXT	"v=DKIM1; k=rsa; p=[^"]*" "' "$tmp/dk.nix.zone"; then
		pass "nix: DKIM keys in the settings and the zone (RSA split in two strings)"
	else
		fail "nix: DKIM keys in the settings and the zone (RSA split in two strings)"; show "$tmp/dk.nix.zone"
	fi
	if [ "$have_go" = 1 ]; then
		if "$tmp/correoctl" profile settings --profile "$root/$dk" 2>"$tmp/go.err" | jq -S . >"$tmp/dk.go.json" && cmp -s "$tmp/dk.go.json" "$tmp/dk.nix.json" &&
			"$tmp/correoctl" dns zone --profile "$root/$dk" >"$tmp/dk.go.zone" 2>>"$tmp/go.err" && cmp -s "$tmp/dk.go.zone" "$tmp/dk.nix.zone"; then
			pass "DKIM profile: Go settings and zone == Nix"
		else
			diff -u "$tmp/dk.go.json" "$tmp/dk.nix.json" >"$tmp/diff" 2>&1 || true
			diff -u "$tmp/dk.go.zone" "$tmp/dk.nix.zone" >>"$tmp/diff" 2>&1 || true
			fail "DKIM profile: Go settings and zone == Nix"; show "$tmp/go.err"; show "$tmp/diff"
		fi
	fi
	if named-checkzone -k fail correo.example "$tmp/dk.nix.zone" >"$tmp/checkzone.out" 2>&1; then
		pass "named-checkzone of the DKIM profile's zone"
	else
		fail "named-checkzone of the DKIM profile's zone"; show "$tmp/checkzone.out"
	fi
else
	fail "nix evaluates the DKIM profile"; show "$tmp/dk.err"; show "$tmp/dk.zerr"
fi

# 8. The pure-Nix golden check the flake runs (checks.lib-golden), here
#    without the flake: it must agree.
if nix-instantiate --eval --strict --json nix/lib/tests/golden.nix -A failed >"$tmp/golden.out" 2>"$tmp/golden.err" &&
	[ "$(cat "$tmp/golden.out")" = "[]" ]; then
	pass "nix/lib/tests/golden.nix (the flake's lib-golden check)"
else
	fail "nix/lib/tests/golden.nix (the flake's lib-golden check)"; show "$tmp/golden.out"; show "$tmp/golden.err"
fi

# 9. The same check as the derivation the flake builds, built offline with
#    /bin/sh (no nixpkgs, no substituters). Debian's nix-bin ships no
#    nix.conf and no nixbld group (nix-setup-systemd would add them): as
#    root, build without build users, and so without the sandbox, which
#    would also hide /bin/sh.
if nix-build nix/lib/tests/check.nix --no-out-link --option substituters '' \
	--option build-users-group '' --option sandbox false >"$tmp/check.out" 2>"$tmp/check.err"; then
	pass "nix-build nix/lib/tests/check.nix (lib-golden derivation)"
else
	fail "nix-build nix/lib/tests/check.nix (lib-golden derivation)"; show "$tmp/check.err"
fi

# 10. flake.nix's outputs evaluate (with a stub nixpkgs: the real one cannot
#    be downloaded here) and the package lists every command in src/cmd.
if nix-instantiate --eval --strict --json nix/lib/tests/flake-stub.nix >"$tmp/flake.json" 2>"$tmp/flake.err"; then
	want=$(find src/cmd -mindepth 1 -maxdepth 1 -type d -printf 'src/cmd/%f\n' | sort | jq -R . | jq -cs .)
	got=$(jq -c '.subPackages | sort' "$tmp/flake.json")
	if [ "$want" = "$got" ]; then
		pass "flake.nix outputs evaluate (stub nixpkgs); subPackages $got"
	else
		fail "flake.nix subPackages: want $want, got $got"
	fi
	# packages.nss builds src/nss from exactly its Makefile and sources.
	got=$(jq -c '[.nssPname, (.nssSources | sort)]' "$tmp/flake.json")
	if [ "$got" = '["correo-nss",["Makefile","nss_correo.c","nss_correo.map"]]' ]; then
		pass "flake.nix packages.nss: $got"
	else
		fail "flake.nix packages.nss: got $got"
	fi
else
	fail "flake.nix outputs evaluate (stub nixpkgs)"; show "$tmp/flake.err"
fi

# 11. vendorHash in nix/packages/correo.nix matches go.mod/go.sum: the NAR
#    hash of what `go mod vendor` writes, as buildGoModule's goModules
#    fixed output holds it. Offline: needs the modules in the Go cache.
if [ "$have_go" = 1 ]; then
	mkdir "$tmp/vend"
	cp -r go.mod go.sum hosts src internal "$tmp/vend/"
	if (cd "$tmp/vend" && GOFLAGS=-mod=readonly GOPROXY=off go mod vendor) >"$tmp/vend.err" 2>&1; then
		want=$(nix "${nixflags[@]}" hash path --type sha256 "$tmp/vend/vendor")
		got=$(sed -n 's/^ *vendorHash = "\(.*\)";/\1/p' nix/packages/correo.nix)
		if [ "$want" = "$got" ]; then
			pass "vendorHash $got matches go.mod/go.sum"
		else
			fail "vendorHash in nix/packages/correo.nix is $got; go.mod/go.sum need $want"
		fi
	else
		fail "go mod vendor (for the vendorHash check)"; show "$tmp/vend.err"
	fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
