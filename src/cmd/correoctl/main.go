// Command correoctl is the operator's tool for a correo cluster: it checks
// host profiles, prints the settings and DNS zone they produce, and reports
// on mailbox layouts. Each subcommand is a thin wrapper over a package.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one `correoctl <group> <verb>`.
type command struct {
	group, verb string
	summary     string
	run         func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"profile", "check", "validate a host profile (all errors at once)", runProfileCheck},
	{"profile", "settings", "print the resolved per-host settings as JSON (what nix/lib computes)", runProfileSettings},
	{"dns", "zone", "print the cluster DNS zone generated from a profile", runDNSZone},
	{"layout", "report", "compare mailbox layout schemes over a list of user names (the paper's Fig. 4)", runLayoutReport},
	{"cluster", "up", "boot a profile's hosts on this machine until Ctrl-C (make dev; -netns for real clusters)", runClusterUp},
	{"cluster", "down", "remove what a crashed `cluster up` left (-netns: its namespaces too)", runClusterDown},
	{"users", "add", "add a user (-password-stdin to set a password)", runUsersAdd},
	{"users", "del", "delete a user", runUsersDel},
	{"users", "mod", "change a user's fields (-state disabled, -storage, -quota ...)", runUsersMod},
	{"users", "passwd", "set a user's password (read from stdin)", runUsersPasswd},
	{"users", "show", "show one user (never the hash)", runUsersShow},
	{"users", "list", "list every user", runUsersList},
	{"users", "import", "import users from passwd(+shadow) or CSV, all or nothing", runUsersImport},
	{"alias", "add", "give a user another local part", runAliasAdd},
	{"alias", "del", "remove an alias", runAliasDel},
	{"passwd", "status", "state of both passwd servers", runPasswdStatus},
	{"host", "render", "write everything a host needs under -root: units, accounts, NSS, network, syslog, DNS", runHostRender},
	{"host", "install", "render onto this Debian host, then daemon-reload, enable and start its units", runHostInstall},
	{"host", "plan", "print hosts' systemd units as JSON (what nix/lib/units.nix computes)", runHostPlan},
	{"key", "new", "create a cluster key file", runKeyNew},
	{"dkim", "new", "make a domain's next DKIM keys (Ed25519 and RSA-2048), published at once, signing after dkim_publish_wait", runDKIMNew},
	{"dkim", "list", "list DKIM keys and which ones sign", runDKIMList},
	{"dkim", "retire", "remove a domain's superseded DKIM keys from the zone and delete them (-selector: one key now)", runDKIMRetire},
	{"layout", "sample", "print a realistic sample of ISP user names", runLayoutSample},
	{"mailbox", "move", "move a user's mailbox to another storage host while in use (-resume, -abort a journaled move)", runMailboxMove},
	{"storage", "drain", "move every user off a storage host (for decommissioning); -dry-run prints the plan", runStorageDrain},
	{"storage", "rebalance", "move users until the storage hosts' fill is within -margin of the mean, biggest gain first; -dry-run prints the plan", runStorageRebalance},
	{"queue", "list", "list smtpd's queued messages (safe while smtpd runs)", runQueueList},
	{"queue", "show", "show one queued message: envelope, state, headers", runQueueShow},
	{"queue", "flush", "make every queued message due now", runQueueFlush},
	{"queue", "delete", "remove a message from the queue without delivering or bouncing it", runQueueDelete},
}

// errUsage marks errors that should print the usage and exit 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		usage(stderr)
		return 2
	}
	for _, c := range commands {
		if c.group == args[0] && c.verb == args[1] {
			err := c.run(args[2:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
				if !errors.Is(err, flag.ErrHelp) {
					fmt.Fprintf(stderr, "correoctl %s %s: %v\n", c.group, c.verb, strings.TrimPrefix(err.Error(), "usage: "))
				}
				return 2
			default:
				fmt.Fprintf(stderr, "correoctl %s %s: %v\n", c.group, c.verb, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "correoctl: unknown command %q\n", strings.Join(args[:2], " "))
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: correoctl <group> <command> [flags]")
	sorted := append([]command(nil), commands...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].group < sorted[j].group })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-8s %-9s %s\n", c.group, c.verb, c.summary)
	}
}

// newFlags makes a flag set that reports errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("correoctl "+name, flag.ContinueOnError)
	return fs
}

// parseFlags marks bad flags as usage errors (exit 2), as flag.ExitOnError
// would, but lets the caller decide.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
