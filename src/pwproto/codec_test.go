package pwproto

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRequestRoundTrip(t *testing.T) {
	c := mustCodec(t, 1)
	for _, want := range sampleRequests() {
		b, err := c.SealRequest(nil, &want, t0)
		if err != nil {
			t.Fatalf("%v: %v", want.Op, err)
		}
		if len(b) > MaxDatagram {
			t.Fatalf("%v: %d bytes", want.Op, len(b))
		}
		got, err := c.OpenRequest(b, t0.Add(time.Second))
		if err != nil {
			t.Fatalf("%v: open: %v", want.Op, err)
		}
		if got.KeyID != 1 || got.Time.UnixMilli() != t0.UnixMilli() || got.Nonce == ([NonceSize]byte{}) {
			t.Fatalf("%v: metadata %d %v %x", want.Op, got.KeyID, got.Time, got.Nonce)
		}
		got.KeyID, got.Nonce, got.Time = 0, [NonceSize]byte{}, time.Time{}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", *got, want)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	c := mustCodec(t, 1)
	for _, want := range sampleResponses() {
		b, err := c.SealResponse(nil, &want, t0)
		if err != nil {
			t.Fatalf("%v %v: %v", want.Op, want.Status, err)
		}
		got, err := c.OpenResponse(b)
		if err != nil {
			t.Fatalf("%v: open: %v", want.Op, err)
		}
		want.KeyID = 1
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", *got, want)
		}
	}
}

func TestNonceUnique(t *testing.T) {
	c := mustCodec(t, 1)
	seen := map[[NonceSize]byte]bool{}
	req := Request{Op: OpPing}
	for range 1000 {
		b, _ := c.SealRequest(nil, &req, t0)
		var n [NonceSize]byte
		copy(n[:], b[4:HeaderSize])
		if seen[n] {
			t.Fatal("nonce repeated")
		}
		seen[n] = true
	}
}

func TestSealAppendsToBuffer(t *testing.T) {
	c := mustCodec(t, 1)
	prefix := []byte("keep")
	req := Request{Op: OpLookupName, Name: "juan"}
	b, err := c.SealRequest(prefix, &req, t0)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:4]) != "keep" {
		t.Fatal("prefix overwritten")
	}
	if _, err := c.OpenRequest(b[4:], t0); err != nil {
		t.Fatal(err)
	}
}

func TestSealLimits(t *testing.T) {
	c := mustCodec(t, 1)
	bad := []Request{
		{Op: OpLookupName, Name: strings.Repeat("x", MaxName+1)},
		{Op: OpLookupAddr, Address: strings.Repeat("x", MaxAddress+1)},
		{Op: OpAuth, Name: "a", Password: strings.Repeat("x", MaxPassword+1)},
		{Op: OpAuth, Name: "a", Client: strings.Repeat("x", MaxClient+1)},
	}
	for _, r := range bad {
		if _, err := c.SealRequest(nil, &r, t0); !errors.Is(err, ErrTooBig) {
			t.Errorf("%v: got %v, want ErrTooBig", r.Op, err)
		}
	}
	for _, r := range []Request{{Op: OpLookupName, Name: "a\x00b"}, {Op: 0}, {Op: 99}} {
		if _, err := c.SealRequest(nil, &r, t0); err == nil {
			t.Errorf("%+v sealed", r)
		}
	}
	u := sampleUser()
	u.Shell = strings.Repeat("s", MaxShell+1)
	for _, r := range []Response{
		{Op: OpLookupName, Status: StatusOK, User: u},
		{Op: OpLookupName, Status: 0},
		{Op: OpPing, Status: StatusOK},
		{Op: 0, Status: StatusOK},
	} {
		if _, err := c.SealResponse(nil, &r, t0); err == nil {
			t.Errorf("%+v sealed", r)
		}
	}
}

