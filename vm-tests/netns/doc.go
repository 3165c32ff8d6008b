// Package netns holds the whole-cluster scenarios: hosts/example.toml
// booted on this machine in network namespaces by src/runner (one
// namespace per host with the profile's addresses, plus "outside" for the
// Internet), with its real DNS server and central loghost, and the correo
// daemons as separate processes. The tests need root.
package netns
