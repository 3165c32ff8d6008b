#!/usr/bin/env bash
# Offline checks of the NixOS side the flake builds and the VM test
# (nix/nixos, nix/tests, flake.nix), for `make nix-check`. What a machine
# without nixpkgs can check: every file parses; flake.nix's
# nixosConfigurations (every host of hosts/example.toml) and every node of
# the VM test evaluate against stubs of NixOS's options, forced whole,
# with the profile's addresses; a misspelt option is refused; the test
# script compiles and names only nodes the test defines. Builds, the VM
# and the VM test need Nix, nixpkgs and KVM (README, "NixOS").
#
# NIXPKGS_LIB: nixpkgs' lib/ (default: the vendored copy,
# nix/vendor/nixpkgs-lib/lib).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
show() { [ -f "$1" ] || return 0; grep -v "build-users-group' does not exist" "$1" | awk 'NR <= 20 { print "     | " $0 }'; }
lib=${NIXPKGS_LIB:-$root/nix/vendor/nixpkgs-lib/lib}
evalnix=nix/nixos/tests/eval.nix

for f in flake.nix nix/nixos/*.nix nix/nixos/tests/*.nix nix/tests/*.nix; do
	if nix-instantiate --parse "$f" >/dev/null 2>"$tmp/parse.err"; then
		pass "nixos: parse $f"
	else
		fail "nixos: parse $f"; show "$tmp/parse.err"
	fi
done

if [ ! -f "$lib/default.nix" ]; then
	fail "nixos: no nixpkgs lib at $lib: set NIXPKGS_LIB to nixpkgs' lib/ (nothing below was evaluated)"
	echo "$passed passed, $failed failed"
	exit 1
fi
ev() {
	local out=$1 err=$2
	shift 2
	nix-instantiate --eval --strict --json "$evalnix" --arg nixpkgsLib "$lib" "$@" >"$out" 2>"$err"
}

# Every host of the example profile, as flake.nix builds it.
want=$(jq -r '[.hosts[] | "\(.name)=\(.address)"] | sort | join(" ")' <(nix-instantiate --eval --strict --json -E "(import ./nix/lib).loadProfile ./hosts/example.toml" 2>/dev/null))
if ev "$tmp/flake.json" "$tmp/flake.err" --argstr what flake; then
	got=$(jq -r '[to_entries[] | "\(.value.hostName)=\(.value.network.address[0] | split("/")[0])"] | sort | join(" ")' "$tmp/flake.json")
	if [ "$got" = "$want" ]; then
		pass "nixos: flake nixosConfigurations evaluate, forced, with the profile's names and addresses ($(jq length "$tmp/flake.json") hosts)"
	else
		fail "nixos: flake nixosConfigurations: want $want, got $got"
	fi
else
	fail "nixos: flake nixosConfigurations evaluate"; show "$tmp/flake.err"
fi

# flake.nix's outputs (nix/lib/tests/flake-stub.nix): the module, and an
# image and a system for every host.
if nix-instantiate --eval --strict --json nix/lib/tests/flake-stub.nix >"$tmp/fs.json" 2>"$tmp/fs.err"; then
	hosts=$(echo "$want" | tr ' ' '\n' | cut -d= -f1 | sort | tr '\n' ' ')
	imgs=$(jq -r '.images | map(ltrimstr("image-")) | sort | join(" ")' "$tmp/fs.json")
	confs=$(jq -r '.nixosConfigurations | sort | join(" ")' "$tmp/fs.json")
	if [ "$imgs " = "$hosts" ] && [ "$confs " = "$hosts" ] && jq -e .hasModule "$tmp/fs.json" >/dev/null; then
		pass "nixos: flake outputs nixosModules.default, nixosConfigurations and packages.image-<host> for: $hosts"
	else
		fail "nixos: flake outputs: hosts $hosts, images $imgs, systems $confs"
	fi
else
	fail "nixos: flake outputs (stub nixpkgs)"; show "$tmp/fs.err"
fi

# The VM test's nodes: the same hosts, on eth1, plus outside.
if ev "$tmp/nodes.json" "$tmp/nodes.err" --argstr what nodes; then
	nodes=$(jq -r 'del(.name, .script) | keys | join(" ")' "$tmp/nodes.json")
	bad=$(jq -r 'del(.name, .script, .outside) | to_entries[] | select(.value.network.matchConfig.Name != "eth1" or (.value.tmpfiles[0] | startswith("C /var/lib/correo/cluster.key") | not)) | .key' "$tmp/nodes.json")
	if [ -z "$bad" ] && jq -e '.ns1.zones == ["correo.example", "foreign.example"] and .outside.interfaces.eth1 == ["192.0.2.10/24"]' "$tmp/nodes.json" >/dev/null; then
		pass "nixos: VM test nodes evaluate, forced: $nodes"
	else
		fail "nixos: VM test nodes: wrong link, key or zones on: ${bad:-ns1/outside}"
	fi
else
	fail "nixos: VM test nodes evaluate"; show "$tmp/nodes.err"
fi

# A misspelt option is an error, not a setting silently ignored.
if ev "$tmp/neg.json" "$tmp/neg.err" --argstr what flake --arg extra '{ networking.interfacez = { }; }'; then
	fail "nixos: a misspelt option (networking.interfacez) was accepted"
elif grep -q "networking.interfacez' does not exist" "$tmp/neg.err"; then
	pass "nixos: a misspelt option is refused: $(grep -m1 -o "The option .*does not exist" "$tmp/neg.err")"
else
	fail "nixos: a misspelt option: unclear error"; show "$tmp/neg.err"
fi

# The test script: Python that compiles and uses only the driver's names
# and the nodes the test defines.
if [ -n "${nodes:-}" ]; then
	{
		echo "from typing import Any"
		for n in $nodes start_all subtest retry; do echo "$n: Any = None"; done
		cat nix/tests/cluster.py
	} >"$tmp/cluster_check.py"
	if pyflakes3 "$tmp/cluster_check.py" >"$tmp/pyflakes.out" 2>&1; then
		pass "nixos: nix/tests/cluster.py passes pyflakes with the test's nodes"
	else
		fail "nixos: nix/tests/cluster.py"; show "$tmp/pyflakes.out"
	fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
