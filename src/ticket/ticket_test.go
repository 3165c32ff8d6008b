package ticket

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"correo/src/keyfile"
)

func ring(t *testing.T, ids ...uint8) *keyfile.Ring {
	r := &keyfile.Ring{}
	for _, id := range ids {
		k, err := keyfile.NewKey(id)
		if err != nil {
			t.Fatal(err)
		}
		r.Keys = append(r.Keys, k)
	}
	return r
}

func TestSealOpen(t *testing.T) {
	r := ring(t, 1)
	s, _ := New(r)
	client := netip.MustParseAddrPort("192.0.2.7:41234")
	now := time.Now()
	b, err := s.Seal("juan", client, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxSize {
		t.Fatalf("ticket of %d bytes exceeds MaxSize %d", len(b), MaxSize)
	}
	// The pop3d side holds its own Sealer over the same key.
	o, _ := New(r)
	tk, err := o.Open(b, now.Add(time.Second))
	if err != nil || tk.User != "juan" || tk.Client != client {
		t.Fatalf("open: %+v, %v", tk, err)
	}
	if _, err := o.Open(b, now.Add(2*time.Second)); !errors.Is(err, ErrReplay) {
		t.Fatalf("second use: %v", err)
	}
	b2, _ := s.Seal("juan", client, now)
	if _, err := o.Open(b2, now.Add(Lifetime+time.Millisecond)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	other, _ := New(ring(t, 1))
	b3, _ := s.Seal("juan", client, now)
	if _, err := other.Open(b3, now); !errors.Is(err, ErrForged) {
		t.Fatalf("another cluster's key: %v", err)
	}
	for i := range b3 {
		bad := append([]byte(nil), b3...)
		bad[i] ^= 0x40
		if _, err := o.Open(bad, now); !errors.Is(err, ErrForged) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	for _, n := range []int{0, 1, 12, 29, len(b3) - 1} {
		if _, err := o.Open(b3[:n], now); !errors.Is(err, ErrForged) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, err := s.Seal("", client, now); err == nil {
		t.Fatal("empty user sealed")
	}
}

// A rotation: the proxy has the new key first, pop3d still has both.
func TestRotation(t *testing.T) {
	old := ring(t, 1)
	newKey, _ := keyfile.NewKey(2)
	both := &keyfile.Ring{Keys: []keyfile.Key{old.Keys[0], newKey}}
	proxy, _ := New(&keyfile.Ring{Keys: []keyfile.Key{newKey, old.Keys[0]}})
	pop3d, _ := New(both)
	b, _ := proxy.Seal("ana", netip.MustParseAddrPort("[2001:db8::1]:995"), time.Now())
	if tk, err := pop3d.Open(b, time.Now()); err != nil || tk.User != "ana" {
		t.Fatalf("open across rotation: %+v %v", tk, err)
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := keyfile.NewKey(1)
	r := &keyfile.Ring{Keys: []keyfile.Key{k}}
	s, _ := New(r)
	b, _ := s.Seal("juan", netip.MustParseAddrPort("10.0.0.1:1"), time.Unix(1_800_000_000, 0))
	f.Add(b)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		o, _ := New(r)
		tk, err := o.Open(data, time.Unix(1_800_000_001, 0))
		if err == nil && string(data) != string(b) {
			t.Fatalf("a ticket not sealed by us opened: %+v", tk)
		}
	})
}
