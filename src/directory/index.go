package directory

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"unsafe"

	"correo/src/mailbox"
)

// An Index is an immutable set of users with lookups by name, alias and uid.
// Build makes one; a Store derives new ones from it for each change. An
// *Index never changes once built, so it is safe for any number of
// goroutines without locks.
//
// Layout (for 1 M users in well under 300 MB): the strings of all users live
// in one []byte arena; each user is a fixed 32-byte record holding offsets,
// lengths, numbers and two small interned ids (shell, storage host);
// records are sorted by uid, which gives Page its stable order. Two
// open-addressing hash tables of uint32 record numbers (linear probing, load
// factor at most 0.5, maphash) find a record by name-or-alias and by uid.
// There is no Go string header per user, so the garbage collector has
// almost nothing to scan.
//
// Admin changes do not rebuild the arena: they produce a new Index sharing
// the same compact base plus a small overlay (the changed users and the set
// of base records they supersede). The Store folds the overlay into a new
// base in the background when it grows.
//
// Users returned by lookups are copies the caller may change, but their
// strings point into the arena (no allocation per lookup): holding one keeps
// that Index's arena alive. Use User.Clone to keep a user for long.
type Index struct {
	c  *compact
	ov *overlay // nil: no changes on top of c
	// private marks an Index not yet published (journal replay): changes
	// then mutate its overlay in place instead of copying it.
	private bool
}

// record is one user in the compact base. Its strings are, in order, at
// arena[off:]: name, gecos, hash, then the aliases as (length byte, bytes).
type record struct {
	off      uint32
	uid, gid uint32
	quota    int64
	nameLen  uint8
	state    State
	gecosLen uint8
	hashLen  uint8
	aliasLen uint16 // bytes of the alias block
	shell    uint16 // id in compact.shells
	storage  uint16 // id in compact.storages
}

type compact struct {
	arena    []byte
	recs     []record // sorted by uid
	shells   []string
	storages []string
	perStore []int // users per storage id
	seed     maphash.Seed
	keys     []uint32 // name-or-alias table: record number + 1, 0 = empty
	uids     []uint32 // uid table: record number + 1, 0 = empty
	mask     uint64   // len(keys)-1 == len(uids)-1
}

var emptyCompact = func() *compact {
	c, err := newBuilder(0, 0).finish()
	if err != nil {
		panic(err)
	}
	return c
}()

// Build validates users and makes an immutable Index of them. Names and
// aliases are normalised with mailbox.NormalizeName; every name, alias and
// uid must be unique (an alias may equal no name and no other alias), uid 0
// is refused, and every field is checked (see the Max* limits and
// CheckHash). Errors name the user. The caller's slice is not kept.
func Build(users []User) (*Index, error) {
	size := 0
	for i := range users {
		u := &users[i]
		size += len(u.Name) + len(u.Gecos) + len(u.Hash)
		for _, a := range u.Aliases {
			size += 1 + len(a)
		}
	}
	b := newBuilder(len(users), size)
	for _, u := range users {
		nu, err := normalizeUser(u)
		if err != nil {
			return nil, err
		}
		if err := b.add(nu); err != nil {
			return nil, err
		}
	}
	c, err := b.finish()
	if err != nil {
		return nil, err
	}
	return &Index{c: c}, nil
}

type builder struct {
	arena    []byte
	recs     []record
	shells   interner
	storages interner
}

type interner struct {
	ids   map[string]uint16
	names []string
}

func (in *interner) id(what, s string) (uint16, error) {
	if id, ok := in.ids[s]; ok {
		return id, nil
	}
	if len(in.names) > 0xffff {
		return 0, fmt.Errorf("more than 65536 distinct %s values", what)
	}
	if in.ids == nil {
		in.ids = make(map[string]uint16)
	}
	s = strings.Clone(s)
	id := uint16(len(in.names))
	in.ids[s] = id
	in.names = append(in.names, s)
	return id, nil
}

func newBuilder(users, arenaBytes int) *builder {
	return &builder{arena: make([]byte, 0, arenaBytes), recs: make([]record, 0, users)}
}

