package directory

import (
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// DefaultBcryptCost is the cost new password hashes are made with when the
// caller has no profile to ask (cluster.passwd.bcrypt_cost sets it for
// passwdd). At cost 10 one HashPassword or VerifyPassword of a bcrypt hash
// takes about 50-100 ms of one core on current hardware (see
// BenchmarkVerifyPassword): callers that answer queries must run it off the
// hot path (a bounded worker pool), never on the goroutine reading
// datagrams.
const DefaultBcryptCost = 10

// MaxPasswordLen is the longest password HashPassword accepts: bcrypt only
// uses the first 72 bytes, and silently ignoring the rest would be a lie.
const MaxPasswordLen = 72

// maxVerifyLen bounds the password VerifyPassword will even try: SHA-512
// crypt hashes len(pw)² bytes, so an unbounded password is a CPU bomb.
const maxVerifyLen = 1024

// SHA-512-crypt rounds, from the specification: default, and the clamp
// applied to a "rounds=N$" parameter.
const (
	shaCryptDefaultRounds = 5000
	shaCryptMinRounds     = 1000
	shaCryptMaxRounds     = 999999999
	// MaxImportRounds is the most SHA-512-crypt rounds CheckHash accepts:
	// the specification allows 999999999, which would cost minutes of CPU
	// per login attempt (a denial of service on passwdd). 5 000 000 rounds
	// cost about 2-3 s.
	MaxImportRounds = 5000000
)

// HashPassword returns a new bcrypt hash of pw at the given cost (4-31;
// ~50-100 ms at 10, half that for each step down).
func HashPassword(pw string, cost int) (string, error) {
	if pw == "" {
		return "", errors.New("empty password refused")
	}
	if len(pw) > MaxPasswordLen {
		return "", fmt.Errorf("password is %d bytes, longer than bcrypt's limit of %d", len(pw), MaxPasswordLen)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

// Locked reports whether hash allows no password login: "", "!" or "*"
// alone or as a prefix (the shadow(5) conventions for locked accounts).
func Locked(hash string) bool {
	return hash == "" || hash[0] == '!' || hash[0] == '*'
}

func isBcrypt(h string) bool {
	return len(h) >= 4 && h[0] == '$' && h[1] == '2' && (h[2] == 'a' || h[2] == 'b' || h[2] == 'y') && h[3] == '$'
}

// VerifyPassword reports whether pw matches hash: bcrypt ("$2a$", "$2b$",
// "$2y$") or SHA-512-crypt ("$6$", optional "rounds=N$"). Locked, empty,
// malformed and unsupported hashes never verify. The final comparison is
// constant-time. Cost: ~50-100 ms for bcrypt cost 10, ~3 ms for
// SHA-512-crypt at the default 5000 rounds — run it off the hot path.
// It never panics on any input.
func VerifyPassword(hash, pw string) bool {
	if Locked(hash) || pw == "" || len(pw) > maxVerifyLen {
		return false
	}
	switch {
	case isBcrypt(hash):
		if len(pw) > MaxPasswordLen {
			return false
		}
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
	case strings.HasPrefix(hash, "$6$"):
		p, err := parseSHACrypt(hash)
		if err != nil {
			return false
		}
		got := shaCryptEncode(shaCrypt512([]byte(pw), []byte(p.salt), p.rounds))
		return subtle.ConstantTimeCompare([]byte(got), []byte(p.digest)) == 1
	}
	return false
}

// CheckHash reports whether hash can be stored: a locked form ("", "!",
// "*", or any hash prefixed with '!' or '*'), a well-formed bcrypt hash, or
// a well-formed SHA-512-crypt hash with at most MaxImportRounds rounds.
// Other schemes ($1$ MD5, $5$, $y$ yescrypt, DES) are refused with a reason,
// so an import never creates accounts that can silently never log in.
func CheckHash(hash string) error {
	for i := 0; i < len(hash); i++ {
		if c := hash[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("password hash contains byte 0x%02x at offset %d", c, i)
		}
	}
	if Locked(hash) {
		return nil
	}
	switch {
	case isBcrypt(hash):
		if len(hash) != 60 {
			return fmt.Errorf("bcrypt hash is %d characters, expected 60", len(hash))
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("bad bcrypt hash: %v", err)
		}
		for i := 7; i < 60; i++ {
			if !isB64(hash[i]) {
				return fmt.Errorf("bad bcrypt hash: character %q at offset %d", hash[i], i)
			}
		}
		return nil
	case strings.HasPrefix(hash, "$6$"):
		p, err := parseSHACrypt(hash)
		if err != nil {
			return err
		}
		if p.rounds > MaxImportRounds {
			return fmt.Errorf("SHA-512-crypt hash with %d rounds refused (more than %d would make each login cost seconds of CPU)", p.rounds, MaxImportRounds)
		}
		return nil
	}
	scheme := hash
	if i := strings.IndexByte(hash[min(1, len(hash)):], '$'); hash[0] == '$' && i >= 0 {
		scheme = hash[:i+2]
	} else if len(scheme) > 8 {
		scheme = scheme[:8] + "..."
	}
	return fmt.Errorf("unsupported password hash scheme %q: only SHA-512-crypt ($6$) and bcrypt ($2a$/$2b$/$2y$) verify; set a new password", scheme)
}

type shaCryptParams struct {
	rounds int
	salt   string
	digest string
}

// parseSHACrypt splits "$6$[rounds=N$]salt$digest". The rounds value is
// clamped to [1000, 999999999] as the specification says; the salt is at
// most 16 characters and the digest exactly 86 characters of the crypt
// base-64 alphabet.
func parseSHACrypt(h string) (shaCryptParams, error) {
	p := shaCryptParams{rounds: shaCryptDefaultRounds}
	rest, ok := strings.CutPrefix(h, "$6$")
	if !ok {
		return p, errors.New("not a SHA-512-crypt hash")
	}
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		num, after, ok := strings.Cut(r, "$")
		if !ok || num == "" || len(num) > 10 {
			return p, errors.New("bad SHA-512-crypt hash: malformed rounds= parameter")
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return p, errors.New("bad SHA-512-crypt hash: malformed rounds= parameter")
		}
		p.rounds = int(max(shaCryptMinRounds, min(n, shaCryptMaxRounds)))
		rest = after
	}
	salt, digest, ok := strings.Cut(rest, "$")
	if !ok {
		return p, errors.New("bad SHA-512-crypt hash: no digest")
	}
	if len(salt) > 16 {
		return p, fmt.Errorf("bad SHA-512-crypt hash: salt of %d characters, at most 16", len(salt))
	}
	for i := 0; i < len(salt); i++ {
		if c := salt[i]; c == '$' || c == ':' || c < 0x21 || c > 0x7e {
			return p, errors.New("bad SHA-512-crypt hash: invalid salt character")
		}
	}
	if len(digest) != 86 {
		return p, fmt.Errorf("bad SHA-512-crypt hash: digest of %d characters, expected 86", len(digest))
	}
	for i := 0; i < len(digest); i++ {
		if !isB64(digest[i]) {
			return p, fmt.Errorf("bad SHA-512-crypt hash: digest character %q", digest[i])
		}
	}
	p.salt, p.digest = salt, digest
	return p, nil
}

// crypt's base-64 alphabet (not RFC 4648's).
const cryptB64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func isB64(c byte) bool {
	return c == '.' || c == '/' || '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// shaCrypt512 is the SHA-512 variant of Drepper's "Unix crypt using SHA-256
// and SHA-512", steps numbered as in the specification.
func shaCrypt512(pw, salt []byte, rounds int) [64]byte {
	h := sha512.New()
	// Digest B = SHA512(password || salt || password)  (steps 4-8).
	h.Write(pw)
	h.Write(salt)
	h.Write(pw)
	var b [64]byte
	h.Sum(b[:0])

	// Digest A (steps 1-3, 9-12): password, salt, then B once per full
	// 64 bytes of password plus the first len%64 bytes of B, then for each
	// bit of the password length (lowest first) B for a 1, the password
	// for a 0.
	h.Reset()
	h.Write(pw)
	h.Write(salt)
	n := len(pw)
	for ; n > 64; n -= 64 {
		h.Write(b[:])
	}
	h.Write(b[:n])
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b[:])
		} else {
			h.Write(pw)
		}
	}
	var a [64]byte
	h.Sum(a[:0])

	// Digest DP: the password once per byte of it; P is DP repeated to the
	// password's length (steps 13-16).
	h.Reset()
	for range len(pw) {
		h.Write(pw)
	}
	var dp [64]byte
	h.Sum(dp[:0])
	p := make([]byte, len(pw))
	for i := 0; i < len(p); i += 64 {
		copy(p[i:], dp[:])
	}

	// Digest DS: the salt 16+A[0] times; S is its first len(salt) bytes
	// (steps 17-20; the salt is at most 16 bytes).
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	var ds [64]byte
	h.Sum(ds[:0])
	s := ds[:len(salt)]

	// The rounds (step 21).
	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c[:])
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c[:])
		} else {
			h.Write(p)
		}
		h.Sum(c[:0])
	}
	return c
}

