# Small string and list helpers. nix/lib is builtins-only (no nixpkgs, no
# `lib`) so that it evaluates on any machine with plain Nix, including the
# offline build hosts and the golden tests; these few helpers replace the
# parts of nixpkgs' lib it would otherwise need.
let
  inherit (builtins) concatStringsSep filter foldl' genList length elemAt
    stringLength substring replaceStrings match fromJSON;

  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
in
rec {
  # ASCII only, like Go's strings.ToLower on the DNS names profiles hold.
  toLower = replaceStrings upper lower;

  hasSuffix = suffix: s:
    let ls = stringLength s; lx = stringLength suffix;
    in ls >= lx && substring (ls - lx) lx s == suffix;

  removeSuffix = suffix: s:
    if hasSuffix suffix s then substring 0 (stringLength s - stringLength suffix) s else s;

  hasInfix = infix: s: match ".*${escapeRegex infix}.*" s != null;

  escapeRegex = replaceStrings
    [ "\\" "." "[" "]" "(" ")" "{" "}" "*" "+" "?" "^" "$" "|" ]
    [ "\\\\" "\\." "\\[" "\\]" "\\(" "\\)" "\\{" "\\}" "\\*" "\\+" "\\?" "\\^" "\\$" "\\|" ];

  # Decimal digits to an integer. fromJSON refuses leading zeros, so they
  # are stripped first; callers bound the length so the value fits 64 bits.
  parseDecimal = s:
    let m = match "0*([0-9]+)" s;
    in if m == null then throw "correo/nix/lib: not a decimal number: ${s}" else fromJSON (elemAt m 0);

  # Index of the first element satisfying pred, or null.
  findIndex = pred: list:
    let
      n = length list;
      go = i: if i >= n then null else if pred (elemAt list i) then i else go (i + 1);
    in go 0;

  imap0 = f: list: genList (i: f i (elemAt list i)) (length list);

  count = pred: list: length (filter pred list);

  # Go prints a []string with %v as "[a b c]".
  goList = list: "[${concatStringsSep " " list}]";

  # Go's %q for the plain ASCII strings profiles contain.
  quote = s: "\"${replaceStrings [ "\\" "\"" ] [ "\\\\" "\\\"" ] s}\"";

  pow = base: exp: foldl' (acc: _: acc * base) 1 (genList (x: x) exp);

  unique = list: foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ] list;
}
