// Package testutil holds small helpers shared by tests across correo.
package testutil

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

// StrictEnv, when set (the project's test command sets it), turns a missing
// external program into a test failure instead of a skip, so CI can never
// pass by silently skipping the checks that need real peers.
const StrictEnv = "CORREO_STRICT"

// NeedCommand returns the path of an external program a test relies on
// (rsyslogd, named-checkzone, swaks, ...). Outside the test command a missing
// program skips the test; under CORREO_STRICT it fails it.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, err2 := exec.LookPath(dir + "/" + name); err2 == nil {
			return p
		}
	}
	if os.Getenv(StrictEnv) != "" {
		t.Fatalf("%s is required by this test but not installed: run the project's test command (make test), which installs it", name)
	}
	t.Skipf("%s not installed; `make test` installs it and runs this test", name)
	return ""
}

// NeedRoot skips (or, under CORREO_STRICT, fails) a test that needs root,
// such as one creating network or mount namespaces.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(StrictEnv) != "" {
		t.Fatalf("this test needs root (namespaces); run the test command as root")
	}
	t.Skip("needs root")
}

// DirNames lists the names in dir, in order. A directory that does not
// exist is empty (a Maildir or queue directory is made on first use);
// any other error fails the test.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
