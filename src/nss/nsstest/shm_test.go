package nsstest

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/nssproto"
	"correo/src/nssshm"
)

// sharedOnly is a shared cache file with no nssd behind its socket: the
// module answers from the file or not at all (Unavail), so each case
// shows what the module's reader trusts.
func sharedOnly(t *testing.T) *nssshm.Table {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "nssd.sock") // never listened on
	tab, err := nssshm.Open(nssshm.Path(sock), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	t.Setenv("CORREO_NSS_SOCKET", sock)
	return tab
}

// slotOf finds the name slot holding name, for corrupting it.
func slotOf(t *testing.T, tab *nssshm.Table, name string) int {
	t.Helper()
	mem := tab.Mem()
	for off := nssshm.HeaderSize; off < len(mem)/2; off += nssshm.SlotSize {
		n := binary.NativeEndian.Uint32(mem[off+4:])
		if n == 0 || n > nssshm.MaxRecord {
			continue
		}
		if pw, err := nssproto.DecodePasswd(mem[off+16 : off+16+int(n)]); err == nil && pw.Name == name {
			return off
		}
	}
	t.Fatalf("no slot holds %s", name)
	return 0
}

// TestSharedCacheAnswers: a published user is answered by name and by uid
// from the file alone; the module checks the expiry, the seqlock, the
// length, the record and whom it names, and anything wrong is no answer
// (then nssd would be asked: here there is none, so Unavail).
func TestSharedCacheAnswers(t *testing.T) {
	m := module(t)
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, tab *nssshm.Table)
		want    Status
	}{
		{"published", func(t *testing.T, tab *nssshm.Table) {}, Success},
		{"expired", func(t *testing.T, tab *nssshm.Table) {
			tab.Publish(nssproto.Passwd(juan), time.Nanosecond)
		}, Unavail},
		{"withdrawn", func(t *testing.T, tab *nssshm.Table) { tab.RemoveName("juan") }, Unavail},
		{"being written (odd sequence)", func(t *testing.T, tab *nssshm.Table) {
			off := slotOf(t, tab, "juan")
			binary.NativeEndian.PutUint32(tab.Mem()[off:], 7)
		}, Unavail},
		{"length past the slot", func(t *testing.T, tab *nssshm.Table) {
			off := slotOf(t, tab, "juan")
			binary.NativeEndian.PutUint32(tab.Mem()[off+4:], nssshm.SlotSize)
		}, Unavail},
		{"length cuts the record", func(t *testing.T, tab *nssshm.Table) {
			off := slotOf(t, tab, "juan")
			n := binary.NativeEndian.Uint32(tab.Mem()[off+4:])
			binary.NativeEndian.PutUint32(tab.Mem()[off+4:], n-1)
		}, Unavail},
		{"garbage record", func(t *testing.T, tab *nssshm.Table) {
			off := slotOf(t, tab, "juan")
			copy(tab.Mem()[off+16:], "\x00\x04ju:n\x00\x00")
		}, Unavail},
		{"a field with a colon", func(t *testing.T, tab *nssshm.Table) {
			off := slotOf(t, tab, "juan")
			mem := tab.Mem()[off+16:]
			copy(mem[2:], "ju:n") // the name's bytes, same length
		}, Unavail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := sharedOnly(t)
			tab.Publish(nssproto.Passwd(juan), time.Hour)
			tc.prepare(t, tab)
			pw, st, _ := m.Getpwnam("juan", 1024)
			if st != tc.want {
				t.Fatalf("getpwnam juan: %v %+v, want %v", st, pw, tc.want)
			}
			if st == Success && (pw.Name != "juan" || pw.UID != juan.UID || pw.Gecos != juan.Gecos || pw.Dir != juan.Home || pw.Sh != juan.Shell) {
				t.Fatalf("getpwnam juan from the shared cache: %+v", pw)
			}
		})
	}
	t.Run("by uid", func(t *testing.T) {
		tab := sharedOnly(t)
		tab.Publish(nssproto.Passwd(juan), time.Hour)
		if pw, st, _ := m.Getpwuid(juan.UID, 1024); st != Success || pw.Name != "juan" {
			t.Fatalf("getpwuid %d: %v %+v", juan.UID, st, pw)
		}
		if _, st, _ := m.Getpwuid(juan.UID+1, 1024); st != Unavail {
			t.Fatalf("getpwuid of an unpublished uid: %v", st)
		}
		tab.RemoveUID(juan.UID)
		if _, st, _ := m.Getpwuid(juan.UID, 1024); st != Unavail {
			t.Fatalf("getpwuid after withdrawal: %v", st)
		}
	})
	t.Run("root is never answered", func(t *testing.T) {
		tab := sharedOnly(t)
		tab.Publish(nssproto.Passwd{Name: "toor", UID: 0, GID: 0, Home: "/root", Shell: "/bin/sh"}, time.Hour)
		if _, st, _ := m.Getpwnam("toor", 1024); st != Unavail {
			t.Fatalf("getpwnam of a uid-0 record: %v", st)
		}
	})
	t.Run("a small buffer asks again", func(t *testing.T) {
		tab := sharedOnly(t)
		tab.Publish(nssproto.Passwd(juan), time.Hour)
		if _, st, errno := m.Getpwnam("juan", 8); st != TryAgain || errno != 34 /* ERANGE */ {
			t.Fatalf("getpwnam with 8 bytes: %v errno %d, want TryAgain ERANGE", st, errno)
		}
	})
}