// sealRaw seals an arbitrary plaintext, bypassing the encoders, to reach
// the decoder's checks from outside.
func sealRaw(c *Codec, keyID uint8, kind byte, op Op, ms int64, body []byte) []byte {
	b := []byte{magic0, magic1, Version, keyID, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, byte(ms)}
	pt := append([]byte{kind, byte(op)}, make([]byte, 16)...)
	binary.BigEndian.PutUint64(pt[2:], 42)
	binary.BigEndian.PutUint64(pt[10:], uint64(ms))
	pt = append(pt, body...)
	return c.aeads[keyID].Seal(b, b[4:HeaderSize], pt, b[:HeaderSize])
}

func TestRejections(t *testing.T) {
	c := mustCodec(t, 1)
	req := Request{Op: OpAuth, ID: 5, Name: "juan", Password: "pw", Client: "192.0.2.1"}
	valid, err := c.SealRequest(nil, &req, t0)
	if err != nil {
		t.Fatal(err)
	}
	open := func(b []byte) error {
		_, err := c.OpenRequest(append([]byte(nil), b...), t0)
		return err
	}
	if err := open(valid); err != nil {
		t.Fatal(err)
	}
	// Every truncation fails.
	for n := range len(valid) {
		if err := open(valid[:n]); err == nil {
			t.Fatalf("truncated to %d accepted", n)
		}
	}
	if err := open(valid[:HeaderSize]); err != ErrShort {
		t.Fatalf("short: %v", err)
	}
	// Every single-bit flip anywhere (header, ciphertext, tag) fails.
	for i := range valid {
		for bit := range 8 {
			b := append([]byte(nil), valid...)
			b[i] ^= 1 << bit
			if err := open(b); err == nil {
				t.Fatalf("bit %d of byte %d flipped: accepted", bit, i)
			}
		}
	}
	flip := func(i int) []byte { b := append([]byte(nil), valid...); b[i] ^= 0x10; return b }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"magic", flip(0), ErrMagic},
		{"version", flip(2), ErrVersion},
		{"unknown key id", flip(3), ErrUnknownKey},
		{"nonce", flip(5), ErrAuth},
		{"ciphertext", flip(HeaderSize + 3), ErrAuth},
		{"tag", flip(len(valid) - 1), ErrAuth},
		{"oversize", append(append([]byte(nil), valid...), make([]byte, MaxDatagram)...), ErrOversize},
		{"garbage", []byte(strings.Repeat("GET / HTTP/1.0\r\n", 10)), ErrMagic},
		{"empty", nil, ErrShort},
		{"zero key id", func() []byte { b := append([]byte(nil), valid...); b[3] = 0; return b }(), ErrUnknownKey},
	}
	for _, tc := range cases {
		if err := open(tc.b); err != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// A different cluster key under the same id.
	other := mustCodec(t, 1)
	other.aeads[1] = mustCodec(t, 2).aeads[2]
	forged, _ := other.SealRequest(nil, &req, t0)
	if err := open(forged); err != ErrAuth {
		t.Errorf("forged with another key: %v", err)
	}
}

func TestReflection(t *testing.T) {
	c := mustCodec(t, 1)
	resp := Response{Op: OpLookupName, ID: 1, Status: StatusNotFound}
	b, _ := c.SealResponse(nil, &resp, t0)
	if _, err := c.OpenRequest(b, t0); err != ErrDirection {
		t.Fatalf("response as request: %v", err)
	}
	req := Request{Op: OpLookupName, Name: "juan"}
	b, _ = c.SealRequest(nil, &req, t0)
	if _, err := c.OpenResponse(b); err != ErrDirection {
		t.Fatalf("request as response: %v", err)
	}
}

