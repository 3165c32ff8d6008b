package directory

import (
	"os/exec"
	"strings"
	"testing"

	"correo/internal/testutil"

	"golang.org/x/crypto/bcrypt"
)

// Vectors 1-7 are the SHA-512 test vectors published in Ulrich Drepper's
// "Unix crypt using SHA-256 and SHA-512" specification.
var shaCryptVectors = []struct{ salt, pw, want string }{
	{"$6$saltstring", "Hello world!",
		"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	{"$6$rounds=10000$saltstringsaltstring", "Hello world!",
		"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	{"$6$rounds=5000$toolongsaltstring", "This is just a test",
		"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	{"$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.",
		"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
	{"$6$rounds=77777$short", "we have a short salt string but not a short password",
		"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	{"$6$rounds=123456$asaltof16chars..", "a short string",
		"$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
	{"$6$rounds=10$roundstoolow", "the minimum number is still observed",
		"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
}

func TestSHACryptSpecVectors(t *testing.T) {
	for i, v := range shaCryptVectors {
		if testing.Short() && strings.Contains(v.salt, "123456") {
			continue
		}
		rest := strings.TrimPrefix(v.salt, "$6$")
		rounds := 0
		if r, ok := strings.CutPrefix(rest, "rounds="); ok {
			num, after, _ := strings.Cut(r, "$")
			for _, c := range num {
				rounds = rounds*10 + int(c-'0')
			}
			rest = after
		}
		got := shaCryptHash(v.pw, rest, rounds)
		if got != v.want {
			t.Errorf("vector %d: got\n%s\nwant\n%s", i+1, got, v.want)
		}
		if !VerifyPassword(v.want, v.pw) {
			t.Errorf("vector %d: VerifyPassword(want) = false", i+1)
		}
		if VerifyPassword(v.want, v.pw+"x") {
			t.Errorf("vector %d: wrong password verified", i+1)
		}
	}
}

// Hashes made on this machine by independent implementations.
func TestSHACryptAgainstOpenSSL(t *testing.T) {
	openssl := testutil.NeedCommand(t, "openssl")
	for _, c := range []struct{ salt, pw string }{
		{"abcdefgh", "secreto"},
		{"Zx9./", "contraseña con espacios"},
		{"0123456789abcdef", strings.Repeat("long", 40)}, // > 64 bytes: several B blocks
		{"s", "x"},
	} {
		out, err := exec.Command(openssl, "passwd", "-6", "-salt", c.salt, c.pw).Output()
		if err != nil {
			t.Fatal(err)
		}
		h := strings.TrimSpace(string(out))
		if !VerifyPassword(h, c.pw) {
			t.Errorf("openssl hash %s of %q does not verify", h, c.pw)
		}
		if VerifyPassword(h, c.pw[:len(c.pw)-1]) {
			t.Errorf("openssl hash %s verifies a wrong password", h)
		}
		if got := shaCryptHash(c.pw, c.salt, 0); got != h {
			t.Errorf("ours %s, openssl %s", got, h)
		}
	}
}

// libc's crypt(3) (libxcrypt on Debian), reached through perl's crypt:
// what Python's crypt module wrapped until 3.13 removed it, and what the
// operating system's own logins use. perl is part of every Debian system.
func TestHashesAgainstLibcCrypt(t *testing.T) {
	perl := testutil.NeedCommand(t, "perl")
	for _, c := range []struct{ setting, pw string }{
		{"$6$rounds=2000$pysalt", "hola mundo"},
		{"$6$libcsalt", "contraseña"},
		{"$2b$05$abcdefghijklmnopqrstuu", "hola mundo"},
		{"$2b$04$0123456789ABCDEFGHIJKL", strings.Repeat("x", 72)},
	} {
		out, err := exec.Command(perl, "-e", `print crypt($ARGV[0], $ARGV[1])`, c.pw, c.setting).Output()
		if err != nil {
			t.Fatalf("perl crypt: %v", err)
		}
		h := string(out)
		if !strings.HasPrefix(h, c.setting[:4]) {
			t.Fatalf("libc crypt does not support %s: got %q (is libxcrypt installed?)", c.setting, h)
		}
		if !VerifyPassword(h, c.pw) || VerifyPassword(h, c.pw[:len(c.pw)-1]) {
			t.Errorf("libc crypt hash %s of %q: verification wrong", h, c.pw)
		}
		if err := CheckHash(h); err != nil {
			t.Errorf("libc crypt hash %s refused: %v", h, err)
		}
	}
}

func TestBcrypt(t *testing.T) {
	h, err := HashPassword("correct horse", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$2a$04$") || len(h) != 60 || CheckHash(h) != nil {
		t.Fatalf("hash %q", h)
	}
	// The cost is the caller's (cluster.passwd.bcrypt_cost).
	if h5, err := HashPassword("correct horse", 5); err != nil || !strings.HasPrefix(h5, "$2a$05$") || !VerifyPassword(h5, "correct horse") {
		t.Fatalf("cost 5: %q %v", h5, err)
	}
	if !VerifyPassword(h, "correct horse") || VerifyPassword(h, "correct horsf") || VerifyPassword(h, "") {
		t.Fatal("bcrypt verify wrong")
	}
	cheap, _ := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	for _, v := range []string{"$2b$", "$2y$"} { // other bcrypt version tags
		if h2 := v + string(cheap[4:]); !VerifyPassword(h2, "correct horse") {
			t.Errorf("%s variant does not verify", v)
		}
	}
	if _, err := HashPassword("", bcrypt.MinCost); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty password: %v", err)
	}
	if _, err := HashPassword(strings.Repeat("x", 73), bcrypt.MinCost); err == nil || !strings.Contains(err.Error(), "72") {
		t.Errorf("73-byte password: %v", err)
	}
	if _, err := HashPassword(strings.Repeat("x", 72), bcrypt.MinCost); err != nil {
		t.Errorf("72-byte password: %v", err)
	}
}

func TestLockedAndBadHashes(t *testing.T) {
	good := shaCryptVectors[0].want
	for _, h := range []string{"", "!", "*", "!!", "!" + good, "*" + good, "x", "$1$abc$def",
		"$6$", "$6$salt", "$6$salt$short", "$6$rounds=$salt$" + good[len(good)-86:],
		"$6$rounds=abc$salt$" + good[len(good)-86:], "$2a$10$tooshort", "$6$saltstring$" + strings.Repeat("!", 86)} {
		if VerifyPassword(h, "Hello world!") {
			t.Errorf("hash %q verified", h)
		}
	}
	if !VerifyPassword(good, "Hello world!") {
		t.Fatal("good hash")
	}
	if VerifyPassword(good, strings.Repeat("x", 5000)) {
		t.Fatal("huge password")
	}
	tests := []struct{ hash, want string }{
		{"", ""}, {"!", ""}, {"*", ""}, {"!" + good, ""}, {good, ""},
		{"$2a$10$" + strings.Repeat("a", 53), ""},
		{"$1$abc$def", `unsupported password hash scheme "$1$"`},
		{"$y$j9T$abc$def", `"$y$"`},
		{"plaintext", "unsupported"},
		{"$6$rounds=9000000$salt$" + good[len(good)-86:], "rounds refused"},
		{"$6$salt$short", "digest of 5"},
		{"$2a$10$short", "expected 60"},
		{"$2a$99$" + strings.Repeat("a", 53), "bad bcrypt hash"},
		{"a:b", "0x3a"},
		{"a b", "0x20"},
	}
	for _, tt := range tests {
		err := CheckHash(tt.hash)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckHash(%q) = %v, want %q", tt.hash, err, tt.want)
		}
	}
}

func FuzzVerifyPassword(f *testing.F) {
	f.Add(shaCryptVectors[0].want, "Hello world!")
	f.Add("$6$rounds=1000$x$"+strings.Repeat("a", 86), "pw")
	f.Add("$2a$10$"+strings.Repeat("a", 53), "pw")
	f.Add("!", "")
	f.Fuzz(func(t *testing.T, hash, pw string) {
		// Keep each run cheap: huge round counts are valid but slow.
		if p, err := parseSHACrypt(hash); err == nil && p.rounds > 2000 {
			return
		}
		if isBcrypt(hash) && len(hash) > 7 && hash[4:7] != "04$" {
			return
		}
		ok := VerifyPassword(hash, pw)
		CheckHash(hash)
		if ok && Locked(hash) {
			t.Fatal("locked hash verified")
		}
	})
}

func BenchmarkVerifyPassword(b *testing.B) {
	bc, _ := HashPassword("benchmark", DefaultBcryptCost)
	for _, c := range []struct{ name, hash string }{
		{"bcrypt-cost10", bc},
		{"sha512crypt-5000", shaCryptHash("benchmark", "saltsalt", 0)},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if !VerifyPassword(c.hash, "benchmark") {
					b.Fatal("no")
				}
			}
		})
	}
}