// add appends a user already checked by normalizeUser.
func (b *builder) add(u User) error {
	if len(b.arena) > 1<<32-4096 {
		return fmt.Errorf("user %q: index arena over 4 GiB", u.Name)
	}
	shell, err := b.shells.id("shell", u.Shell)
	if err != nil {
		return fmt.Errorf("user %q: %v", u.Name, err)
	}
	storage, err := b.storages.id("storage host", u.Storage)
	if err != nil {
		return fmt.Errorf("user %q: %v", u.Name, err)
	}
	r := record{
		off: uint32(len(b.arena)), uid: u.UID, gid: u.GID, quota: u.Quota,
		nameLen: uint8(len(u.Name)), state: u.State, gecosLen: uint8(len(u.Gecos)),
		hashLen: uint8(len(u.Hash)), shell: shell, storage: storage,
	}
	b.arena = append(b.arena, u.Name...)
	b.arena = append(b.arena, u.Gecos...)
	b.arena = append(b.arena, u.Hash...)
	start := len(b.arena)
	for _, a := range u.Aliases {
		b.arena = append(b.arena, byte(len(a)))
		b.arena = append(b.arena, a...)
	}
	r.aliasLen = uint16(len(b.arena) - start)
	b.recs = append(b.recs, r)
	return nil
}

func tableSize(keys int) int {
	n := 16
	if keys*2 > n {
		n = 1 << bits.Len(uint(keys*2-1))
	}
	return n
}

// finish sorts by uid, checks uniqueness and builds the hash tables.
func (b *builder) finish() (*compact, error) {
	c := &compact{
		arena: b.arena, recs: b.recs, shells: b.shells.names, storages: b.storages.names,
		seed: maphash.MakeSeed(),
	}
	if c.shells == nil {
		c.shells = []string{}
	}
	byUID := func(x, y record) int { return cmp.Compare(x.uid, y.uid) }
	if !slices.IsSortedFunc(c.recs, byUID) {
		slices.SortFunc(c.recs, byUID)
	}
	for i := 1; i < len(c.recs); i++ {
		if c.recs[i].uid == c.recs[i-1].uid {
			a, b := c.name(int32(i-1)), c.name(int32(i))
			if a > b {
				a, b = b, a
			}
			return nil, fmt.Errorf("user %q: uid %d already used by user %q", b, c.recs[i].uid, a)
		}
	}
	nkeys := len(c.recs)
	for i := range c.recs {
		c.eachAlias(int32(i), func(string) bool { nkeys++; return true })
	}
	size := tableSize(max(nkeys, len(c.recs)))
	c.mask = uint64(size - 1)
	c.keys = make([]uint32, size)
	c.uids = make([]uint32, size)
	c.perStore = make([]int, len(c.storages))
	var err error
	for i := range c.recs {
		r := int32(i)
		c.perStore[c.recs[i].storage]++
		// uid table
		for s := hashUID(c.recs[i].uid) & c.mask; ; s = (s + 1) & c.mask {
			if c.uids[s] == 0 {
				c.uids[s] = uint32(r) + 1
				break
			}
		}
		if err = c.insertKey(r, c.name(r), false); err != nil {
			return nil, err
		}
		c.eachAlias(r, func(a string) bool {
			err = c.insertKey(r, a, true)
			return err == nil
		})
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *compact) insertKey(r int32, key string, alias bool) error {
	for s := maphash.String(c.seed, key) & c.mask; ; s = (s + 1) & c.mask {
		v := c.keys[s]
		if v == 0 {
			c.keys[s] = uint32(r) + 1
			return nil
		}
		other := int32(v - 1)
		// A record's own earlier keys are skipped: normalizeUser already
		// refused a name or alias repeated within one user.
		if other != r && c.has(other, key) {
			what, owner := "name", c.name(r)
			if alias {
				what = "alias"
			}
			how := "name of"
			if c.name(other) != key {
				how = "an alias of"
			}
			return fmt.Errorf("user %q: %s %q is already the %s user %q", owner, what, key, how, c.name(other))
		}
	}
}

// hashUID mixes a uid (a multiplicative hash; uids are dense and sequential
// so the high bits of the product are well spread).
func hashUID(uid uint32) uint64 {
	h := uint64(uid) * 0x9E3779B97F4A7C15
	return h ^ h>>29
}

func (c *compact) str(off uint32, n int) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&c.arena[off], n)
}

func (c *compact) name(r int32) string {
	rec := &c.recs[r]
	return c.str(rec.off, int(rec.nameLen))
}

func (c *compact) eachAlias(r int32, f func(string) bool) {
	rec := &c.recs[r]
	p := int(rec.off) + int(rec.nameLen) + int(rec.gecosLen) + int(rec.hashLen)
	end := p + int(rec.aliasLen)
	for p < end {
		n := int(c.arena[p])
		if !f(c.str(uint32(p+1), n)) {
			return
		}
		p += 1 + n
	}
}

// has reports whether key is record r's name or one of its aliases.
func (c *compact) has(r int32, key string) bool {
	if c.name(r) == key {
		return true
	}
	found := false
	c.eachAlias(r, func(a string) bool {
		found = a == key
		return !found
	})
	return found
}

