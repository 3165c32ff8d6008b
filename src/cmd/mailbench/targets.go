package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// resolver finds a host name's addresses (net.DefaultResolver in use, a
// table in tests).
type resolver func(ctx context.Context, host string) ([]netip.Addr, error)

func systemResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// checkTargets resolves every "host:port" and returns the addresses to
// dial. A load tool pointed at the wrong name floods someone else's
// server, so every address a name resolves to must be loopback or inside
// the profile's network; anything else is refused unless allowRemote.
// mailbench then dials the addresses it checked, never the name again,
// so a second answer from DNS cannot send the load elsewhere.
func checkTargets(ctx context.Context, targets []string, network netip.Prefix, allowRemote bool, resolve resolver) ([]string, error) {
	var out []string
	for _, t := range targets {
		host, port, err := net.SplitHostPort(t)
		if err != nil {
			return nil, fmt.Errorf("target %q: %v (want host:port)", t, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("target %q: port %q is not a number from 1 to 65535", t, port)
		}
		var addrs []netip.Addr
		if a, err := netip.ParseAddr(host); err == nil {
			addrs = []netip.Addr{a}
		} else {
			addrs, err = resolve(ctx, host)
			if err != nil {
				return nil, fmt.Errorf("target %q: resolving %s: %v", t, host, err)
			}
			if len(addrs) == 0 {
				return nil, fmt.Errorf("target %q: %s resolves to no address", t, host)
			}
		}
		for _, a := range addrs {
			a = a.Unmap().WithZone("")
			if !allowRemote && !a.IsLoopback() && !(network.IsValid() && network.Contains(a)) {
				where := "loopback"
				if network.IsValid() {
					where += " and the profile's network " + network.String()
				}
				return nil, fmt.Errorf("target %q resolves to %s, outside %s: mailbench loads only clusters the profile says are its own; pass --allow-remote if this one is yours", t, a, where)
			}
		}
		// Every address was checked; the first is the one to load.
		out = append(out, netip.AddrPortFrom(addrs[0].Unmap(), mustPort(port)).String())
	}
	return out, nil
}

func mustPort(s string) uint16 {
	p, _ := strconv.Atoi(s)
	return uint16(p)
}
