package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
)

func TestLogConfig(t *testing.T) {
	ex, err := cluster.Load("../../hosts/example.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LogConfig(ex, "mx1", "smtpd")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Target != "syslog" || cfg.Network != "udp" || cfg.Address != "10.77.0.2:514" || cfg.Hostname != "mx1" || cfg.AppName != "smtpd" || cfg.Level != slog.LevelInfo {
		t.Errorf("example mx1: %+v", cfg)
	}
	dev, _ := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	cfg, err = LogConfig(dev, "dev", "passwdd")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Target != "stderr" || cfg.Level != slog.LevelDebug {
		t.Errorf("dev: %+v", cfg)
	}
}

// writeProfile writes a test cluster profile of hosts and returns its
// path; a storage host keeps its mail in /m.
func writeProfile(t *testing.T, runAs string, hosts ...clustertest.HostSpec) string {
	t.Helper()
	return clustertest.NewCluster(t, clustertest.Spec{Domains: []string{"t.example"}, LogLevel: "info", RunAs: runAs, Hosts: hosts}).ProfilePath
}

// oneHost is a profile whose only host is passwd primary and storage.
func oneHost(t *testing.T, runAs string) string {
	t.Helper()
	return writeProfile(t, runAs, clustertest.HostSpec{Name: "a", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}, DataDir: "/m"})
}

func TestStart(t *testing.T) {
	one := oneHost(t, "")
	two := writeProfile(t, "",
		clustertest.HostSpec{Name: "a", Address: "127.0.0.1", Roles: []string{"passwd-primary"}},
		clustertest.HostSpec{Name: "b", Address: "127.0.0.2", Roles: []string{"storage"}, DataDir: "/m"})
	tests := []struct {
		name string
		args []string
		role cluster.Role
		host string
		err  string
	}{
		{"only host is the default", []string{"-profile", one}, cluster.RolePasswdPrimary, "a", ""},
		{"two hosts need -host", []string{"-profile", two}, cluster.RoleStorage, "", "say which one this is with -host"},
		{"named host", []string{"-profile", two, "-host", "b"}, cluster.RoleStorage, "b", ""},
		{"wrong role", []string{"-profile", two, "-host", "a"}, cluster.RoleStorage, "", "passwdd serves [storage]"},
		{"unknown host", []string{"-profile", two, "-host", "zz"}, cluster.RoleStorage, "", `no host named "zz"`},
		{"bad flag", []string{"-bogus"}, cluster.RoleStorage, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFlags("passwdd")
			f.FlagSet.SetOutput(&strings.Builder{})
			env, err := f.Start(append(tt.args, "-state", t.TempDir()), tt.role)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if tt.name == "bad flag" {
					var ue *UsageError
					if !errors.As(err, &ue) {
						t.Fatal("bad flag is not a UsageError")
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer env.Close()
			if env.Host.Name != tt.host {
				t.Fatalf("host = %s, want %s", env.Host.Name, tt.host)
			}
		})
	}
}

// TestCPUProfile: CORREO_CPUPROFILE=DIR leaves a profile per daemon and
// host when the daemon closes.
func TestCPUProfile(t *testing.T) {
	one := oneHost(t, "")
	dir := t.TempDir()
	t.Setenv("CORREO_CPUPROFILE", dir)
	f := NewFlags("passwdd")
	env, err := f.Start([]string{"-profile", one, "-state", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	env.Close()
	st, err := os.Stat(filepath.Join(dir, "passwdd-a.pprof"))
	if err != nil || st.Size() == 0 {
		t.Fatalf("profile: %v", err)
	}
}

// dropChild, when set, makes the test binary a daemon that drops root and
// reports who it is: the switch cannot be undone in the test process.
const dropChild = "CORREO_TEST_DROP_PROFILE"

func TestMain(m *testing.M) {
	if p := os.Getenv(activationChild); p != "" {
		activationMain(p)
	}
	if p := os.Getenv(dropChild); p != "" {
		f := NewFlags("passwdd")
		env, err := f.Start([]string{"-profile", p, "-state", os.Getenv("CORREO_TEST_DROP_STATE")})
		if err == nil {
			err = env.DropPrivileges()
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		f2, err := os.Create(filepath.Join(os.Getenv("CORREO_TEST_DROP_STATE"), "written-after-drop"))
		if err == nil {
			f2.Close()
		}
		fmt.Printf("uid=%d gid=%d write=%v\n", os.Getuid(), os.Getgid(), err == nil)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestDropPrivileges(t *testing.T) {
	testutil.NeedRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	p := oneHost(t, "nobody")
	// The key file must stay readable by root only; the state directory is
	// handed over. A world-searchable parent lets nobody reach it.
	parent, err := os.MkdirTemp("", "correo-drop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o755)
	state := filepath.Join(parent, "state")
	cmd := exec.Command(os.Args[0], "-test.run", "XXX")
	cmd.Env = append(os.Environ(), dropChild+"="+p, "CORREO_TEST_DROP_STATE="+state)
	out, err := cmd.CombinedOutput()
	want := fmt.Sprintf("uid=%s gid=%s write=true", nobody.Uid, nobody.Gid)
	if err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("daemon after DropPrivileges: %v\n%q\nwant %q (args %v)", err, out, want, cmd.Args)
	}
	// Without run_as nothing changes (the service manager's choice).
	if err := (&Env{Profile: &cluster.Profile{}}).DropPrivileges(); err != nil {
		t.Fatal(err)
	}
}