// findKey returns the record whose name or alias is key, or -1.
func (c *compact) findKey(key string) int32 {
	for s := maphash.String(c.seed, key) & c.mask; ; s = (s + 1) & c.mask {
		v := c.keys[s]
		if v == 0 {
			return -1
		}
		if c.has(int32(v-1), key) {
			return int32(v - 1)
		}
	}
}

func (c *compact) findUID(uid uint32) int32 {
	for s := hashUID(uid) & c.mask; ; s = (s + 1) & c.mask {
		v := c.uids[s]
		if v == 0 {
			return -1
		}
		if c.recs[v-1].uid == uid {
			return int32(v - 1)
		}
	}
}

func (c *compact) user(r int32) User {
	rec := &c.recs[r]
	p := rec.off
	u := User{
		Name: c.str(p, int(rec.nameLen)), UID: rec.uid, GID: rec.gid,
		Shell: c.shells[rec.shell], Storage: c.storages[rec.storage],
		Quota: rec.quota, State: rec.state,
	}
	p += uint32(rec.nameLen)
	u.Gecos = c.str(p, int(rec.gecosLen))
	p += uint32(rec.gecosLen)
	u.Hash = c.str(p, int(rec.hashLen))
	if rec.aliasLen > 0 {
		n := 0
		c.eachAlias(r, func(string) bool { n++; return true })
		u.Aliases = make([]string, 0, n)
		c.eachAlias(r, func(a string) bool { u.Aliases = append(u.Aliases, a); return true })
	}
	return u
}

// lowerUID returns the first record with uid >= uid.
func (c *compact) lowerUID(uid uint32) int {
	return sort.Search(len(c.recs), func(i int) bool { return c.recs[i].uid >= uid })
}

// overlay holds the users changed since the compact base was built.
type overlay struct {
	users  []User // sorted by uid; own their strings
	byKey  map[string]int32
	byUID  map[uint32]int32
	hidden map[int32]struct{} // base records superseded (changed or deleted)
}

func newOverlay(users []User, hidden map[int32]struct{}) *overlay {
	slices.SortFunc(users, func(a, b User) int { return cmp.Compare(a.UID, b.UID) })
	ov := &overlay{users: users, hidden: hidden,
		byKey: make(map[string]int32, len(users)), byUID: make(map[uint32]int32, len(users))}
	for i, u := range users {
		ov.byKey[u.Name] = int32(i)
		for _, a := range u.Aliases {
			ov.byKey[a] = int32(i)
		}
		ov.byUID[u.UID] = int32(i)
	}
	return ov
}

func (ov *overlay) size() int {
	if ov == nil {
		return 0
	}
	return len(ov.users) + len(ov.hidden)
}

func copyUser(u User) User {
	if u.Aliases != nil {
		u.Aliases = slices.Clone(u.Aliases)
	}
	return u
}

func (ix *Index) hidden(r int32) bool {
	if ix.ov == nil || len(ix.ov.hidden) == 0 {
		return false
	}
	_, h := ix.ov.hidden[r]
	return h
}

// lookupKey finds the user whose name or alias is key (already normalised).
func (ix *Index) lookupKey(key string) (User, bool) {
	if ix.ov != nil {
		if i, ok := ix.ov.byKey[key]; ok {
			return copyUser(ix.ov.users[i]), true
		}
	}
	r := ix.c.findKey(key)
	if r < 0 || ix.hidden(r) {
		return User{}, false
	}
	return ix.c.user(r), true
}

func normKey(s string) (string, bool) {
	k, err := mailbox.NormalizeName(s)
	return k, err == nil
}

// ByName returns the user whose login name is name (case-insensitive).
func (ix *Index) ByName(name string) (User, bool) {
	k, ok := normKey(name)
	if !ok {
		return User{}, false
	}
	u, ok := ix.lookupKey(k)
	if !ok || u.Name != k {
		return User{}, false
	}
	return u, true
}

// Resolve returns the user a local part delivers to: the user with that
// name, or the user having it as an alias (case-insensitive).
func (ix *Index) Resolve(localPart string) (User, bool) {
	k, ok := normKey(localPart)
	if !ok {
		return User{}, false
	}
	return ix.lookupKey(k)
}

// ByUID returns the user with that uid.
func (ix *Index) ByUID(uid uint32) (User, bool) {
	if ix.ov != nil {
		if i, ok := ix.ov.byUID[uid]; ok {
			return copyUser(ix.ov.users[i]), true
		}
	}
	r := ix.c.findUID(uid)
	if r < 0 || ix.hidden(r) {
		return User{}, false
	}
	return ix.c.user(r), true
}

