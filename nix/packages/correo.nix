# correo's Go programs: every command under src/cmd (correoctl and, as they
# land, the daemons), built without cgo into static binaries.
#
# Called from flake.nix as pkgs.callPackage ./nix/packages/correo.nix { }.
{ lib, buildGoModule }:
let
  root = ../..;

  # The commands that exist: every directory under src/cmd. A new daemon is
  # picked up without editing this file.
  commands = builtins.attrNames
    (lib.filterAttrs (_: type: type == "directory") (builtins.readDir (root + "/src/cmd")));
in
buildGoModule {
  pname = "correo";
  # The repository's `version` file when there is one.
  version = if builtins.pathExists (root + "/version") then lib.fileContents (root + "/version") else "0.1.0";

  # Only what the Go build reads (hosts/ is embedded: hosts/embed.go), so
  # editing the Nix files or the VM tests does not rebuild the binaries.
  # internal/ holds test helpers only, but `go mod vendor` resolves the
  # imports of src's tests too and fails on a package that is missing.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/go.mod")
      (root + "/go.sum")
      (root + "/src")
      (root + "/internal")
      (root + "/hosts")
    ];
  };

  # The NAR hash of the directory `go mod vendor` writes, which is exactly
  # what buildGoModule's fixed-output goModules derivation holds. Computed
  # offline from the current go.mod/go.sum with Go 1.26.8:
  #   cp -r go.mod go.sum hosts src internal $tmp && cd $tmp && go mod vendor &&
  #   nix hash path --type sha256 vendor
  # Caveats: it must be recomputed whenever go.mod or go.sum change (a
  # wrong hash makes the build print the right one), and a different Go
  # release could in principle write vendor/modules.txt differently; if
  # the nixpkgs build disagrees, trust the hash it reports.
  vendorHash = "sha256-YMlJ/r6XkdHDM+oA9xlRbjWe53REtno+W4io5QJX+Kc=";

  subPackages = map (c: "src/cmd/${c}") commands;

  # Pure Go: the NSS module (src/nss) is C and built on its own; the
  # daemons need no libc, and os/user reads /etc/passwd without cgo.
  env.CGO_ENABLED = 0;
  ldflags = [ "-s" "-w" ];

  # The Go tests need real peers (rsyslogd, named-checkzone, network
  # namespaces, root); they run in `make test` and the VM tests, not in
  # the sandboxed package build.
  doCheck = false;

  meta = {
    description = "An ISP e-mail cluster that scales by adding hosts";
    # go.mod says go 1.26.0: nixpkgs' default Go must be at least that
    # (else override with buildGo126Module).
    platforms = lib.platforms.linux;
    mainProgram = "correoctl";
  };
}
