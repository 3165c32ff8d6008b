package hostplan

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"correo/internal/testutil"
)

// renderAll writes every host of a profile under root/<host> and returns
// the unit files, one per unit name (hosts of one role render the same
// daemon the same way but for names and addresses).
func renderAll(t *testing.T, profile, root string) map[string]string {
	t.Helper()
	p := load(t, profile)
	files := map[string]string{}
	for _, h := range p.Hosts {
		pl, err := Build(p, h.Name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, h.Name)
		if err := pl.Write(dir); err != nil {
			t.Fatal(err)
		}
		for _, u := range pl.Units {
			files[u.Name] = filepath.Join(dir, "etc/systemd/system", u.Name)
		}
	}
	return files
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`)

// exposure is systemd-analyze's score of one unit file, without running it.
func exposure(t *testing.T, file string) (float64, string) {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", file).CombinedOutput()
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security %s: %v\n%s", file, err, out)
	}
	f, _ := strconv.ParseFloat(string(m[1]), 64)
	return f, string(m[2])
}

// TestSecurityExposure scores every correo service unit with
// systemd-analyze security (target: at most 2.0) next to the Debian units
// of the programs correo replaces or runs beside. `make unit-security`
// prints the table (README, "Hardening").
func TestSecurityExposure(t *testing.T) {
	testutil.NeedCommand(t, "systemd-analyze")
	files := renderAll(t, "example.toml", t.TempDir())
	var names []string
	for n := range files {
		if strings.HasSuffix(n, ".service") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %8s\n", "unit", "exposure")
	for _, n := range names {
		score, level := exposure(t, files[n])
		fmt.Fprintf(&table, "%-28s %8.1f %s\n", n, score, level)
		if score > 2.0 {
			t.Errorf("%s: exposure %.1f %s, want at most 2.0", n, score, level)
		}
	}
	for _, n := range []string{"postfix@.service", "dovecot.service", "nsd.service", "rsyslog.service"} {
		f := filepath.Join("/lib/systemd/system", n)
		if _, err := os.Stat(f); err != nil {
			continue
		}
		score, level := exposure(t, f)
		fmt.Fprintf(&table, "%-28s %8.1f %s (Debian)\n", n, score, level)
	}
	t.Logf("systemd-analyze security --offline=true:\n%s", table.String())
}

// TestUnitsVerify has systemd-analyze verify every unit of every host of
// the example cluster (dev.toml is for one machine's loopback, not for
// systemd hosts: its NSS socket lives in the checkout). verify insists that ExecStart's program exists, so the
// test puts stand-ins at the daemons' paths in a private mount namespace
// (a tmpfs over /usr/libexec that only it sees).
func TestUnitsVerify(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedCommand(t, "systemd-analyze")
	testutil.NeedCommand(t, "unshare")
	for _, profile := range []string{"example.toml"} {
		files := renderAll(t, profile, t.TempDir())
		var args []string
		for _, f := range files {
			args = append(args, f)
		}
		sort.Strings(args)
		var stand []string
		for _, d := range Data.Daemons {
			p := filepath.Join(Data.BinDir, d.Program)
			stand = append(stand, fmt.Sprintf("printf '#!/bin/sh\\n' > %s && chmod 755 %s", p, p))
		}
		script := "mount -t tmpfs tmpfs " + filepath.Dir(Data.BinDir) + " && mkdir -p " + Data.BinDir + " && " +
			strings.Join(stand, " && ") + ` && exec systemd-analyze verify "$@"`
		cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "verify"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s: systemd-analyze verify: %v\n%s", profile, err, out)
		}
	}
}
