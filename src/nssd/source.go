// Package nssd is the per-host agent behind libnss_correo.so.2: it serves
// the nssproto socket, answers from a bounded cache, and asks the password
// servers through a Source (in production pwclient, with its encryption
// and failover) on a miss. It is the nslcd/sssd model: the module in every
// process stays a thin, dependency-free C client, and everything that
// needs keys, retries or memory lives here, once per host.
package nssd

import (
	"context"
	"errors"
)

// Passwd is a user as the operating system sees it. Mail-only fields
// (storage host, quota, aliases) stay in passwdd: NSS has no place for
// them.
type Passwd struct {
	Name  string
	UID   uint32
	GID   uint32
	Gecos string
	Home  string
	Shell string
}

// Source answers the three questions NSS asks of the user directory.
// Errors other than the sentinels below are treated as ErrUnavailable.
type Source interface {
	LookupName(ctx context.Context, name string) (Passwd, error)
	LookupUID(ctx context.Context, uid uint32) (Passwd, error)
	// Enumerate returns up to max users from cursor (0: the start) and
	// the cursor of the next batch; next == 0 means there are no more.
	Enumerate(ctx context.Context, cursor uint64, max int) (users []Passwd, next uint64, err error)
}

var (
	// ErrNotFound is an authoritative "no such user"; nssd caches it for
	// the negative TTL.
	ErrNotFound = errors.New("nssd: no such user")
	// ErrUnavailable means no password server answered. Never cached: the
	// next lookup asks again.
	ErrUnavailable = errors.New("nssd: password servers unavailable")
	// ErrTryAgain is a transient failure the password server itself
	// reported; it reaches the module as NSS_STATUS_TRYAGAIN.
	ErrTryAgain = errors.New("nssd: password server busy, try again")
)

// Group is one of the cluster's mail groups, from the profile's
// [[cluster.nss.groups]]. Members is empty: users belong to a mail group
// through the gid of their passwd entry, and listing a million members in
// a group entry is neither possible in one answer nor useful.
type Group struct {
	Name    string
	GID     uint32
	Members []string
}
