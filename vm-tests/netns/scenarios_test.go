package netns

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"correo/src/nss/nsstest"
	"correo/vm-tests/scenario"
)

// The scenarios themselves, and what each checks, are in
// vm-tests/scenario. Those of scenario.Shared run here one after the other
// on the shared cluster.

func TestExampleClusterBoots(t *testing.T) {
	scenario.ExampleClusterBoots(t, sharedCluster(t))
}

func TestNSSOnStorageHost(t *testing.T) {
	// The hosts' commands need the module (built here with make and gcc
	// unless CORREO_NSS_LIB names one).
	nsstest.NeedLib(t)
	c := sharedCluster(t)
	if c.nss == "" {
		t.Fatal("the cluster's hosts have no NSS module")
	}
	scenario.NSSOnStorageHost(t, c)
}

func TestRelaySubmission(t *testing.T) {
	scenario.RelaySubmission(t, sharedCluster(t))
}

func TestPasswdFailover(t *testing.T) {
	scenario.PasswdFailover(t, sharedCluster(t))
}

func TestStorageHostDown(t *testing.T) {
	scenario.StorageHostDown(t, sharedCluster(t))
}

func TestInternetMailToPOP(t *testing.T) {
	scenario.InternetMailToPOP(t, sharedCluster(t))
}

func TestIMAPThroughProxy(t *testing.T) {
	scenario.IMAPThroughProxy(t, sharedCluster(t))
}

func TestClientAutoconfig(t *testing.T) {
	scenario.ClientAutoconfig(t, sharedCluster(t))
}

func TestMailboxMove(t *testing.T) {
	scenario.MailboxMove(t, sharedCluster(t))
}

func TestMailboxMoveCrashes(t *testing.T) {
	scenario.MailboxMoveCrashes(t, sharedCluster(t))
}

// TestGrowthWithoutMigration boots a cluster of its own: growing stops it
// and boots the grown profile on the same state, as an operator would
// after adding store4.
func TestGrowthWithoutMigration(t *testing.T) {
	c := bootOwn(t)
	scenario.GrowthWithoutMigration(t, c, func(t *testing.T, hostTOML string) scenario.Cluster {
		state := c.r.StateDir
		c.r.Down()
		src, err := os.ReadFile(example)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "grown.toml")
		if err := os.WriteFile(path, append(src, hostTOML...), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := scenario.LoadProfile(path)
		if err != nil {
			t.Fatalf("the grown profile: %v", err)
		}
		return bootOwnProfile(t, p, state)
	})
}

// TestTeardownLeavesNothing boots and stops a cluster, then checks no
// namespace or link of the run remains. It checks the runner, not the
// cluster, so it is no scenario.
func TestTeardownLeavesNothing(t *testing.T) {
	c := bootOwn(t)
	c.r.Down()
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), ownPrefix+"-") {
		t.Fatalf("namespaces left after Down:\n%s", out)
	}
	if err := exec.Command("ip", "link", "show", ownPrefix+"br").Run(); err == nil {
		t.Fatal("bridge left after Down")
	}
}