// TestSharedCacheNeverTorn: while nssd rewrites a user's entry as fast as
// it can, alternating two versions, readers in this process never get a
// mix of the two: the seqlock discards every copy a write overlapped.
func TestSharedCacheNeverTorn(t *testing.T) {
	m := module(t)
	tab := sharedOnly(t)
	version := func(v int) nssproto.Passwd {
		s := fmt.Sprint(v)
		return nssproto.Passwd{Name: "juan", UID: 5001, GID: 5000, Gecos: "version " + s,
			Home: "/var/mail/" + s + "/juan", Shell: "/bin/sh" + s}
	}
	tab.Publish(version(1), time.Hour)
	var stop atomic.Bool
	var writes atomic.Int64
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		for v := 0; !stop.Load(); v++ {
			tab.Publish(version(1+v%2), time.Hour)
			writes.Add(1)
		}
	}()
	var hits, misses atomic.Int64
	var readers sync.WaitGroup
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; i < 5000; i++ {
				pw, st, _ := m.Getpwnam("juan", 1024)
				if st != Success {
					misses.Add(1)
					continue
				}
				hits.Add(1)
				v := pw.Gecos[len("version "):]
				if pw.Dir != "/var/mail/"+v+"/juan" || pw.Sh != "/bin/sh"+v {
					t.Errorf("torn entry: %+v", pw)
					return
				}
			}
		}()
	}
	readers.Wait()
	stop.Store(true)
	<-writer
	if hits.Load() == 0 {
		t.Fatalf("no lookup was answered from the shared cache (%d misses, %d writes)", misses.Load(), writes.Load())
	}
	t.Logf("%d answers, %d discarded copies, %d writes", hits.Load(), misses.Load(), writes.Load())
}

// mapFile maps path read-only for the test's life.
func mapFile(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

// TestSharedCacheFromNSSD: nssd publishes what it caches, and a stopped
// nssd takes its answers back.
func TestSharedCacheFromNSSD(t *testing.T) {
	m := module(t)
	a := agent(t, juan)
	if _, st, _ := m.Getpwnam("juan", 1024); st != Success {
		t.Fatalf("first getpwnam: %v", st)
	}
	mem := mapFile(t, nssshm.Path(a.Socket))
	if pw, ok := nssshm.Lookup(mem, "juan", 0); !ok || pw.UID != juan.UID {
		t.Fatalf("nssd did not publish juan: %+v %v", pw, ok)
	}
	if pw, ok := nssshm.Lookup(mem, "", juan.UID); !ok || pw.Name != "juan" {
		t.Fatalf("nssd did not publish uid %d: %+v %v", juan.UID, pw, ok)
	}
	a.Stop()
	if _, ok := nssshm.Lookup(mem, "juan", 0); ok {
		t.Fatal("a stopped nssd left juan in the shared cache")
	}
	if _, st, _ := m.Getpwnam("juan", 1024); st != Unavail {
		t.Fatalf("getpwnam with nssd stopped: %v, want Unavail", st)
	}
}
