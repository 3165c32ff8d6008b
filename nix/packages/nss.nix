# libnss_correo.so.2, the NSS module (src/nss): plain C, libc only, built
# with its own Makefile. On NixOS it goes into system.nssModules, with
# `correo` after `files` for passwd and group; nssd serves
# /run/correo/nssd.sock, the socket path compiled in here.
#
# Called from flake.nix as pkgs.callPackage ./nix/packages/nss.nix { }.
{ lib, stdenv }:
let
  root = ../..;
  dir = root + "/src/nss";
in
stdenv.mkDerivation {
  pname = "correo-nss";
  version = if builtins.pathExists (root + "/version") then lib.fileContents (root + "/version") else "0.1.0";

  # Only the module's sources: editing Go code does not rebuild it.
  src = lib.fileset.toSource {
    root = dir;
    fileset = lib.fileset.unions [
      (dir + "/Makefile")
      (dir + "/nss_correo.c")
      (dir + "/nss_correo.map")
    ];
  };

  # `make install` puts the library in $out/lib (LIBDIR), where
  # system.nssModules and LD_LIBRARY_PATH-style lookups expect it.
  makeFlags = [ "LIBDIR=${placeholder "out"}/lib" ];

  meta = {
    description = "NSS module resolving correo cluster users through the local nssd agent";
    platforms = lib.platforms.linux;
  };
}