// Len returns the number of users.
func (ix *Index) Len() int {
	n := len(ix.c.recs)
	if ix.ov != nil {
		n += len(ix.ov.users) - len(ix.ov.hidden)
	}
	return n
}

// CountByStorage returns the number of users on each storage host.
func (ix *Index) CountByStorage() map[string]int {
	m := make(map[string]int, len(ix.c.storages))
	for id, n := range ix.c.perStore {
		if n > 0 {
			m[ix.c.storages[id]] += n
		}
	}
	if ix.ov != nil {
		for r := range ix.ov.hidden {
			s := ix.c.storages[ix.c.recs[r].storage]
			if m[s]--; m[s] == 0 {
				delete(m, s)
			}
		}
		for _, u := range ix.ov.users {
			m[u.Storage]++
		}
	}
	return m
}

// Page enumerates users in uid order, for getpwent-style paging. cursor is
// 0 for the first page, then the next value returned by the previous call;
// next is 0 after the last page. The cursor is a uid (the first uid of the
// next page), so it stays meaningful across a reload or an admin change:
// paging never repeats a user, and misses only users changed meanwhile.
// max < 1 is taken as 1.
func (ix *Index) Page(cursor uint64, max int) (users []User, next uint64) {
	if cursor > 1<<32-1 {
		return nil, 0
	}
	if max < 1 {
		max = 1
	}
	users = make([]User, 0, min(max, ix.Len()))
	next = 0
	ix.each(uint32(cursor), func(u User) bool {
		if len(users) == max {
			next = uint64(u.UID)
			return false
		}
		users = append(users, u)
		return true
	})
	return users, next
}

// All returns every user in uid order (for snapshots).
func (ix *Index) All() []User {
	users := make([]User, 0, ix.Len())
	ix.each(0, func(u User) bool { users = append(users, u); return true })
	return users
}

// each calls f for every user with uid >= from, in uid order, until f
// returns false. Users from the base share the arena's memory.
func (ix *Index) each(from uint32, f func(User) bool) {
	c := ix.c
	i := c.lowerUID(from)
	var ou []User
	j := 0
	if ix.ov != nil {
		ou = ix.ov.users
		j = sort.Search(len(ou), func(k int) bool { return ou[k].UID >= from })
	}
	for i < len(c.recs) || j < len(ou) {
		if i < len(c.recs) && ix.hidden(int32(i)) {
			i++
			continue
		}
		if j < len(ou) && (i >= len(c.recs) || ou[j].UID < c.recs[i].uid) {
			if !f(copyUser(ou[j])) {
				return
			}
			j++
			continue
		}
		if !f(c.user(int32(i))) {
			return
		}
		i++
	}
}

// MaxUID is the highest uid in use (0 when there are no users): new users
// without a uid get the next one.
func (ix *Index) MaxUID() uint32 {
	var top uint32
	c := ix.c
	for i := len(c.recs) - 1; i >= 0; i-- {
		if !ix.hidden(int32(i)) {
			top = c.recs[i].uid
			break
		}
	}
	if ix.ov != nil && len(ix.ov.users) > 0 {
		top = max(top, ix.ov.users[len(ix.ov.users)-1].UID)
	}
	return top
}

// Builder makes an Index from users added one at a time, so a caller that
// streams a million users (a bulk import) never holds them all as a
// []User: its strings and pointers would give the garbage collector a
// large heap to scan while queries are being answered.
type Builder struct {
	b   *builder
	err error
}

// NewBuilder starts an index; the hints size its first allocations.
func NewBuilder(usersHint, arenaHint int) *Builder {
	return &Builder{b: newBuilder(usersHint, arenaHint)}
}

// Add checks and adds one user; it keeps nothing of u's memory. After an
// error the Builder refuses every further call.
func (b *Builder) Add(u User) error {
	if b.err != nil {
		return b.err
	}
	nu, err := normalizeUser(u)
	if err == nil {
		err = b.b.add(nu)
	}
	b.err = err
	return err
}

// Finish checks uniqueness and returns the index.
func (b *Builder) Finish() (*Index, error) {
	if b.err != nil {
		return nil, b.err
	}
	c, err := b.b.finish()
	if err != nil {
		return nil, err
	}
	return &Index{c: c}, nil
}

// Range calls f for every user in uid order until f returns false. The
// User's strings point into the index; Clone one to keep it.
func (ix *Index) Range(f func(User) bool) { ix.each(0, f) }
