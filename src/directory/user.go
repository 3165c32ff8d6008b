// Package directory is the data side of passwdd (the password server): user records, password
// hashes, a compact immutable in-memory index swapped atomically on reload,
// a durable store (snapshot + journal) with replication hooks, bulk import
// from passwd/shadow and CSV, and the placement of new users on storage
// hosts.
//
// Everything a query touches is immutable: an *Index never changes after it
// is published, so any number of goroutines read it without locks, and a
// reload or an admin change publishes a new *Index with one atomic store.
package directory

import (
	"errors"
	"fmt"
	"strings"

	"correo/src/mailbox"
)

// State is a user's account state.
type State uint8

const (
	// StateActive is a normal account: mail is delivered, logins work.
	StateActive State = iota
	// StateDisabled refuses logins; what delivery does is the server's
	// policy (it is still a known user).
	StateDisabled
	// StateMoving marks a mailbox being moved between storage hosts.
	StateMoving
	numStates
)

var stateNames = [...]string{StateActive: "active", StateDisabled: "disabled", StateMoving: "moving"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState parses "active", "disabled" or "moving" (case-insensitive).
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if strings.EqualFold(s, n) {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown state %q: expected active, disabled or moving", s)
}

// MarshalText makes a State appear as its name in JSON.
func (s State) MarshalText() ([]byte, error) {
	if s >= numStates {
		return nil, fmt.Errorf("invalid state %d", uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText is the inverse of MarshalText.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// User is one account. Home and mailbox paths are not stored: they are
// derived from the name by the cluster's layout scheme.
type User struct {
	Name    string `json:"name"` // normalised by mailbox.NormalizeName
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	Gecos   string `json:"gecos,omitempty"`
	Shell   string `json:"shell,omitempty"`
	Hash    string `json:"hash,omitempty"`  // see VerifyPassword; "", "!", "*", "!..." = no password login
	Storage string `json:"storage"`         // storage host name from the profile
	Quota   int64  `json:"quota,omitempty"` // bytes, 0 = unlimited
	State   State  `json:"state"`
	// Aliases are other local parts delivering to this user, normalised
	// like names. A name or alias belongs to exactly one user.
	Aliases []string `json:"aliases,omitempty"`
}

// Clone returns a deep copy whose strings share nothing with u (useful to
// keep a User from an Index for long without pinning that Index's memory).
func (u User) Clone() User {
	c := u
	c.Name = strings.Clone(u.Name)
	c.Gecos = strings.Clone(u.Gecos)
	c.Shell = strings.Clone(u.Shell)
	c.Hash = strings.Clone(u.Hash)
	c.Storage = strings.Clone(u.Storage)
	if u.Aliases != nil {
		c.Aliases = make([]string, len(u.Aliases))
		for i, a := range u.Aliases {
			c.Aliases[i] = strings.Clone(a)
		}
	}
	return c
}

// Field limits. They keep every record encodable in the compact index and
// every lookup answer well inside one 1200-byte datagram.
const (
	MaxGecosLen   = 255
	MaxShellLen   = 255
	MaxHashLen    = 255
	MaxStorageLen = 255
	MaxAliases    = 32
)

// ErrNotFound is returned (wrapped) when a change names an unknown user.
var ErrNotFound = errors.New("no such user")

// normalizeUser checks every field of u and returns it with the name and
// aliases normalised. Errors name the user.
func normalizeUser(u User) (User, error) {
	name, err := mailbox.NormalizeName(u.Name)
	if err != nil {
		return u, err
	}
	u.Name = name
	fail := func(format string, a ...any) (User, error) {
		return u, fmt.Errorf("user %q: %s", name, fmt.Sprintf(format, a...))
	}
	if u.UID == 0 {
		return fail("uid 0 refused: root never comes from the cluster directory")
	}
	if err := checkField("gecos", u.Gecos, MaxGecosLen, false); err != nil {
		return fail("%v", err)
	}
	if err := checkField("shell", u.Shell, MaxShellLen, true); err != nil {
		return fail("%v", err)
	}
	if err := checkField("storage host", u.Storage, MaxStorageLen, true); err != nil {
		return fail("%v", err)
	}
	if u.Storage == "" {
		return fail("no storage host (place the user first, see Place)")
	}
	if len(u.Hash) > MaxHashLen {
		return fail("password hash longer than %d bytes", MaxHashLen)
	}
	if err := CheckHash(u.Hash); err != nil {
		return fail("%v", err)
	}
	if u.Quota < 0 {
		return fail("negative quota %d", u.Quota)
	}
	if u.State >= numStates {
		return fail("invalid state %d", uint8(u.State))
	}
	if len(u.Aliases) > MaxAliases {
		return fail("%d aliases, more than %d", len(u.Aliases), MaxAliases)
	}
	if len(u.Aliases) > 0 {
		al := make([]string, len(u.Aliases))
		for i, a := range u.Aliases {
			n, err := mailbox.NormalizeName(a)
			if err != nil {
				return fail("alias: %v", err)
			}
			if n == name {
				return fail("alias %q is the user's own name", n)
			}
			for _, prev := range al[:i] {
				if prev == n {
					return fail("alias %q listed twice", n)
				}
			}
			al[i] = n
		}
		u.Aliases = al
	} else {
		u.Aliases = nil
	}
	return u, nil
}

// checkField refuses control characters, ':' (the passwd field separator,
// since NSS prints these fields in passwd lines) and over-long values;
// noSpace also refuses spaces.
func checkField(what, s string, max int, noSpace bool) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, more than %d", what, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("%s contains control character 0x%02x at offset %d", what, c, i)
		case c == ':':
			return fmt.Errorf("%s contains ':' at offset %d", what, i)
		case noSpace && c == ' ':
			return fmt.Errorf("%s contains a space at offset %d", what, i)
		}
	}
	return nil
}
