// Package scenario holds correo's whole-cluster scenarios once, for every
// way of booting hosts/example.toml: vm-tests/netns (processes in network
// namespaces, src/runner) and vm-tests/nspawn (every host a systemd-nspawn
// container with systemd as PID 1). Each scenario is a function
// func X(t *testing.T, c Cluster); a suite boots a cluster, implements
// Cluster over it, and calls the scenarios. The real clients stay real:
// Postfix, curl, Python's poplib, getent and id, pdelivery.
//
// # The cluster interface
//
// Cluster is what the scenarios need of a booted cluster and no more:
// the profile as the hosts read it, Go code with a host's network (In),
// a command on a host (Command), a host's files (Path, StateDir), a
// daemon stopped, killed and started (Stop, Kill, Start), a host's link
// cut (SetLink), and the central log (CentralLog). Hosts are the
// profile's names plus Outside, the Internet.
//
// Programs are named without paths. Command(host, "pdelivery", ...) runs
// the pdelivery installed on that host: in netns the runner's build
// (runner.Runner.BinDir), under nspawn /usr/bin/pdelivery. Command adds no
// flags; a scenario passes "-profile", c.ProfilePath() itself, because
// where the flag goes depends on the program (correoctl takes it after
// its subcommand) and only the scenario knows the program. ProfilePath is
// the runner's rewritten profile in netns and /etc/correo/profile.toml
// under nspawn. Programs that are not correo's (getent, id, sh, python3)
// are the host's own.
//
// In(host, f) puts only f's own goroutine in host's network (setns on a
// locked thread, runner.InNetns). A goroutine f starts is on another
// thread, in this machine's network, where the profile's addresses lead
// to the real network: code that dials from several goroutines
// (src/delivery, SMTP clients with timeouts, Postfix) runs as a process
// through Command instead.
//
// Outside is this machine with another network: Command(Outside, ...)
// runs this machine's programs (python3, curl, Postfix) with the cluster
// DNS as resolver, and their files are this machine's, so the Postfix
// that InternetMailToPOP starts there keeps its queue and log where the
// test reads them. Its address is OutsidePrefix.
//
// # Running several scenarios on one cluster
//
// A scenario in Shared leaves the cluster as it found it: what it stops
// or kills it starts again, a link it cuts it restores (t.Cleanup, so a
// failing scenario does too), and it waits for the passwd servers to be
// in step again. It adds users of its own — no two scenarios share a name
// (the doc comment of each lists them; letters placement depends only on
// the first letter, so the names keep the paper's hosts) — and counts from
// what it finds: users from the passwd servers' count when it starts,
// log lines from the central log's size when it starts. So a suite may
// boot once and run them all in any order; vm-tests/netns does, checking
// after each that every daemon still runs.
//
// What a cluster needs before it boots is data here, so every suite boots
// the same cluster: LoadProfile (hosts/example.toml with Adjust: bcrypt
// cost 4, a one-second retry ladder), WriteProfile (that profile as a file
// to render the hosts from), ExtraZones (the Internet's zone the relay
// looks up; the dns hosts serve it next to the cluster's), and
// OutsidePrefix.
//
// # Scenarios only one suite runs
//
// GrowthWithoutMigration changes the cluster for good (it adds store4 and
// re-boots with the grown profile on the same state) and takes a Grow
// function to do so; only netns provides one today, by booting the runner
// again. Under nspawn growing means rendering and booting a new container
// and reloading every host's profile: possible, not written.
// vm-tests/netns's TestTeardownLeavesNothing checks that the runner removes
// its namespaces and links, which is about the runner, not the cluster, and
// stays there.
//
// # What an nspawn implementation provides
//
//   - Profile: the adjusted profile (LoadProfile) as rendered into every
//     host; ProfilePath: where the hosts keep it (/etc/correo/profile.toml).
//   - In: setns into the container's network namespace
//     (/proc/<leader>/ns/net) on a locked thread, as runner.InNetns does
//     for /run/netns/<name>; for Outside, a plain network namespace on
//     the bridge with address OutsidePrefix and a route to the cluster's
//     network.
//   - Command: for a container, e.g. nsenter --target <leader> --all --
//     with bare correo names left as they are (/usr/bin is on the host's
//     PATH); for Outside, ip netns exec with the cluster DNS bind-mounted
//     over /etc/resolv.conf in a private mount namespace (see
//     vm-tests/netns).
//   - Path: /proc/<leader>/root + path. StateDir: the daemon's
//     StateDirectory (e.g. /var/lib/correo/smtpd): smtpd's queue is its
//     queue subdirectory.
//   - Stop, Kill, Start: systemctl stop / kill -s KILL / start
//     correo-<daemon> inside the container (daemon names as
//     runner.Daemons has them: passwdd, pdeliveryd, smtpd, mailproxy,
//     pop3d, nssd). Stop must keep a killed daemon down even if systemd
//     restarted it meanwhile; Start must return once the unit is active
//     (Type=notify) and be a no-op for a running one. Where a daemon is
//     socket-activated (hostplan renders correo-<program>-<service>.socket
//     units), Stop stops its socket units too and Start starts them: a
//     listening socket starts the service again on the next connection or
//     datagram. PasswdFailover and StorageHostDown check that a stopped
//     daemon no longer answers, and fail saying so.
//   - SetLink: ip link set host0 down / up in the container (or the
//     bridge port vb-<machine> on this machine), restoring its routes.
//   - CentralLog: the loghost's files, by host and all hosts together,
//     in the line format of the runner's loghost (Cluster.CentralLog):
//     InternetMailToPOP parses it for trace ids.
//   - The hosts' nsswitch.conf with correo on passwd and group, and the
//     module installed (NSSOnStorageHost runs getent and id on store1).
package scenario
