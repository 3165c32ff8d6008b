package nssshm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"correo/src/nssproto"
)

func user(name string, uid uint32) nssproto.Passwd {
	return nssproto.Passwd{Name: name, UID: uid, GID: 5000, Home: "/var/mail/" + name, Shell: "/usr/sbin/nologin"}
}

func TestBucketsFor(t *testing.T) {
	for _, tc := range []struct{ entries, want int }{
		{0, 1}, {8, 1}, {16, 2}, {100000, 8192}, {1 << 30, MaxBuckets},
	} {
		if got := BucketsFor(tc.entries); got != tc.want {
			t.Errorf("BucketsFor(%d) = %d, want %d", tc.entries, got, tc.want)
		}
	}
}

func TestOpenRefusesBadSizes(t *testing.T) {
	for _, b := range []int{0, 3, MaxBuckets * 2} {
		if _, err := Open(filepath.Join(t.TempDir(), FileName), b); err == nil {
			t.Errorf("Open with %d buckets worked", b)
		}
	}
}

func TestPublishLookupRemove(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	tab, err := Open(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 || fi.Size() != int64(Size(4)) {
		t.Fatalf("file %v %d bytes", fi.Mode(), fi.Size())
	}
	// More users than a bucket's ways: every user lands somewhere, the
	// latest ones are always found.
	for i := range 40 {
		tab.Publish(user("u"+string(rune('a'+i%26))+string(rune('a'+i/26)), uint32(6000+i)), time.Hour)
	}
	last := user("u"+string(rune('a'+39%26))+string(rune('a'+39/26)), 6039)
	if pw, ok := Lookup(tab.Mem(), last.Name, 0); !ok || pw != last {
		t.Fatalf("lookup by name: %+v %v", pw, ok)
	}
	if pw, ok := Lookup(tab.Mem(), "", last.UID); !ok || pw != last {
		t.Fatalf("lookup by uid: %+v %v", pw, ok)
	}
	// Republishing replaces in place.
	changed := last
	changed.Gecos = "changed"
	tab.Publish(changed, time.Hour)
	if pw, _ := Lookup(tab.Mem(), last.Name, 0); pw.Gecos != "changed" {
		t.Fatalf("republished entry: %+v", pw)
	}
	tab.RemoveName(last.Name)
	if _, ok := Lookup(tab.Mem(), last.Name, 0); ok {
		t.Fatal("removed name still found")
	}
	tab.RemoveUID(last.UID)
	if _, ok := Lookup(tab.Mem(), "", last.UID); ok {
		t.Fatal("removed uid still found")
	}
	// Too long for a slot: not published, and an older entry goes.
	long := user("longhome", 7000)
	tab.Publish(long, time.Hour)
	long.Home = "/" + strings.Repeat("x", MaxRecord)
	tab.Publish(long, time.Hour)
	if _, ok := Lookup(tab.Mem(), "longhome", 0); ok {
		t.Fatal("a record longer than a slot is found")
	}
	if _, ok := Lookup(tab.Mem(), "", 7000); ok {
		t.Fatal("the older entry of a now too long record is still found by uid")
	}
	// Expired entries are not answers.
	tab.Publish(user("brief", 7001), time.Nanosecond)
	time.Sleep(time.Millisecond)
	if _, ok := Lookup(tab.Mem(), "brief", 0); ok {
		t.Fatal("expired entry found")
	}
}

// TestReopen: a restarted nssd reuses its file (readers' mappings stay
// live) and starts it empty; a foreign or damaged file is replaced.
func TestReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	tab, err := Open(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	tab.Publish(user("juan", 5001), time.Hour)
	st1, _ := os.Stat(p)
	tab.mu.Lock() // a crash: no Close
	tab.closed = true
	tab.mu.Unlock()

	tab2, err := Open(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(p)
	if !os.SameFile(st1, st2) {
		t.Error("the file was replaced, not reused")
	}
	if _, ok := Lookup(tab2.Mem(), "juan", 0); ok {
		t.Error("entries of the previous nssd survive a restart")
	}
	tab2.Close()

	for name, damage := range map[string]func(){
		"other size":      func() { os.Truncate(p, int64(Size(4))+1) },
		"writable by all": func() { os.Chmod(p, 0o666) },
		"not our magic":   func() { f, _ := os.OpenFile(p, os.O_WRONLY, 0); f.WriteAt([]byte("something"), 0); f.Close() },
		"a symlink there": func() { os.Remove(p); os.Symlink("/etc/passwd", p) },
		"a directory":     func() { os.Remove(p); os.Mkdir(p, 0o755) },
	} {
		if name == "a directory" {
			continue // rename cannot replace a directory: Open fails, checked below
		}
		t.Run(name, func(t *testing.T) {
			damage()
			tab, err := Open(p, 4)
			if err != nil {
				t.Fatal(err)
			}
			defer tab.Close()
			fi, err := os.Lstat(p)
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 || fi.Size() != int64(Size(4)) {
				t.Fatalf("after Open: %v %v", fi, err)
			}
			tab.Publish(user("juan", 5001), time.Hour)
			if _, ok := Lookup(tab.Mem(), "juan", 0); !ok {
				t.Fatal("lookup after replacing")
			}
		})
	}
	os.Remove(p)
	os.Mkdir(p, 0o755)
	if _, err := Open(p, 4); err == nil {
		t.Error("Open over a directory worked")
	}
}

func TestCloseEmpties(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	tab, err := Open(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	tab.Publish(user("juan", 5001), time.Hour)
	mem, _ := os.ReadFile(p)
	if _, ok := Lookup(mem, "juan", 0); !ok {
		t.Fatal("not published")
	}
	tab.Close()
	tab.Publish(user("ana", 5002), time.Hour) // after Close: ignored
	mem, _ = os.ReadFile(p)
	if _, ok := Lookup(mem, "juan", 0); ok {
		t.Fatal("Close left juan readable")
	}
}

// FuzzLookup: whatever the file holds, Lookup does not panic, and what it
// answers is a record that names what was asked.
func FuzzLookup(f *testing.F) {
	p := filepath.Join(f.TempDir(), FileName)
	tab, err := Open(p, 1)
	if err != nil {
		f.Fatal(err)
	}
	tab.Publish(user("juan", 5001), time.Hour)
	good := append([]byte(nil), tab.Mem()...)
	tab.Close()
	f.Add(good, "juan", uint32(0))
	f.Add(good, "", uint32(5001))
	f.Add(good[:HeaderSize], "juan", uint32(0))
	f.Fuzz(func(t *testing.T, mem []byte, name string, uid uint32) {
		pw, ok := Lookup(mem, name, uid)
		if ok && ((name != "" && pw.Name != name) || (name == "" && pw.UID != uid) || pw.Check() != nil) {
			t.Fatalf("answered %+v for %q/%d", pw, name, uid)
		}
	})
}
