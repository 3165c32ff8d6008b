package rootfs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestKeyFollowsTheRecipe(t *testing.T) {
	base := key("bookworm", "minbase", []string{"systemd", "nsd"}, "hook")
	for _, tc := range []struct {
		name     string
		suite    string
		variant  string
		packages []string
		hook     string
		same     bool
	}{
		{"same recipe", "bookworm", "minbase", []string{"systemd", "nsd"}, "hook", true},
		{"packages in another order", "bookworm", "minbase", []string{"nsd", "systemd"}, "hook", true},
		{"a package more", "bookworm", "minbase", []string{"systemd", "nsd", "rsyslog"}, "hook", false},
		{"a package less", "bookworm", "minbase", []string{"systemd"}, "hook", false},
		{"another hook", "bookworm", "minbase", []string{"systemd", "nsd"}, "hook2", false},
		{"another suite", "trixie", "minbase", []string{"systemd", "nsd"}, "hook", false},
		{"another variant", "bookworm", "apt", []string{"systemd", "nsd"}, "hook", false},
		// Fields are length-prefixed: moving text from one to the next
		// is a different recipe.
		{"text moved between fields", "bookworm", "minbase", []string{"systemd", "nsdh"}, "ook", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := key(tc.suite, tc.variant, tc.packages, tc.hook)
			if (got == base) != tc.same {
				t.Errorf("key = %s, base %s: same = %v, want %v", got, base, got == base, tc.same)
			}
			if !strings.HasPrefix(got, tc.suite+"-") {
				t.Errorf("key %s does not start with the suite %s", got, tc.suite)
			}
		})
	}
	// The caller's slice is not reordered.
	pk := []string{"b", "a"}
	key("bookworm", "minbase", pk, "")
	if !slices.Equal(pk, []string{"b", "a"}) {
		t.Errorf("key sorted its argument: %v", pk)
	}
}

func TestAptSource(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // "" → error
	}{
		{"deb822 (Debian 12)", map[string]string{"sources.list.d/debian.sources": "Types: deb\n"}, "sources.list.d/debian.sources"},
		{"one-line list", map[string]string{"sources.list": "deb http://deb.debian.org/debian bookworm main\n"}, "sources.list"},
		{"both: deb822 first", map[string]string{"sources.list.d/debian.sources": "Types: deb\n", "sources.list": "deb x\n"}, "sources.list.d/debian.sources"},
		{"empty deb822 falls back", map[string]string{"sources.list.d/debian.sources": "", "sources.list": "deb x\n"}, "sources.list"},
		{"none", map[string]string{}, ""},
		{"only empty files", map[string]string{"sources.list": ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := aptSource(dir)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "Options.Sources") {
					t.Fatalf("aptSource = %q, %v; want an error saying what to set", got, err)
				}
				return
			}
			if err != nil || got != filepath.Join(dir, tc.want) {
				t.Fatalf("aptSource = %q, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestMmdebstrapArgs(t *testing.T) {
	args := mmdebstrapArgs("/cache/x", "/etc/apt/sources.list.d/debian.sources")
	n := len(args)
	if n < 3 || args[n-3] != Suite || args[n-2] != "/cache/x" || args[n-1] != "/etc/apt/sources.list.d/debian.sources" {
		t.Fatalf("mmdebstrap's positional arguments must be SUITE TARGET MIRROR, last: %q", args)
	}
	want := map[string]bool{
		"--mode=root":                              true,
		"--variant=" + Variant:                     true,
		"--include=" + strings.Join(Packages, ","): true,
		"--customize-hook=" + CustomizeHook:        true,
	}
	for _, a := range args {
		delete(want, a)
	}
	if len(want) > 0 {
		t.Errorf("missing arguments %v in %q", want, args)
	}
	for _, p := range []string{"systemd", "systemd-sysv", "dbus", "iproute2", "nsd", "rsyslog", "linux-image-amd64", "initramfs-tools"} {
		if !slices.Contains(Packages, p) {
			t.Errorf("Packages lacks %s", p)
		}
	}
}

// fakeBuild stands for mmdebstrap: it fills dir after a pause, counts its
// runs, and fails when told to.
type fakeBuild struct {
	runs atomic.Int32
	fail bool
}

func (f *fakeBuild) build(ctx context.Context, dir, sources string, log io.Writer) error {
	f.runs.Add(1)
	if err := os.WriteFile(filepath.Join(dir, "half"), nil, 0o644); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	if f.fail {
		return errors.New("mirror unreachable")
	}
	return os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644)
}

func withFakeBuild(t *testing.T, f *fakeBuild) Options {
	t.Helper()
	old := runBuild
	runBuild = f.build
	t.Cleanup(func() { runBuild = old })
	return Options{CacheDir: t.TempDir(), Sources: "/nonexistent/debian.sources"}
}

func TestEnsureBuildsOnceForConcurrentCallers(t *testing.T) {
	fb := &fakeBuild{}
	opts := withFakeBuild(t, fb)
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	errs := make([]error, 4)
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = Ensure(context.Background(), opts) })
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if dirs[i] != filepath.Join(opts.CacheDir, Key()) {
			t.Errorf("caller %d got %s", i, dirs[i])
		}
	}
	if n := fb.runs.Load(); n != 1 {
		t.Errorf("%d builds for one recipe, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(dirs[0], "complete")); err != nil {
		t.Errorf("the cached tree is not the finished build: %v", err)
	}
	// Warm: no build at all.
	if _, err := Ensure(context.Background(), opts); err != nil || fb.runs.Load() != 1 {
		t.Errorf("warm Ensure: %v, %d builds", err, fb.runs.Load())
	}
	if d, ok := Cached(opts); !ok || d != dirs[0] {
		t.Errorf("Cached = %s, %v", d, ok)
	}
}

func TestEnsureNeverCachesAFailedOrCrashedBuild(t *testing.T) {
	fb := &fakeBuild{fail: true}
	opts := withFakeBuild(t, fb)
	// What a killed build leaves: a half tree beside the cache entry.
	crashed := filepath.Join(opts.CacheDir, "."+Key()+".build-123")
	if err := os.MkdirAll(filepath.Join(crashed, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "mirror unreachable") {
		t.Fatalf("Ensure with a failing build = %v", err)
	}
	if _, ok := Cached(opts); ok {
		t.Fatal("a failed build was cached")
	}
	left, _ := filepath.Glob(filepath.Join(opts.CacheDir, ".*.build-*"))
	if len(left) != 0 {
		t.Errorf("build directories left behind: %v", left)
	}
	fb.fail = false
	if _, err := Ensure(context.Background(), opts); err != nil {
		t.Fatalf("Ensure after the failure: %v", err)
	}
}

func TestEnsureWaitsForTheLockWithinItsContext(t *testing.T) {
	fb := &fakeBuild{}
	opts := withFakeBuild(t, fb)
	unlock, err := lock(context.Background(), filepath.Join(opts.CacheDir, Key()+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err = Ensure(ctx, opts)
	if err == nil || !strings.Contains(err.Error(), "another build") {
		t.Fatalf("Ensure while another holds the lock = %v; want a timeout naming the lock", err)
	}
	if fb.runs.Load() != 0 {
		t.Error("built without the lock")
	}
}