// shaCryptEncode is step 22 for SHA-512: 21 groups of three bytes taken
// in the specification's permuted order (i, i+21, i+42 rotated by i mod 3),
// each as four characters, least significant 6 bits first, then byte 63
// as two characters.
func shaCryptEncode(d [64]byte) string {
	out := make([]byte, 0, 86)
	put := func(b2, b1, b0 byte, n int) {
		w := uint32(b2)<<16 | uint32(b1)<<8 | uint32(b0)
		for range n {
			out = append(out, cryptB64[w&0x3f])
			w >>= 6
		}
	}
	for i := range 21 {
		x, y, z := d[i], d[i+21], d[i+42]
		switch i % 3 {
		case 0:
			put(x, y, z, 4)
		case 1:
			put(y, z, x, 4)
		case 2:
			put(z, x, y, 4)
		}
	}
	put(0, 0, d[63], 2)
	return string(out)
}

// shaCryptHash makes a full "$6$..." string; used by tests and tools that
// need SHA-512-crypt hashes (new passwords use bcrypt).
func shaCryptHash(pw, salt string, rounds int) string {
	if len(salt) > 16 {
		salt = salt[:16]
	}
	prefix := "$6$"
	if rounds != 0 {
		rounds = max(shaCryptMinRounds, min(rounds, shaCryptMaxRounds))
		prefix += "rounds=" + strconv.Itoa(rounds) + "$"
	} else {
		rounds = shaCryptDefaultRounds
	}
	return prefix + salt + "$" + shaCryptEncode(shaCrypt512([]byte(pw), []byte(salt), rounds))
}
