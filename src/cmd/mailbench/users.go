package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"correo/src/pwproto"
)

// benchUser is one account mailbench acts as.
type benchUser struct {
	Name     string
	Password string
}

// readUsersFile reads one user a line, "name" or "name:password" (blank
// lines and # comments skipped); a user without a password gets
// defaultPassword.
func readUsersFile(r io.Reader, source, defaultPassword string) ([]benchUser, error) {
	var out []benchUser
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		name, pw, hasPW := strings.Cut(s, ":")
		if !hasPW {
			pw = defaultPassword
		}
		if name == "" || strings.ContainsAny(name, " \t\"\\<>@") {
			return nil, fmt.Errorf("%s:%d: user name %q: want a login name without spaces, quotes, angle brackets or @ (one \"name\" or \"name:password\" a line)", source, line, name)
		}
		out = append(out, benchUser{name, pw})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %v", source, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no users (one \"name\" or \"name:password\" a line)", source)
	}
	return out, nil
}

func loadUsersFile(path, defaultPassword string) ([]benchUser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readUsersFile(f, path, defaultPassword)
}

// enumerator is the part of pwclient that lists users.
type enumerator interface {
	Enumerate(ctx context.Context, cursor uint64, limit int) ([]pwproto.User, uint64, error)
}

// directoryUsers lists up to limit (0: all) active users of the
// directory with passwdd's own enumeration, as getpwent does; passwords
// are not in it (hashes never leave passwdd), so every user gets
// password: a load-test population shares one.
func directoryUsers(ctx context.Context, e enumerator, limit int, password string) ([]benchUser, error) {
	var out []benchUser
	var cursor uint64
	for {
		page, next, err := e.Enumerate(ctx, cursor, 1000)
		if err != nil {
			return nil, fmt.Errorf("listing the directory's users: %w", err)
		}
		for _, u := range page {
			if u.State != pwproto.StateActive {
				continue // cannot log in or receive mail: every operation would fail
			}
			out = append(out, benchUser{u.Name, password})
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the directory has no users: add some (correoctl users import) or give --users-file")
	}
	return out, nil
}
