package pwproto

import (
	"strings"
	"testing"
	"time"

	"correo/src/keyfile"
)

// testKey is deterministic so that committed fuzz seeds stay valid.
func testKey(id uint8) keyfile.Key {
	k := keyfile.Key{ID: id}
	for i := range k.Secret {
		k.Secret[i] = byte(i*7) + id*31
	}
	return k
}

func testRing(ids ...uint8) *keyfile.Ring {
	r := &keyfile.Ring{}
	for _, id := range ids {
		r.Keys = append(r.Keys, testKey(id))
	}
	return r
}

func mustCodec(t testing.TB, ids ...uint8) *Codec {
	t.Helper()
	c, err := NewCodec(testRing(ids...))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// detCodec seals reproducible datagrams (fixed nonce prefix and counter).
func detCodec(t testing.TB, ids ...uint8) *Codec {
	c := mustCodec(t, ids...)
	c.prefix = [4]byte{1, 2, 3, 4}
	c.counter.Store(1000)
	return c
}

// t0 is the fixed clock of the fuzz seeds.
var t0 = time.UnixMilli(1_760_000_000_000)

func sampleUser() User {
	return User{
		Name: "juan", UID: 1001, GID: 100, Gecos: "Juan Pérez,,,",
		Shell: "/bin/false", Home: "/var/mail/j/u/a/juan", Storage: "store1.correo.test",
		Quota: 50 << 20, State: StateActive, Aliases: []string{"jperez", "juan.perez"},
	}
}

func sampleRequests() []Request {
	return []Request{
		{Op: OpLookupName, ID: 1, Name: "juan"},
		{Op: OpLookupUID, ID: 2, UID: 1001},
		{Op: OpLookupAddr, ID: 3, Address: "jperez@correo.test"},
		{Op: OpAuth, ID: 4, Name: "juan", Password: "s3cr3t ñ", Client: "2001:db8::1"},
		{Op: OpEnumerate, ID: 5, Cursor: 77, Max: 500},
		{Op: OpPing, ID: 6},
		{Op: OpLookupName, ID: 7, Name: ""},
		{Op: OpAuth, ID: 8, Name: strings.Repeat("n", MaxName), Password: strings.Repeat("p", MaxPassword), Client: strings.Repeat("c", MaxClient)},
		{Op: OpLookupAddr, ID: 9, Address: strings.Repeat("a", MaxAddress)},
	}
}

func sampleResponses() []Response {
	u := sampleUser()
	u2 := u
	u2.Name, u2.UID, u2.Aliases, u2.State, u2.Quota = "ana", 1002, nil, StateMoving, -1
	return []Response{
		{Op: OpLookupName, ID: 1, Status: StatusOK, User: u},
		{Op: OpLookupName, ID: 11, Status: StatusNotFound},
		{Op: OpLookupUID, ID: 2, Status: StatusOK, User: u2},
		{Op: OpLookupAddr, ID: 3, Status: StatusOK, User: u},
		{Op: OpAuth, ID: 4, Status: StatusOK, User: u},
		{Op: OpAuth, ID: 41, Status: StatusDenied},
		{Op: OpAuth, ID: 42, Status: StatusLockedOut},
		{Op: OpEnumerate, ID: 5, Status: StatusOK, Users: []User{u, u2}, Next: 1003},
		{Op: OpEnumerate, ID: 51, Status: StatusOK},
		{Op: OpEnumerate, ID: 52, Status: StatusTempFail},
		{Op: OpPing, ID: 6, Status: StatusOK, Ping: PingInfo{Role: RoleSecondary, Epoch: 3, Seq: 12345, Users: 1_000_000}},
		{Op: OpPing, ID: 7, Status: StatusBadRequest},
	}
}
