package dedup

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"correo/src/keyfile"
)

// FuzzLoad: any file that starts like a key log opens (nothing panics),
// what is kept is a prefix of whole valid records, and a second open
// finds nothing more to cut.
func FuzzLoad(f *testing.F) {
	valid := []byte(magic)
	valid = appendRecord(valid, key(1), time.Now().Unix(), false)
	valid = appendRecord(valid, key(1), time.Now().Unix(), true)
	valid = appendRecord(valid, key(2), time.Now().Unix(), true)
	f.Add(valid)
	f.Add(valid[:len(valid)-5])
	f.Add([]byte(magic[:4]))
	f.Add([]byte("not a log"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "keys")
		os.WriteFile(p, data, 0o640)
		s, info, err := Open(p)
		if err != nil {
			return // refused as foreign: fine, as long as it did not panic
		}
		s.Close()
		fi, _ := os.Stat(p)
		if (fi.Size()-int64(len(magic)))%recordLen != 0 {
			t.Fatalf("kept %d bytes: not whole records", fi.Size())
		}
		if info.Keys > int(fi.Size())/recordLen {
			t.Fatalf("%d keys from %d bytes", info.Keys, fi.Size())
		}
		s, info2, err := Open(p)
		if err != nil || info2.Truncated != 0 {
			t.Fatalf("second open: %+v %v", info2, err)
		}
		s.Close()
	})
}

// FuzzParseLine: no input panics, and what is accepted is a key that can
// be sent.
func FuzzParseLine(f *testing.F) {
	ring := &keyfile.Ring{Keys: []keyfile.Key{{ID: 1, Secret: [32]byte{7}}}}
	good := Line(ring, "0190f2c3a4b5c0000012.abcdefghijklmnop")
	f.Add(good[:len(good)-2])
	f.Add(Header + ": k 1:zz")
	f.Add("X-Correo-Delivery-Key:")
	f.Fuzz(func(t *testing.T, line string) {
		k, ok, isHeader := ParseLine(ring, line)
		if ok && (!isHeader || !ValidKey(k)) {
			t.Fatalf("accepted %q with key %q", line, k)
		}
	})
}
