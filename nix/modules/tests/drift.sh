#!/usr/bin/env bash
# Drift check of nix/modules/tests/stub.nix against a real nixpkgs: every
# option the stub declares must exist in nixpkgs' NixOS with a type of the
# same description, or the offline checks (run.sh) are checking the module
# against options NixOS no longer has. It needs the full nixpkgs, which
# cannot be downloaded on the machines where run.sh runs offline:
#
#   NIXPKGS=/path/to/nixpkgs bash nix/modules/tests/drift.sh
#
# On a machine with Nix and the network, the flake's pinned nixpkgs is
#
#   NIXPKGS=$(nix eval --impure --raw --expr \
#     '(builtins.getFlake (toString ./.)).inputs.nixpkgs.outPath') bash nix/modules/tests/drift.sh
#
# Without NIXPKGS it says so and exits 0: nothing was checked. Prints one
# line per option and "N passed, M failed".
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"

if [ -z "${NIXPKGS:-}" ] || [ ! -f "${NIXPKGS}/nixos/lib/eval-config.nix" ]; then
	echo "skip drift: no nixpkgs here (NIXPKGS=${NIXPKGS:-unset}): the stub's option types were NOT compared with NixOS."
	echo "     On a machine with Nix, from the repository root:"
	echo "       NIXPKGS=\$(nix eval --impure --raw --expr '(builtins.getFlake (toString ./.)).inputs.nixpkgs.outPath') bash nix/modules/tests/drift.sh"
	exit 0
fi

out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
if ! nix-instantiate --eval --strict --json nix/modules/tests/drift.nix --arg nixpkgs "$NIXPKGS" >"$out" 2>"$err"; then
	echo "FAIL drift: evaluating the stub and nixpkgs' options ($NIXPKGS)"
	grep -v "build-users-group' does not exist" "$err" | head -20 | sed 's/^/     | /'
	exit 1
fi
passed=0
failed=0
while IFS=$'\t' read -r path stub real; do
	if [ "$real" = null ]; then
		failed=$((failed + 1)); echo "FAIL drift: $path: not an option in $NIXPKGS (stub: $stub)"
	elif [ "$stub" = "$real" ]; then
		passed=$((passed + 1)); echo "ok   drift: $path: $stub"
	else
		failed=$((failed + 1)); echo "FAIL drift: $path: stub \"$stub\", nixpkgs \"$real\""
	fi
done < <(jq -r '.[] | [.path, .stub, (.real // "null")] | @tsv' "$out")
echo "$passed passed, $failed failed (stub.nix against $NIXPKGS)"
[ "$failed" -eq 0 ]
