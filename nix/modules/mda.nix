# pdelivery as the local delivery agent of Postfix on a storage host
# (services.correo.mda.enable): Postfix's local(8) runs mailbox_command as
# the recipient, and pdelivery, without the cluster key, hands the message
# to this host's pdeliveryd, which names the user's storage host. The
# recipient must be a Unix user to local(8): libnss_correo (nss.nix) makes
# the cluster's users so. The line is the one src/hostplan writes to
# /etc/correo/mda/postfix-main.cf, with the package's pdelivery.
#
# Not services.mail.sendmailSetuidWrapper: that hook (nixpkgs' mail.nix)
# installs the setuid `sendmail` command programs use to *submit* mail, and
# an MTA module (postfix, exim, opensmtpd) sets it to its own; pdelivery is
# the other end, the program an MTA runs to deliver. Sendmail itself has no
# NixOS module, so only Postfix is wired here (the Sendmail lines are in
# the README).
{ config, lib, ... }:
let
  inherit (lib) mkIf;
  cfg = config.services.correo;
  plan = import ./plan.nix cfg;
in
{
  config = mkIf (cfg.enable && cfg.mda.enable) {
    assertions = [
      {
        assertion = config.services.postfix.enable;
        message = "services.correo.mda.enable makes pdelivery Postfix's local delivery agent, but services.postfix.enable is false: enable Postfix, or leave mda.enable off";
      }
      {
        assertion = !plan.known || plan.hasRole "storage";
        message = "services.correo.mda.enable: host \"${cfg.host}\" has no storage role in ${toString cfg.profile}, so no pdeliveryd runs here for pdelivery to deliver through";
      }
    ];
    services.postfix.settings.main.mailbox_command =
      "${cfg.package}/bin/pdelivery -profile ${plan.rules.profilePath} -f \"$SENDER\" -a \"$RECIPIENT\" -d \"$USER\"";
  };
}
