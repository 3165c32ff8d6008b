package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Source: netip.MustParseAddrPort("192.0.2.9:1100"), Dest: netip.MustParseAddrPort("10.0.0.2:110"), UniqueID: "t1", Ticket: []byte{1, 2, 3, 0xff}},
		{Source: netip.MustParseAddrPort("192.0.2.7:51234"), Dest: netip.MustParseAddrPort("10.77.0.5:110")},
		{Source: netip.MustParseAddrPort("[2001:db8::1]:40000"), Dest: netip.MustParseAddrPort("[2001:db8::2]:995"), TLS: true, UniqueID: "abcdefghijklmnop"},
		{Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"), Dest: netip.MustParseAddrPort("10.0.0.1:2"), UniqueID: strings.Repeat("x", 128)},
		{Local: true},
	} {
		b, err := h.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, n, err := Decode(append(b, "USER x\r\n"...))
		if err != nil || n != len(b) {
			t.Fatalf("%+v: decode: %v (n %d of %d)", h, err, n, len(b))
		}
		want := h
		want.Source = netip.AddrPortFrom(h.Source.Addr().Unmap(), h.Source.Port())
		if h.Local {
			want = Header{Local: true}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded %+v, want %+v", got, want)
		}
		br := bufio.NewReader(bytes.NewReader(append(b, "CAPA\r\n"...)))
		if ok, err := HasSignature(br); !ok || err != nil {
			t.Fatalf("HasSignature: %v %v", ok, err)
		}
		got2, err := Read(br)
		if err != nil || !reflect.DeepEqual(got2, got) {
			t.Fatalf("Read: %+v %v", got2, err)
		}
		rest, _ := br.ReadString('\n')
		if rest != "CAPA\r\n" {
			t.Fatalf("Read consumed too much: left %q", rest)
		}
	}
}

func TestEncodeMixedFamiliesAsIPv6(t *testing.T) {
	h := Header{Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"), Dest: netip.MustParseAddrPort("[2001:db8::1]:2")}
	b, err := h.Encode()
	if err != nil || b[13] != famTCP6 {
		t.Fatalf("%v %x", err, b)
	}
	if got, _, err := Decode(b); err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := (Header{}).Encode(); err == nil {
		t.Fatal("a header without addresses encoded as PROXY")
	}
}

// HasSignature must decide at the first differing byte: a POP3 client
// sends a short line and waits, so needing twelve bytes would hang it.
func TestHasSignatureDecidesEarly(t *testing.T) {
	for _, in := range []string{"CAPA\r\n", "\r\nX", "Q"} {
		ok, err := HasSignature(bufio.NewReader(strings.NewReader(in)))
		if ok || err != nil {
			t.Errorf("%q: %v %v", in, ok, err)
		}
	}
}

func TestMalformed(t *testing.T) {
	good, _ := Header{Source: netip.MustParseAddrPort("192.0.2.7:1"), Dest: netip.MustParseAddrPort("192.0.2.8:2")}.Encode()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"short":          good[:10],
		"truncated":      good[:len(good)-1],
		"version 1":      mut(func(b []byte) []byte { b[12] = 0x11; return b }),
		"bad command":    mut(func(b []byte) []byte { b[12] = 0x2F; return b }),
		"udp":            mut(func(b []byte) []byte { b[13] = 0x12; return b }),
		"unspec + proxy": mut(func(b []byte) []byte { b[13] = 0x00; return b }),
		"too long":       mut(func(b []byte) []byte { b[14], b[15] = 0xFF, 0xFF; return b }),
		"addresses cut":  mut(func(b []byte) []byte { b[15] = 4; return b[:20] }),
		"tlv overrun":    mut(func(b []byte) []byte { b[15] = 15; return append(b, 0x05, 0x00) }),
		"tlv length":     mut(func(b []byte) []byte { b[15] = 15; return append(b, 0x05, 0x00, 0x09) }),
		"ssl tlv short":  mut(func(b []byte) []byte { b[15] = 16; return append(b, 0x20, 0x00, 0x01, 0x01) }),
	}
	for name, b := range cases {
		if _, _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode: %v, want ErrMalformed", name, err)
		}
		if _, err := Read(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: Read accepted it", name)
		}
	}
	if _, _, err := Decode([]byte("USER juan\r\nPASS x\r\n")); !errors.Is(err, ErrNoSignature) {
		t.Errorf("a POP3 line: %v, want ErrNoSignature", err)
	}
}

// Unknown TLVs are skipped, as the specification asks.
func TestUnknownTLVIgnored(t *testing.T) {
	good, _ := Header{Source: netip.MustParseAddrPort("192.0.2.7:1"), Dest: netip.MustParseAddrPort("192.0.2.8:2")}.Encode()
	b := append(good, 0x04, 0x00, 0x02, 'h', 'i') // PP2_TYPE_NOOP
	b[15] += 5
	h, n, err := Decode(b)
	if err != nil || n != len(b) || h.Source.Port() != 1 {
		t.Fatalf("%+v %d %v", h, n, err)
	}
}

// FuzzDecode: any input either fails cleanly or decodes to a header that
// encodes and decodes to itself, and Read agrees with Decode.
func FuzzDecode(f *testing.F) {
	for _, h := range []Header{
		{Source: netip.MustParseAddrPort("192.0.2.7:51234"), Dest: netip.MustParseAddrPort("10.77.0.5:110"), UniqueID: "trace", TLS: true},
		{Source: netip.MustParseAddrPort("[2001:db8::1]:1"), Dest: netip.MustParseAddrPort("[2001:db8::2]:2")},
		{Local: true},
	} {
		b, _ := h.Encode()
		f.Add(b)
	}
	f.Add([]byte("USER juan\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Decode(b)
		h2, err2 := Read(bytes.NewReader(b))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("Decode %v, Read %v", err, err2)
		}
		if err != nil {
			return
		}
		if n > len(b) || !reflect.DeepEqual(h2, h) {
			t.Fatalf("n %d of %d; Read %+v, Decode %+v", n, len(b), h2, h)
		}
		if h.Local {
			return
		}
		enc, err := h.Encode()
		if err != nil {
			t.Fatalf("a decoded header does not encode: %+v: %v", h, err)
		}
		h3, _, err := Decode(enc)
		if err != nil || !reflect.DeepEqual(h3, h) {
			t.Fatalf("re-decoded %+v %v, want %+v", h3, err, h)
		}
	})
}
