package clustertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// BinEnv names a directory of programs already built, as `make build`
// leaves them in bin/. Build and BuildAll take a plain (non-race) program
// from there instead of compiling it; race builds are always compiled,
// since bin/ holds none. The directory is trusted as is: point it at a
// bin/ built from the tree under test, or leave it unset.
const BinEnv = "CORREO_BIN"

var (
	// buildMu serialises builds: two `go build`s at once only compete for
	// the same cores, and a test waiting for a binary would wait either way.
	buildMu sync.Mutex
	built   = map[string]string{} // "name/race" → path
	allDirs = map[bool]string{}   // race → directory holding every program
	binDir  string
	// mainRan says the package's TestMain went through Main, which removes
	// binDir when the tests end.
	mainRan atomic.Bool
)

// Main runs a package's tests and removes the binaries Build made. Every
// package whose tests build programs (Build, BuildAll, StartDaemon, ...)
// calls it from TestMain, since a test's Cleanup cannot remove a cache
// shared by all the package's tests:
//
//	func TestMain(m *testing.M) { clustertest.Main(m) }
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to do after the tests: it
// returns the exit code instead of exiting.
func Run(m *testing.M) int {
	mainRan.Store(true)
	code := m.Run()
	buildMu.Lock()
	defer buildMu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
		binDir = ""
		clear(built)
		clear(allDirs)
	}
	return code
}

// cacheDir is the process's build directory, made on first use. Called
// with buildMu held.
func cacheDir(t testing.TB) string {
	t.Helper()
	if !mainRan.Load() {
		t.Fatal("clustertest.Build needs the package's TestMain to call clustertest.Main(m) (or Run), which removes the built programs at exit")
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "correo-bin-")
		if err != nil {
			t.Fatalf("making the build directory: %v", err)
		}
		// Traversable by everyone: an MTA runs pdelivery as the recipient.
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		binDir = d
	}
	return binDir
}

func flavour(race bool) string {
	if race {
		return "race"
	}
	return "plain"
}

// prebuilt is the program from BinEnv's directory, or "".
func prebuilt(name string) string {
	dir := os.Getenv(BinEnv)
	if dir == "" {
		return ""
	}
	p := filepath.Join(dir, name)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}

// goBuild runs `go build [-race] -o out pkgs`. A race build needs cgo;
// where it fails the program is built plain, so a machine without a C
// compiler still runs the tests (without the race detector in the
// daemons).
func goBuild(t testing.TB, out string, race bool, pkgs ...string) {
	t.Helper()
	plain := append([]string{"build", "-o", out}, pkgs...)
	if !race {
		if b, err := exec.Command("go", plain...).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, b)
		}
		return
	}
	raceArgs := append([]string{"build", "-race", "-o", out}, pkgs...)
	b, err := exec.Command("go", raceArgs...).CombinedOutput()
	if err == nil {
		return
	}
	if b2, err2 := exec.Command("go", plain...).CombinedOutput(); err2 != nil {
		t.Fatalf("go build %s: %v\n%s\nwith -race: %s", strings.Join(pkgs, " "), err2, b2, b)
	}
	t.Logf("go build -race %s failed (cgo missing?); running a plain build:\n%s", strings.Join(pkgs, " "), b)
}

// Build returns the path of correo/src/cmd/<name>, compiled at most once
// per test process; with race set (tests) under the race detector,
// without it (benchmarks, namespaces clusters) as shipped. A plain build
// comes from BinEnv's directory when that holds the program.
func Build(t testing.TB, name string, race bool) string {
	t.Helper()
	if !race {
		if p := prebuilt(name); p != "" {
			return p
		}
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	key := name + "/" + flavour(race)
	if p, ok := built[key]; ok {
		return p
	}
	dir := filepath.Join(cacheDir(t), flavour(race))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	goBuild(t, out, race, "correo/src/cmd/"+name)
	built[key] = out
	return out
}

// BuildAll returns a directory holding every program under src/cmd (what
// the cluster runner's BinDir wants), compiled at most once per test
// process, or BinEnv's directory when that holds them all (plain only).
func BuildAll(t testing.TB, race bool) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if d, ok := allDirs[race]; ok {
		return d
	}
	names := programs(t)
	if !race && os.Getenv(BinEnv) != "" {
		complete := true
		for _, n := range names {
			complete = complete && prebuilt(n) != ""
		}
		if complete {
			d, _ := filepath.Abs(os.Getenv(BinEnv))
			allDirs[race] = d
			return d
		}
	}
	dir := filepath.Join(cacheDir(t), "all-"+flavour(race))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	goBuild(t, dir+"/", race, "correo/src/cmd/...")
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("go build correo/src/cmd/... left no %s: %v", n, err)
		}
		if _, ok := built[n+"/"+flavour(race)]; !ok {
			built[n+"/"+flavour(race)] = p
		}
	}
	allDirs[race] = dir
	return dir
}

// programs lists the commands under src/cmd.
func programs(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", "correo/src/cmd/...").Output()
	if err != nil {
		t.Fatalf("go list correo/src/cmd/...: %v", err)
	}
	var names []string
	for _, p := range strings.Fields(string(out)) {
		names = append(names, filepath.Base(p))
	}
	if len(names) == 0 {
		t.Fatal("go list correo/src/cmd/... found no programs")
	}
	return names
}
