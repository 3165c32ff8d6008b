// Package pwadmin is passwdd's admin and replication language: JSON
// messages carried over the sealed TCP stream of pwproto (so every admin
// command is authenticated by the cluster key and encrypted), and the
// client correoctl uses. The server side lives in pwserver.
//
// Admin traffic is rare and small next to the UDP query path, so JSON's
// cost buys readability in packet captures of a decrypted session and
// easy evolution (unknown fields are ignored).
package pwadmin

import (
	"encoding/json"

	"correo/src/directory"
)

// UsersChunk encodes users for Request.Chunk.
func UsersChunk(users []directory.User) json.RawMessage {
	b, err := json.Marshal(users)
	if err != nil {
		panic(err) // a User has no field JSON cannot encode
	}
	return b
}

// Stream frame kinds.
const (
	KindRequest  uint8 = 1
	KindResponse uint8 = 2
	KindRepl     uint8 = 3 // primary → secondary replication messages
)

// Operations.
const (
	OpUserAdd      = "user.add"
	OpUserDel      = "user.del"
	OpUserMod      = "user.mod"
	OpUserPasswd   = "user.passwd"
	OpUserShow     = "user.show"
	OpUserList     = "user.list"
	OpAliasAdd     = "alias.add"
	OpAliasDel     = "alias.del"
	OpImportBegin  = "import.begin"
	OpImportChunk  = "import.chunk"
	OpImportCommit = "import.commit"
	OpStats        = "stats"
	OpReplicate    = "replicate"
)

// Request is one admin command.
type Request struct {
	Op string `json:"op"`
	// Name is the user concerned (user.del, user.mod, user.passwd,
	// user.show, alias.add).
	Name string `json:"name,omitempty"`
	// User is the record to add; its Hash is ignored when Password is set.
	User *directory.User `json:"user,omitempty"`
	// Password is a plaintext password for user.add and user.passwd; passwdd
	// hashes it, so the hash is made where it is kept.
	Password string           `json:"password,omitempty"`
	Patch    *directory.Patch `json:"patch,omitempty"`
	Alias    string           `json:"alias,omitempty"`
	// Cursor and Max page user.list.
	Cursor uint64 `json:"cursor,omitempty"`
	Max    int    `json:"max,omitempty"`
	// Chunk is one part of an import: a JSON array of users. The server
	// keeps it as bytes until the commit streams it into the new index, so
	// a million imported users never sit in its heap as Go structures.
	Chunk json.RawMessage `json:"chunk,omitempty"`
	// Replace makes an import the whole new user set instead of adding to
	// the existing one.
	Replace bool `json:"replace,omitempty"`
	// Epoch and Seq are where a replicating secondary stands.
	Epoch uint64 `json:"epoch,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
}

// Error codes, so clients can act on a failure without parsing text.
const (
	CodeNotFound   = "not_found"
	CodeInvalid    = "invalid"
	CodeNotPrimary = "not_primary"
	CodeBusy       = "busy"
	CodeInternal   = "internal"
)

// Response answers one Request.
type Response struct {
	OK    bool   `json:"ok"`
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
	// Primary names the primary when a write reached a secondary.
	Primary string           `json:"primary,omitempty"`
	User    *directory.User  `json:"user,omitempty"`
	Users   []directory.User `json:"users,omitempty"`
	Next    uint64           `json:"next,omitempty"`
	Stats   *Stats           `json:"stats,omitempty"`
	// Count is how many users an import added.
	Count int `json:"count,omitempty"`
}

// Stats is passwdd's state for `correoctl passwd status`.
type Stats struct {
	Host       string            `json:"host"`
	Role       string            `json:"role"`
	Epoch      uint64            `json:"epoch"`
	Seq        uint64            `json:"seq"`
	Users      int               `json:"users"`
	PerStorage map[string]int    `json:"per_storage"`
	Requests   map[string]uint64 `json:"requests"`
	Dropped    map[string]uint64 `json:"dropped"`
	AuthOK     uint64            `json:"auth_ok"`
	AuthDenied uint64            `json:"auth_denied"`
	AuthLocked uint64            `json:"auth_locked"`
	// Logins answered from the verified-credentials cache, logins that
	// needed a password hash check, and the cache's size now.
	AuthCached       uint64 `json:"auth_cached"`
	AuthVerified     uint64 `json:"auth_verified"`
	AuthCacheEntries int    `json:"auth_cache_entries"`
	// VerifyCost is the recent cost of one password hash check, which
	// decides how many logins may wait for one.
	VerifyCost string `json:"verify_cost"`
	LockedKeys int    `json:"locked_keys"`
	// Server-side answer times (datagram read to answer sent).
	SlowestAnswer   string `json:"slowest_answer"`
	AnswersOver1ms  uint64 `json:"answers_over_1ms"`
	AnswersOver10ms uint64 `json:"answers_over_10ms"`
	JournalSize     int64  `json:"journal_bytes"`
	// Replication: for a secondary, whether it follows the primary now and
	// since when; for a primary, the connected secondaries.
	Following   bool     `json:"following,omitempty"`
	Lag         string   `json:"lag,omitempty"`
	Secondaries []string `json:"secondaries,omitempty"`
	UptimeSec   int64    `json:"uptime_s"`
}

// Repl is one replication message from the primary.
type Repl struct {
	Type string `json:"type"` // see the Repl* constants
	// Snapshot header and chunks.
	Epoch uint64           `json:"epoch,omitempty"`
	Seq   uint64           `json:"seq,omitempty"`
	Users []directory.User `json:"users,omitempty"`
	// Entries follow a snapshot or the secondary's own position.
	Entries []directory.Entry `json:"entries,omitempty"`
}

// Replication message types.
const (
	ReplSnapshotBegin = "snapshot.begin"
	ReplSnapshotChunk = "snapshot.chunk"
	ReplSnapshotEnd   = "snapshot.end"
	ReplEntries       = "entries"
	// ReplHeartbeat lets a secondary tell a quiet primary from a dead one.
	ReplHeartbeat = "heartbeat"
)
