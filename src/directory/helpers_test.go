package directory

import (
	"fmt"
	"strings"
	"testing"

	"correo/src/usersample"
)

// fakeBcrypt is a well-formed 60-character bcrypt-looking hash (no bcrypt
// run: a million real ones would take a day).
func fakeBcrypt(i int) string {
	s := fmt.Sprintf("$2a$10$%022d%031d", i, i*7)
	return s
}

// sampleUsers returns n realistic users: names from usersample, bcrypt-sized
// hashes, ~20-byte gecos, three storage hosts, a few aliases.
func sampleUsers(n int, seed int64) []User {
	names := usersample.Generate(n, seed)
	users := make([]User, n)
	for i, name := range names {
		users[i] = User{
			Name: name, UID: uint32(10000 + i), GID: 100,
			Gecos: fmt.Sprintf("User %-15d", i)[:20], Shell: "/usr/sbin/nologin",
			Hash: fakeBcrypt(i), Storage: fmt.Sprintf("store%d", i%3+1),
			Quota: int64(i%5) << 20,
		}
		if i%50 == 0 {
			users[i].Aliases = []string{"alias-" + name}
		}
	}
	return users
}

// sizes picks a big size, or a smaller one under -short or -race.
func size(t testing.TB, big, small int) int {
	if testing.Short() || raceEnabled {
		return small
	}
	return big
}

func sameUser(a, b User) bool {
	return a.Name == b.Name && a.UID == b.UID && a.GID == b.GID && a.Gecos == b.Gecos &&
		a.Shell == b.Shell && a.Hash == b.Hash && a.Storage == b.Storage && a.Quota == b.Quota &&
		a.State == b.State && strings.Join(a.Aliases, ",") == strings.Join(b.Aliases, ",")
}

func mustBuild(t testing.TB, users []User) *Index {
	t.Helper()
	ix, err := Build(users)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}