func TestStale(t *testing.T) {
	c := mustCodec(t, 1)
	req := Request{Op: OpPing, ID: 9}
	for _, tc := range []struct {
		skew time.Duration
		ok   bool
	}{
		{0, true}, {Window, true}, {-Window, true},
		{Window + time.Millisecond, false}, {-Window - time.Millisecond, false},
		{time.Hour, false}, {-time.Hour, false},
	} {
		b, _ := c.SealRequest(nil, &req, t0.Add(tc.skew))
		_, err := c.OpenRequest(b, t0)
		if tc.ok && err != nil || !tc.ok && err != ErrStale {
			t.Errorf("skew %v: %v", tc.skew, err)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	old := mustCodec(t, 1)       // a client not yet rotated
	server := mustCodec(t, 2, 1) // new key current, old still accepted
	retired := mustCodec(t, 2)   // old key removed
	req := Request{Op: OpLookupUID, ID: 3, UID: 7}
	b, _ := old.SealRequest(nil, &req, t0)
	got, err := server.OpenRequest(append([]byte(nil), b...), t0)
	if err != nil {
		t.Fatalf("old key refused during rotation: %v", err)
	}
	if got.KeyID != 1 {
		t.Fatalf("key id %d", got.KeyID)
	}
	// The reply uses the request's key, which the old client can open.
	resp := got.Reply(StatusNotFound)
	rb, _ := server.SealResponse(nil, &resp, t0)
	if rb[3] != 1 {
		t.Fatalf("reply sealed with key %d", rb[3])
	}
	if r, err := old.OpenResponse(rb); err != nil || r.ID != 3 || r.Status != StatusNotFound {
		t.Fatalf("old client cannot read the reply: %v %+v", err, r)
	}
	if _, err := retired.OpenRequest(b, t0); err != ErrUnknownKey {
		t.Fatalf("retired key: %v", err)
	}
	// New requests use the current key.
	nb, _ := server.SealRequest(nil, &req, t0)
	if nb[3] != 2 {
		t.Fatalf("sealed with key %d", nb[3])
	}
	// KeyID unknown to the sealer: the current key is used.
	resp.KeyID = 77
	rb, _ = server.SealResponse(nil, &resp, t0)
	if rb[3] != 2 {
		t.Fatalf("unknown reply key: sealed with %d", rb[3])
	}
}

func TestUnknownOpAndMalformedKeepID(t *testing.T) {
	c := mustCodec(t, 1)
	var req Request
	err := c.OpenRequestTo(&req, sealRaw(c, 1, kindRequest, 99, t0.UnixMilli(), nil), t0)
	if err != ErrUnknownOp || req.ID != 42 || req.KeyID != 1 {
		t.Fatalf("unknown op: %v %+v", err, req)
	}
	for _, body := range [][]byte{
		{0x05, 'a'},      // length beyond the body
		{0x01, 'a', 'x'}, // trailing byte
		{0x01, 0x00},     // NUL
		{0x41},           // over MaxName
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // bad uvarint
	} {
		err := c.OpenRequestTo(&req, sealRaw(c, 1, kindRequest, OpLookupName, t0.UnixMilli(), body), t0)
		if err != ErrMalformed || req.ID != 42 {
			t.Errorf("body %x: %v id %d", body, err, req.ID)
		}
	}
	// Responses: unknown op, bad status, lying alias count.
	if _, err := c.OpenResponse(sealRaw(c, 1, kindResponse, 99, 0, []byte{1})); err != ErrUnknownOp {
		t.Errorf("response op: %v", err)
	}
	if _, err := c.OpenResponse(sealRaw(c, 1, kindResponse, OpPing, 0, []byte{0})); err != ErrMalformed {
		t.Errorf("status 0: %v", err)
	}
	u := sampleUser()
	u.Aliases = nil
	body := appendUser([]byte{byte(StatusOK)}, &u)
	body[len(body)-1] = 200 // 200 aliases, no bytes
	if _, err := c.OpenResponse(sealRaw(c, 1, kindResponse, OpLookupName, 0, body)); err != ErrMalformed {
		t.Errorf("alias count: %v", err)
	}
}

func manyUsers(n int) []User {
	us := make([]User, n)
	for i := range us {
		u := sampleUser()
		u.Name = "user" + strings.Repeat("x", i%40)
		u.UID = uint32(2000 + i)
		us[i] = u
	}
	return us
}

func TestEnumeratePacking(t *testing.T) {
	c := mustCodec(t, 1)
	us := manyUsers(500)
	total := 0
	for len(us) > 0 {
		n := FitEnumerate(us)
		if n == 0 {
			t.Fatal("no progress")
		}
		resp := Response{Op: OpEnumerate, Status: StatusOK, Users: us[:n], Next: uint64(n)}
		b, err := c.SealResponse(nil, &resp, t0)
		if err != nil {
			t.Fatalf("page of %d: %v", n, err)
		}
		if len(b) > MaxDatagram {
			t.Fatalf("page of %d users is %d bytes", n, len(b))
		}
		if n < len(us) {
			resp.Users = us[:n+1]
			if _, err := c.SealResponse(nil, &resp, t0); !errors.Is(err, ErrTooBig) {
				t.Fatalf("page of %d+1 users: %v", n, err)
			}
		}
		got, err := c.OpenResponse(b)
		if err != nil || len(got.Users) != n {
			t.Fatalf("open page: %v, %d users", err, len(got.Users))
		}
		total += n
		us = us[n:]
	}
	if total != 500 {
		t.Fatalf("%d users paged", total)
	}
	if FitEnumerate(nil) != 0 {
		t.Fatal("empty")
	}
}

func TestFitUser(t *testing.T) {
	c := mustCodec(t, 1)
	u := sampleUser()
	if got := FitUser(u); !reflect.DeepEqual(got, u) {
		t.Fatal("a fitting user was changed")
	}
	for _, tc := range []struct {
		name    string
		gecos   string
		aliases int
	}{
		{"huge gecos", strings.Repeat("é", 2000), 0},
		{"many aliases", "Juan", 100},
		{"both", strings.Repeat("ñ", 400), 60},
		{"gecos over limit", strings.Repeat("g", MaxGecos+10), 0},
	} {
		big := sampleUser()
		big.Name, big.Shell, big.Home, big.Storage = strings.Repeat("n", MaxName), strings.Repeat("s", MaxShell),
			strings.Repeat("h", MaxHome), strings.Repeat("d", MaxStorage)
		big.Gecos = tc.gecos
		big.Aliases = nil
		for i := range tc.aliases {
			big.Aliases = append(big.Aliases, strings.Repeat("a", 20)+string(rune('a'+i%26))+string(rune('a'+i/26)))
		}
		resp := Response{Op: OpLookupName, Status: StatusOK, User: big}
		if _, err := c.SealResponse(nil, &resp, t0); err == nil {
			t.Fatalf("%s: did not need fitting", tc.name)
		}
		resp.User = FitUser(big)
		b, err := c.SealResponse(nil, &resp, t0)
		if err != nil {
			t.Fatalf("%s: fitted user does not seal: %v", tc.name, err)
		}
		if len(b) > MaxDatagram || !utf8.ValidString(resp.User.Gecos) {
			t.Fatalf("%s: %d bytes, gecos valid %v", tc.name, len(b), utf8.ValidString(resp.User.Gecos))
		}
		if !strings.HasPrefix(big.Gecos, resp.User.Gecos) || len(resp.User.Aliases) > len(big.Aliases) {
			t.Fatalf("%s: not a trim", tc.name)
		}
		if resp.User.Name != big.Name || resp.User.Home != big.Home || resp.User.Storage != big.Storage {
			t.Fatalf("%s: identity fields changed", tc.name)
		}
		if len(tc.gecos) > 0 && len(resp.User.Gecos) == 0 && tc.aliases > 0 {
			t.Fatalf("%s: gecos dropped entirely while aliases remained", tc.name)
		}
		// Tight: the record is close to the limit, not trimmed to nothing.
		if userSize(&resp.User) < maxUserSize-100 && (len(resp.User.Gecos) < len(big.Gecos)) && len(resp.User.Aliases) == len(big.Aliases) {
			t.Fatalf("%s: trimmed more than needed (%d bytes)", tc.name, userSize(&resp.User))
		}
	}
	// Aliases that cannot be encoded at all are dropped.
	u.Aliases = []string{"ok", strings.Repeat("z", MaxName+1), "bad\x00"}
	if got := FitUser(u); !reflect.DeepEqual(got.Aliases, []string{"ok"}) {
		t.Fatalf("aliases %q", got.Aliases)
	}
}
