package mailbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	if n, err := Usage(root); err != nil || n != 0 {
		t.Fatalf("a Maildir not created yet: %d, %v", n, err)
	}
	deliver := func(dir string, size int) {
		t.Helper()
		if _, err := New(dir).Deliver(strings.NewReader(strings.Repeat("x", size))); err != nil {
			t.Fatal(err)
		}
	}
	deliver(root, 1000)
	deliver(filepath.Join(root, ".Sent"), 200)
	deliver(filepath.Join(root, ".Archive.2026"), 30)
	// Not counted: tmp/, a dot-directory that is no folder, a folder
	// reached through a symbolic link (another user's mail).
	os.WriteFile(filepath.Join(root, "tmp", "half"), make([]byte, 5000), 0o600)
	os.MkdirAll(filepath.Join(root, ".notafolder"), 0o700)
	other := filepath.Join(t.TempDir(), "other")
	deliver(other, 7000)
	if err := os.Symlink(other, filepath.Join(root, ".Stolen")); err != nil {
		t.Fatal(err)
	}
	n, err := Usage(root)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1230 {
		t.Errorf("usage %d, want 1230 (INBOX 1000 + Sent 200 + Archive.2026 30)", n)
	}
}

func TestKeyTimeOrdersWithinASecond(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want int64
	}{
		{"1796304596.M99999P12Q9R00.host", 1796304596*1e6 + 99999},
		{"1796304596.M123456P12Q10R00.host", 1796304596*1e6 + 123456},
		{"1796304596.P12.host", 1796304596 * 1e6},
		{"1796304596.M1234567P1.host", 1796304596 * 1e6}, // not microseconds
		{"nodots", 0},
		{"-5.M1.x", 0},
	} {
		if got := KeyTime(tc.key); got != tc.want {
			t.Errorf("KeyTime(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
	if KeyTime("1796304596.M99999P1.h") >= KeyTime("1796304596.M123456P1.h") {
		t.Error("M99999 does not come before M123456")
	}
}
