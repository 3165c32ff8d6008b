package directory

import (
	"fmt"
	"slices"

	"correo/src/mailbox"
)

// Op is the kind of change an Entry makes.
type Op uint8

const (
	OpAdd      Op = iota + 1 // add User
	OpDelete                 // delete Name
	OpModify                 // apply Patch to Name
	OpPasswd                 // set Name's password hash to Hash
	OpAliasAdd               // give Name the alias Alias
	OpAliasDel               // take the alias Alias from Name
)

var opNames = map[Op]string{OpAdd: "add", OpDelete: "delete", OpModify: "modify",
	OpPasswd: "passwd", OpAliasAdd: "alias-add", OpAliasDel: "alias-del"}

func (o Op) String() string {
	if n, ok := opNames[o]; ok {
		return n
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// MarshalText makes an Op appear as its name in JSON.
func (o Op) MarshalText() ([]byte, error) {
	if n, ok := opNames[o]; ok {
		return []byte(n), nil
	}
	return nil, fmt.Errorf("invalid op %d", uint8(o))
}

// UnmarshalText is the inverse of MarshalText.
func (o *Op) UnmarshalText(b []byte) error {
	for op, n := range opNames {
		if n == string(b) {
			*o = op
			return nil
		}
	}
	return fmt.Errorf("unknown op %q", b)
}

// Patch is the set of fields an OpModify changes; nil fields are left as
// they are. The name (the key) and the password and aliases (their own ops)
// are not patched.
type Patch struct {
	UID     *uint32 `json:"uid,omitempty"`
	GID     *uint32 `json:"gid,omitempty"`
	Gecos   *string `json:"gecos,omitempty"`
	Shell   *string `json:"shell,omitempty"`
	Storage *string `json:"storage,omitempty"`
	Quota   *int64  `json:"quota,omitempty"`
	State   *State  `json:"state,omitempty"`
}

// Entry is one change to the user set, as journaled and replicated.
type Entry struct {
	Epoch uint64 `json:"epoch"` // changes when a bulk import replaces the whole set
	Seq   uint64 `json:"seq"`   // 1, 2, 3... within an epoch; strictly increasing
	Op    Op     `json:"op"`
	Name  string `json:"name"`            // the user concerned
	User  *User  `json:"user,omitempty"`  // OpAdd
	Patch *Patch `json:"patch,omitempty"` // OpModify
	Hash  string `json:"hash,omitempty"`  // OpPasswd
	Alias string `json:"alias,omitempty"` // OpAliasAdd, OpAliasDel
}

// String describes the entry for logs without the password hash.
func (e Entry) String() string {
	s := fmt.Sprintf("%d/%d %s %s", e.Epoch, e.Seq, e.Op, e.Name)
	if e.Alias != "" {
		s += " " + e.Alias
	}
	return s
}

// normalize checks the entry's shape and normalises its names; the user
// fields themselves are checked by apply.
func (e Entry) normalize() (Entry, error) {
	if e.Op == OpAdd && e.User != nil && e.Name == "" {
		e.Name = e.User.Name
	}
	name, err := mailbox.NormalizeName(e.Name)
	if err != nil {
		return e, fmt.Errorf("%s: %w", e.Op, err)
	}
	e.Name = name
	fail := func(f string, a ...any) (Entry, error) {
		return e, fmt.Errorf("%s %q: %s", e.Op, name, fmt.Sprintf(f, a...))
	}
	has := func(user, patch, hash, alias bool) bool {
		return (e.User != nil) == user && (e.Patch != nil) == patch && (e.Hash != "") == hash && (e.Alias != "") == alias
	}
	switch e.Op {
	case OpAdd:
		if !has(true, false, false, false) {
			return fail("needs the user record and nothing else")
		}
		u := *e.User
		u.Aliases = slices.Clone(u.Aliases)
		un, err := mailbox.NormalizeName(u.Name)
		if err != nil || un != name {
			return fail("record's name %q differs from the entry's", u.Name)
		}
		e.User = &u
	case OpDelete:
		if !has(false, false, false, false) {
			return fail("takes only a name")
		}
	case OpModify:
		if !has(false, true, false, false) {
			return fail("needs a patch and nothing else")
		}
		p := *e.Patch
		e.Patch = &p
	case OpPasswd:
		if e.User != nil || e.Patch != nil || e.Alias != "" {
			return fail("takes only a name and a hash")
		}
	case OpAliasAdd, OpAliasDel:
		if !has(false, false, false, true) {
			return fail("needs an alias and nothing else")
		}
		a, err := mailbox.NormalizeName(e.Alias)
		if err != nil {
			return fail("alias: %v", err)
		}
		e.Alias = a
	default:
		return fail("unknown operation")
	}
	return e, nil
}

// apply returns the index with e applied, or an error (and no change) when
// e is invalid against ix. e must come from normalize.
func (ix *Index) apply(e Entry) (*Index, error) {
	var old User
	var oldOK bool
	if e.Op != OpAdd {
		old, oldOK = ix.lookupKey(e.Name)
		if !oldOK || old.Name != e.Name {
			return nil, fmt.Errorf("%s %q: %w", e.Op, e.Name, ErrNotFound)
		}
	}
	var nu User
	switch e.Op {
	case OpAdd:
		nu = *e.User
	case OpDelete:
		return ix.with(old.Name, nil), nil
	case OpModify:
		nu = copyUser(old)
		p := e.Patch
		if p.UID != nil {
			nu.UID = *p.UID
		}
		if p.GID != nil {
			nu.GID = *p.GID
		}
		if p.Gecos != nil {
			nu.Gecos = *p.Gecos
		}
		if p.Shell != nil {
			nu.Shell = *p.Shell
		}
		if p.Storage != nil {
			nu.Storage = *p.Storage
		}
		if p.Quota != nil {
			nu.Quota = *p.Quota
		}
		if p.State != nil {
			nu.State = *p.State
		}
	case OpPasswd:
		nu = copyUser(old)
		nu.Hash = e.Hash
	case OpAliasAdd:
		nu = copyUser(old)
		nu.Aliases = append(nu.Aliases, e.Alias)
	case OpAliasDel:
		nu = copyUser(old)
		i := slices.Index(nu.Aliases, e.Alias)
		if i < 0 {
			return nil, fmt.Errorf("%s %q: %q is not one of its aliases", e.Op, e.Name, e.Alias)
		}
		nu.Aliases = slices.Delete(nu.Aliases, i, i+1)
	}
	nu, err := normalizeUser(nu)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Op, err)
	}
	// Every key and the uid must be free or already this user's.
	for _, k := range append([]string{nu.Name}, nu.Aliases...) {
		if o, ok := ix.lookupKey(k); ok && (o.Name != e.Name || !oldOK) {
			how := "an alias of"
			if o.Name == k {
				how = "the name of"
			}
			what := "alias"
			if k == nu.Name {
				what = "name"
			}
			return nil, fmt.Errorf("%s %q: %s %q is already %s user %q", e.Op, e.Name, what, k, how, o.Name)
		}
	}
	if o, ok := ix.ByUID(nu.UID); ok && (o.Name != e.Name || !oldOK) {
		return nil, fmt.Errorf("%s %q: uid %d already used by user %q", e.Op, e.Name, nu.UID, o.Name)
	}
	if !oldOK {
		return ix.with("", &nu), nil
	}
	return ix.with(old.Name, &nu), nil
}

