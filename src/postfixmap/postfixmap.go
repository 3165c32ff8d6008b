// Package postfixmap answers Postfix's table lookups from the cluster's
// directory, so a Postfix MX can validate recipients, resolve aliases and
// route each recipient to its storage host's pdeliveryd by LMTP, with
// passwdd as the only source of truth. It turns pwclient answers into
// socketmap replies (src/socketmap); nssd serves them on every host.
//
// The four maps, named after the main.cf parameters they serve:
//
//	virtual_mailbox  user@domain → OK j/u/a/juan/Maildir/ (the hashed path under data_dir)
//	relay_recipient  user@domain → OK user@domain
//	virtual_alias    alias+ext@domain → OK user+ext@domain (a user's own name: NOTFOUND)
//	transport        user@domain or alias@domain → OK lmtp:inet:[address]:port of the user's storage host
//
// Postfix asks a socketmap only for the whole address, never for the
// address without its extension or for the bare domain (socketmap_table(5):
// no partial keys), so every map takes "+extension" itself, as passwdd
// does: juan+lists@ is juan's.
//
// A disabled user is NOTFOUND in the first three, so Postfix refuses the
// recipient at RCPT (550), as correo's own MX does, rather than accepting
// mail that pdeliveryd would bounce. A user being moved is found: the MX
// accepts, and the old host's 451 makes Postfix retry until the move's
// switch, after which the transport answer is the new host. A passwd that
// does not answer is TEMP, never NOTFOUND: Postfix must defer, not bounce.
package postfixmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"correo/src/cluster"
	"correo/src/logging"
	"correo/src/mailbox"
	"correo/src/pwclient"
	"correo/src/pwproto"
	"correo/src/socketmap"
)

// Map names, as a socketmap: table in main.cf ends
// (socketmap:unix:/run/correo/socketmap.sock:virtual_mailbox).
const (
	MapMailbox   = "virtual_mailbox"
	MapAlias     = "virtual_alias"
	MapRecipient = "relay_recipient"
	MapTransport = "transport"
)

// Directory is what the maps ask: pwclient.Client in production.
type Directory interface {
	LookupAddr(ctx context.Context, addr string) (pwproto.User, error)
}

// Maps answers socketmap lookups. It is a socketmap.Handler.
type Maps struct {
	Dir     Directory
	Profile *cluster.Profile
	Log     *slog.Logger // nil: discard

	tempLog logging.Throttle
}

var _ socketmap.Handler = (*Maps)(nil)

// Lookup implements socketmap.Handler.
func (m *Maps) Lookup(ctx context.Context, name, key string) socketmap.Reply {
	switch name {
	case MapMailbox, MapAlias, MapRecipient, MapTransport:
	default:
		// A typing error in main.cf: PERM makes Postfix defer and log a
		// table error, so nothing bounces while the operator fixes it.
		return socketmap.Reply{Status: socketmap.Perm, Value: fmt.Sprintf("unknown map %q; correo answers %s, %s, %s and %s",
			name, MapMailbox, MapAlias, MapRecipient, MapTransport)}
	}
	a, ok := m.parse(key)
	if !ok {
		// Not an address at a cluster domain that could name a user:
		// Postfix also asks for bare domains (transport) and "@domain"
		// catch-alls, and garbage can name no mailbox.
		return socketmap.Reply{Status: socketmap.NotFound}
	}
	u, err := m.Dir.LookupAddr(ctx, a.local+"@"+a.domain)
	if err != nil {
		if errors.Is(err, pwclient.ErrNotFound) {
			return socketmap.Reply{Status: socketmap.NotFound}
		}
		return m.temp("passwd lookup of %s failed: %v", key, err)
	}
	if u.State == pwproto.StateDisabled && name != MapTransport {
		return socketmap.Reply{Status: socketmap.NotFound}
	}
	switch name {
	case MapMailbox:
		dir, err := m.Profile.LayoutScheme().Dir(u.Name)
		if err != nil {
			return m.temp("user %q from passwd has no mailbox path: %v", u.Name, err)
		}
		return socketmap.Reply{Status: socketmap.OK, Value: dir + "/Maildir/"}
	case MapRecipient:
		return socketmap.Reply{Status: socketmap.OK, Value: u.Name + "@" + a.domain}
	case MapAlias:
		if u.Name == a.local {
			return socketmap.Reply{Status: socketmap.NotFound}
		}
		// Postfix never retries a socketmap without the extension (it
		// makes no partial keys for socketmap tables), so the answer
		// carries it: anita+x@ is juan+x@.
		local := u.Name
		if a.detail != "" {
			local += "+" + a.detail
		}
		return socketmap.Reply{Status: socketmap.OK, Value: local + "@" + a.domain}
	default: // MapTransport
		ap, err := m.Profile.Listen(u.Storage, cluster.SvcLMTP)
		if err != nil {
			// passwd and this host's profile disagree: defer until the
			// profile is updated rather than send mail anywhere else.
			return m.temp("user %s is stored on %q, which has no LMTP service in this host's profile (%s): %v", u.Name, u.Storage, m.Profile.Source, err)
		}
		return socketmap.Reply{Status: socketmap.OK, Value: fmt.Sprintf("lmtp:inet:[%s]:%d", ap.Addr(), ap.Port())}
	}
}

func (m *Maps) temp(format string, args ...any) socketmap.Reply {
	msg := fmt.Sprintf(format, args...)
	if ok, suppressed := m.tempLog.Allow("", time.Now()); ok && m.Log != nil {
		m.Log.Warn("socketmap lookup deferred", "err", msg, "suppressed", suppressed)
	}
	return socketmap.Reply{Status: socketmap.Temp, Value: msg}
}

// addr is a key split for the directory: local part without its
// extension, the extension (after '+'), and the domain, all lower case.
type addr struct {
	local, detail, domain string
}

// parse accepts only what could be a cluster user's address: one '@', a
// cluster domain, a local part that is a valid user name (the one gate,
// mailbox.NormalizeName, which refuses "..", "/", NUL and the rest) with
// an optional "+extension" free of path and control characters.
func (m *Maps) parse(key string) (addr, bool) {
	at := strings.LastIndexByte(key, '@')
	if at <= 0 || strings.IndexByte(key[:at], '@') >= 0 {
		return addr{}, false
	}
	local, domain := key[:at], strings.ToLower(key[at+1:])
	if !m.Profile.IsLocalDomain(domain) {
		return addr{}, false
	}
	var detail string
	if plus := strings.IndexByte(local, '+'); plus >= 0 {
		local, detail = local[:plus], local[plus+1:]
		if detail == "" || strings.Contains(detail, "..") {
			return addr{}, false
		}
		for i := 0; i < len(detail); i++ {
			if c := detail[i]; c <= ' ' || c >= 0x7f || c == '/' || c == '\\' || c == '@' {
				return addr{}, false
			}
		}
	}
	name, err := mailbox.NormalizeName(local)
	if err != nil {
		return addr{}, false
	}
	return addr{local: name, detail: detail, domain: domain}, true
}
