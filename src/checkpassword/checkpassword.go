// Package checkpassword answers Dovecot's checkpassword passdb and userdb
// (the qmail interface with Dovecot's extensions) from the cluster's
// directory, so a Dovecot on a storage host serves correo's Maildirs with
// logins checked by passwdd.
//
// Why checkpassword rather than Dovecot's auth protocol on a correo socket
// or Lua: it is Dovecot's one stable, documented interface for an outside
// password check that never sees a hash (passwdd verifies the password
// itself, and its hashes never leave it, which rules out the sql, dict and
// passwd-file drivers), it needs no Dovecot plugin (Lua needs
// dovecot-auth-lua and a socket library) and no reimplementation of
// Dovecot's internal auth-master protocol, which changes between releases.
// Its cost, a process per login that Dovecot's auth cache does not
// absorb, is one passwd datagram and an exec of Dovecot's tiny reply
// helper; a verified login is also answered from passwdd's own
// credentials cache.
//
// The protocol: Dovecot runs the program with the path of its
// checkpassword-reply helper as the last argument and writes
// "user\0password\0..." on descriptor 3. On success the program execs the
// helper with USER, HOME and the userdb fields named in EXTRA in its
// environment; the helper passes them back to Dovecot. Exit 1 means a
// failed login, 3 (Dovecot's extension) no such user, 111 a temporary
// failure. For a userdb lookup Dovecot sets AUTHORIZED=1, sends no
// password, and expects AUTHORIZED=2 back.
package checkpassword

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"correo/src/cluster"
	"correo/src/mailbox"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

// Exit statuses Dovecot tells apart (db-checkpassword.c).
const (
	ExitFailed  = 1   // wrong password, disabled account, not on this host
	ExitNoUser  = 3   // no such user
	ExitTempErr = 111 // try later: passwd silent, mailbox being moved
)

// MaxInput is what checkpassword's interface allows on descriptor 3.
const MaxInput = 512

// Request is what Dovecot asked.
type Request struct {
	User, Password string
	// Authorized is a userdb or credentials lookup (AUTHORIZED=1): no
	// password to check, the user is already authenticated.
	Authorized bool
	RemoteIP   string // TCPREMOTEIP, for passwdd's per-source lock-out
}

// ReadRequest reads descriptor 3's "user\0password\0" and the environment
// Dovecot set.
func ReadRequest(r io.Reader, getenv func(string) string) (Request, error) {
	buf, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return Request{}, fmt.Errorf("reading user and password from descriptor 3: %w", err)
	}
	if len(buf) > MaxInput {
		return Request{}, fmt.Errorf("more than %d bytes on descriptor 3", MaxInput)
	}
	parts := bytes.SplitN(buf, []byte{0}, 3)
	if len(parts) < 2 {
		return Request{}, errors.New("descriptor 3 holds no NUL-terminated user name (is this run by Dovecot's checkpassword passdb?)")
	}
	req := Request{User: string(parts[0]), Password: string(parts[1]), Authorized: getenv("AUTHORIZED") == "1", RemoteIP: getenv("TCPREMOTEIP")}
	if req.User == "" {
		return Request{}, errors.New("empty user name on descriptor 3")
	}
	return req, nil
}

// Directory is what a check asks: pwclient.Client in production.
type Directory interface {
	LookupName(ctx context.Context, name string) (pwproto.User, error)
	Authenticate(ctx context.Context, name, password, clientIP string) (pwproto.User, error)
}

// Result is the outcome: Exit, or on success (Exit 0) the environment for
// Dovecot's reply helper.
type Result struct {
	Exit int
	Env  []string // KEY=value, added to the inherited environment
	Why  string   // for Dovecot's log (stderr), on failure
}

// Checker answers requests for one storage host.
type Checker struct {
	Dir     Directory
	Profile *cluster.Profile
	// Host is this storage host; empty: any. Dovecot can serve only the
	// Maildirs on its own disk, so a user stored elsewhere is refused
	// (as pop3d does), not handed an empty mailbox.
	Host string
	// Stat finds the owner of a data directory (os.Stat by default).
	Stat func(string) (os.FileInfo, error)
}

// Check answers one request.
func (c *Checker) Check(ctx context.Context, req Request) Result {
	name, ok := c.name(req.User)
	if !ok {
		return Result{Exit: ExitNoUser, Why: fmt.Sprintf("%q is not a user name nor an address at a cluster domain", req.User)}
	}
	var u pwproto.User
	var err error
	if req.Authorized {
		u, err = c.Dir.LookupName(ctx, name)
	} else {
		u, err = c.Dir.Authenticate(ctx, name, req.Password, req.RemoteIP)
	}
	switch {
	case err == nil:
	case errors.Is(err, pwclient.ErrNotFound):
		return Result{Exit: ExitNoUser, Why: err.Error()}
	case errors.Is(err, pwclient.ErrDenied), errors.Is(err, pwclient.ErrLockedOut):
		return Result{Exit: ExitFailed, Why: err.Error()}
	default:
		return Result{Exit: ExitTempErr, Why: "passwd: " + err.Error()}
	}
	switch u.State {
	case pwproto.StateDisabled:
		return Result{Exit: ExitFailed, Why: "user " + u.Name + " is disabled"}
	case pwproto.StateMoving:
		return Result{Exit: ExitTempErr, Why: "user " + u.Name + "'s mailbox is being moved; try again in a moment"}
	}
	if c.Host != "" && u.Storage != c.Host {
		return Result{Exit: ExitFailed, Why: fmt.Sprintf("user %s is stored on %s, not on this host (%s): log in there or through correo's mailproxy", u.Name, u.Storage, c.Host)}
	}
	h, err := c.Profile.Host(u.Storage)
	if err != nil || h.Storage == nil || u.Home == "" {
		return Result{Exit: ExitTempErr, Why: fmt.Sprintf("user %s's storage host %q is not a storage host of %s", u.Name, u.Storage, c.Profile.Source)}
	}
	// Dovecot must touch the Maildir as the account pdeliveryd, pop3d
	// and imapd use, the owner of data_dir, or renames of flags and
	// deliveries would fight over permissions.
	stat := c.Stat
	if stat == nil {
		stat = os.Stat
	}
	fi, err := stat(h.Storage.DataDir)
	if err != nil {
		return Result{Exit: ExitTempErr, Why: fmt.Sprintf("data_dir of %s: %v (Dovecot must run on the user's storage host)", u.Storage, err)}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return Result{Exit: ExitTempErr, Why: fmt.Sprintf("data_dir %s belongs to root: give it to the storage account (cluster.run_as or correo-store), as pdeliveryd expects", h.Storage.DataDir)}
	}
	env := []string{
		"USER=" + u.Name,
		"HOME=" + u.Home,
		"userdb_mail=maildir:" + u.Home + "/Maildir",
		"userdb_uid=" + strconv.FormatUint(uint64(st.Uid), 10),
		"userdb_gid=" + strconv.FormatUint(uint64(st.Gid), 10),
		"EXTRA=userdb_mail userdb_uid userdb_gid",
	}
	if req.Authorized {
		env = append(env, "AUTHORIZED=2")
	}
	return Result{Env: env}
}

// name turns what the user typed into a directory name: "juan" or
// "juan@<a cluster domain>", through the one gate for user names.
func (c *Checker) name(s string) (string, bool) {
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		if !c.Profile.IsLocalDomain(s[at+1:]) {
			return "", false
		}
		s = s[:at]
	}
	n, err := mailbox.NormalizeName(s)
	return n, err == nil
}
