package keyfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreateLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "cluster.key")
	r, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", st.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Current() != r.Current() || got.Current().ID != 1 {
		t.Fatal("loaded ring differs from the created one")
	}
	if _, err := Create(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Create overwrote or failed oddly: %v", err)
	}
	for _, c := range []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true}, {0o640, true}, {0o400, true}, {0o440, true},
		{0o644, false}, {0o660, false}, {0o604, false}, {0o641, false}, {0o666, false},
	} {
		os.Chmod(path, c.mode)
		_, err := Load(path)
		if c.ok && err != nil {
			t.Errorf("mode %04o refused: %v", c.mode, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "chmod 640")) {
			t.Errorf("mode %04o: want a refusal that says chmod 640, got %v", c.mode, err)
		}
	}
}

func TestParse(t *testing.T) {
	k1, _ := NewKey(1)
	k2, _ := NewKey(7)
	ring := string(Format(&Ring{Keys: []Key{k2, k1}}))
	good, err := Parse([]byte(ring))
	if err != nil {
		t.Fatal(err)
	}
	if good.Current().ID != 7 {
		t.Errorf("current key id = %d, want the first line's 7", good.Current().ID)
	}
	if k, ok := good.Lookup(1); !ok || k != k1 {
		t.Error("older key not found for opening")
	}
	if _, ok := good.Lookup(2); ok {
		t.Error("found a key that is not in the ring")
	}
	tests := []struct{ name, in, want string }{
		{"empty", "", "no keys"},
		{"comment only", "# nothing\n", "no keys"},
		{"bad word", "clave 1 AAAA\n", "expected `key"},
		{"id zero", "key 0 " + strings.Repeat("A", 44) + "\n", "1 to 255"},
		{"id too big", "key 256 x\n", "1 to 255"},
		{"short secret", "key 1 AAAA\n", "32 bytes"},
		{"bad base64", "key 1 !!!!\n", "32 bytes"},
		{"duplicate", ring + ring, "appears twice"},
	}
	for _, tt := range tests {
		if _, err := Parse([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	k, _ := NewKey(3)
	f.Add(Format(&Ring{Keys: []Key{k}}))
	f.Add([]byte("key 1 x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		again, err := Parse(Format(r))
		if err != nil || len(again.Keys) != len(r.Keys) || again.Current() != r.Current() {
			t.Fatalf("format/parse round trip changed the ring: %v", err)
		}
	})
}
