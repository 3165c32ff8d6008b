// Package netns runs the whole-cluster scenarios of vm-tests/scenario on
// hosts/example.toml booted on this machine in network namespaces by
// src/runner: one namespace per host with the profile's addresses, plus
// "outside" for the Internet, with the real DNS server and central
// loghost, and the correo daemons as separate processes. The tests need
// root.
//
// nsCluster implements scenario.Cluster over the runner. The scenarios of
// scenario.Shared run one after the other on one shared cluster, as the
// nspawn suite runs them on its one boot; after each test every daemon
// must still run, and a test that fails hands the next one a fresh
// cluster. TestGrowthWithoutMigration boots its own cluster (growing
// re-boots it with store4 added), and TestTeardownLeavesNothing checks the
// runner's teardown, which no other suite has.
package netns