// with returns a new Index where the user named remove (if any) is gone and
// add (if not nil) is present. Only the overlay is copied.
func (ix *Index) with(remove string, add *User) *Index {
	if ix.private {
		ix.withInPlace(remove, add)
		return ix
	}
	var users []User
	hidden := map[int32]struct{}{}
	if ix.ov != nil {
		users = make([]User, 0, len(ix.ov.users)+1)
		for _, u := range ix.ov.users {
			if u.Name != remove {
				users = append(users, u)
			}
		}
		for r := range ix.ov.hidden {
			hidden[r] = struct{}{}
		}
	}
	if remove != "" {
		if r := ix.c.findKey(remove); r >= 0 && ix.c.name(r) == remove {
			hidden[r] = struct{}{}
		}
	}
	if add != nil {
		users = append(users, add.Clone())
	}
	if len(users) == 0 && len(hidden) == 0 {
		return &Index{c: ix.c}
	}
	return &Index{c: ix.c, ov: newOverlay(users, hidden)}
}

// withInPlace is with for a private Index. Its overlay's users are then
// unsorted and may hold dead slots (Name ""), which seal() cleans up; only
// lookups are used meanwhile.
func (ix *Index) withInPlace(remove string, add *User) {
	ov := ix.ov
	if ov == nil {
		ov = &overlay{byKey: map[string]int32{}, byUID: map[uint32]int32{}, hidden: map[int32]struct{}{}}
		ix.ov = ov
	}
	if remove != "" {
		if i, ok := ov.byKey[remove]; ok && ov.users[i].Name == remove {
			u := &ov.users[i]
			delete(ov.byKey, u.Name)
			for _, a := range u.Aliases {
				delete(ov.byKey, a)
			}
			delete(ov.byUID, u.UID)
			*u = User{}
		}
		if r := ix.c.findKey(remove); r >= 0 && ix.c.name(r) == remove {
			ov.hidden[r] = struct{}{}
		}
	}
	if add != nil {
		i := int32(len(ov.users))
		ov.users = append(ov.users, add.Clone())
		ov.byKey[add.Name] = i
		for _, a := range add.Aliases {
			ov.byKey[a] = i
		}
		ov.byUID[add.UID] = i
	}
}

// seal ends the private phase: the overlay is rebuilt sorted and clean.
func (ix *Index) seal() *Index {
	if !ix.private {
		return ix
	}
	ix.private = false
	if ix.ov == nil {
		return ix
	}
	live := make([]User, 0, len(ix.ov.users))
	for _, u := range ix.ov.users {
		if u.Name != "" {
			live = append(live, u)
		}
	}
	if len(live) == 0 && len(ix.ov.hidden) == 0 {
		return &Index{c: ix.c}
	}
	return &Index{c: ix.c, ov: newOverlay(live, ix.ov.hidden)}
}

// mutableCopy returns a private Index with ix's content.
func (ix *Index) mutableCopy() *Index {
	n := &Index{c: ix.c, private: true}
	if ix.ov != nil {
		users := append([]User(nil), ix.ov.users...)
		hidden := make(map[int32]struct{}, len(ix.ov.hidden))
		for r := range ix.ov.hidden {
			hidden[r] = struct{}{}
		}
		n.ov = newOverlay(users, hidden)
	}
	return n
}

// rebase folds the overlay into a new compact base (the users are already
// valid, so no per-user checks are repeated).
func (ix *Index) rebase() (*Index, error) {
	if ix.ov == nil {
		return ix, nil
	}
	b := newBuilder(ix.Len(), len(ix.c.arena)+len(ix.c.arena)/64)
	var err error
	ix.each(0, func(u User) bool {
		err = b.add(u)
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	c, err := b.finish()
	if err != nil {
		return nil, err
	}
	return &Index{c: c}, nil
}
