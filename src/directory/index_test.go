package directory

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func u(name string, uid uint32, aliases ...string) User {
	return User{Name: name, UID: uid, GID: 100, Storage: "store1", Hash: "!", Aliases: aliases}
}

func TestBuildValidation(t *testing.T) {
	tests := []struct {
		name  string
		users []User
		want  string // substring of the error; "" = ok
	}{
		{"ok", []User{u("juan", 1000, "jp"), u("ana", 1001)}, ""},
		{"empty set", nil, ""},
		{"uid 0", []User{u("root", 0)}, `user "root": uid 0 refused`},
		{"duplicate name case-insensitive", []User{u("juan", 1000), u("Juan", 1001)}, `"juan"`},
		{"duplicate uid", []User{u("juan", 1000), u("ana", 1000)}, `uid 1000 already used`},
		{"alias equals a name", []User{u("juan", 1000, "ana"), u("ana", 1001)}, `"ana"`},
		{"alias equals another alias", []User{u("juan", 1000, "jp"), u("ana", 1001, "JP")}, `alias "jp"`},
		{"alias equals own name", []User{u("juan", 1000, "Juan")}, `own name`},
		{"alias twice", []User{u("juan", 1000, "x", "x")}, `listed twice`},
		{"invalid name", []User{u("../etc", 1000)}, `invalid user name`},
		{"invalid alias", []User{u("juan", 1000, "a/b")}, `user "juan": alias: invalid user name`},
		{"no storage", []User{{Name: "juan", UID: 1000}}, `user "juan": no storage host`},
		{"bad hash", []User{{Name: "juan", UID: 1000, Storage: "s", Hash: "$1$abc$def"}}, `unsupported password hash scheme "$1$"`},
		{"gecos colon", []User{{Name: "juan", UID: 1000, Storage: "s", Gecos: "a:b"}}, `gecos contains ':'`},
		{"shell newline", []User{{Name: "juan", UID: 1000, Storage: "s", Shell: "/bin/sh\n"}}, `control character`},
		{"negative quota", []User{{Name: "juan", UID: 1000, Storage: "s", Quota: -1}}, `negative quota`},
		{"bad state", []User{{Name: "juan", UID: 1000, Storage: "s", State: 9}}, `invalid state`},
		{"too many aliases", []User{{Name: "juan", UID: 1000, Storage: "s", Aliases: strings.Fields(strings.Repeat("a ", 40))}}, `aliases, more than`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.users)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestIndexLookups(t *testing.T) {
	in := []User{
		{Name: "Juan.Perez", UID: 1000, GID: 100, Gecos: "Juan Pérez", Shell: "/bin/sh", Hash: "!", Storage: "s1", Quota: 5, State: StateDisabled, Aliases: []string{"JP", "juanp"}},
		{Name: "ana", UID: 1002, GID: 101, Storage: "s2"},
		{Name: "beto", UID: 1001, GID: 100, Storage: "s1"},
	}
	ix := mustBuild(t, in)
	if ix.Len() != 3 {
		t.Fatalf("Len = %d", ix.Len())
	}
	got, ok := ix.ByName("JUAN.perez")
	if !ok || got.Name != "juan.perez" || got.Gecos != "Juan Pérez" || got.Quota != 5 || got.State != StateDisabled ||
		!slices.Equal(got.Aliases, []string{"jp", "juanp"}) || got.Shell != "/bin/sh" || got.Storage != "s1" {
		t.Fatalf("ByName = %+v, %v", got, ok)
	}
	got.Aliases[0] = "changed"
	if again, _ := ix.ByName("juan.perez"); again.Aliases[0] != "jp" {
		t.Fatal("returned user shares its alias slice with the index")
	}
	if _, ok := ix.ByName("jp"); ok {
		t.Error("ByName found an alias")
	}
	if r, ok := ix.Resolve("Jp"); !ok || r.Name != "juan.perez" {
		t.Errorf("Resolve alias = %+v %v", r, ok)
	}
	if r, ok := ix.Resolve("ana"); !ok || r.UID != 1002 {
		t.Errorf("Resolve name = %+v %v", r, ok)
	}
	if r, ok := ix.ByUID(1001); !ok || r.Name != "beto" {
		t.Errorf("ByUID = %+v %v", r, ok)
	}
	for _, k := range []string{"nobody", "", "../x", "a/b", "x\x00", strings.Repeat("a", 100)} {
		if _, ok := ix.ByName(k); ok {
			t.Errorf("ByName(%q) found", k)
		}
		if _, ok := ix.Resolve(k); ok {
			t.Errorf("Resolve(%q) found", k)
		}
	}
	if _, ok := ix.ByUID(0); ok {
		t.Error("ByUID(0) found")
	}
	if c := ix.CountByStorage(); c["s1"] != 2 || c["s2"] != 1 || len(c) != 2 {
		t.Errorf("CountByStorage = %v", c)
	}
	var names []string
	for cur, pages := uint64(0), 0; ; pages++ {
		us, next := ix.Page(cur, 2)
		for _, u := range us {
			names = append(names, u.Name)
		}
		if next == 0 {
			break
		}
		cur = next
	}
	if strings.Join(names, " ") != "juan.perez beto ana" {
		t.Errorf("Page order %v, want uid order", names)
	}
	if all := ix.All(); len(all) != 3 || all[2].Name != "ana" {
		t.Errorf("All = %v", all)
	}
	if us, next := ix.Page(5000, 10); len(us) != 0 || next != 0 {
		t.Errorf("Page past the end = %v, %d", us, next)
	}
	// The caller's slice is not kept or changed.
	if in[0].Name != "Juan.Perez" {
		t.Error("Build changed its input")
	}
}

// model is a plain map reference implementation for differential tests.
type model map[string]User

func (m model) check(t *testing.T, ix *Index, where string) {
	t.Helper()
	if ix.Len() != len(m) {
		t.Fatalf("%s: Len %d, model %d", where, ix.Len(), len(m))
	}
	all := ix.All()
	if len(all) != len(m) {
		t.Fatalf("%s: All has %d", where, len(all))
	}
	counts := map[string]int{}
	for i, u := range all {
		if i > 0 && all[i-1].UID >= u.UID {
			t.Fatalf("%s: All not in uid order", where)
		}
		mu, ok := m[u.Name]
		if !ok || !sameUser(mu, u) {
			t.Fatalf("%s: %+v, model %+v", where, u, mu)
		}
		if g, ok := ix.ByName(u.Name); !ok || !sameUser(g, u) {
			t.Fatalf("%s: ByName(%s) = %+v", where, u.Name, g)
		}
		if g, ok := ix.ByUID(u.UID); !ok || g.Name != u.Name {
			t.Fatalf("%s: ByUID(%d) = %+v", where, u.UID, g)
		}
		for _, a := range u.Aliases {
			if g, ok := ix.Resolve(a); !ok || g.Name != u.Name {
				t.Fatalf("%s: Resolve(%s) = %+v", where, a, g)
			}
		}
		counts[u.Storage]++
	}
	if c := ix.CountByStorage(); fmt.Sprint(c) != fmt.Sprint(counts) {
		t.Fatalf("%s: CountByStorage %v, want %v", where, c, counts)
	}
}

// randomEntry makes a random change, valid or not.
func randomEntry(r *rand.Rand, m model) Entry {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	pick := func() string {
		if len(names) == 0 || r.IntN(10) == 0 {
			return fmt.Sprintf("u%d", r.IntN(60))
		}
		return names[r.IntN(len(names))]
	}
	name := pick()
	switch r.IntN(7) {
	case 0, 1:
		nu := User{Name: fmt.Sprintf("u%d", r.IntN(60)), UID: uint32(1 + r.IntN(80)), GID: 7,
			Storage: fmt.Sprintf("s%d", r.IntN(3)), Hash: "!"}
		if r.IntN(3) == 0 {
			nu.Aliases = []string{fmt.Sprintf("a%d", r.IntN(40))}
		}
		return Entry{Op: OpAdd, Name: nu.Name, User: &nu}
	case 2:
		return Entry{Op: OpDelete, Name: name}
	case 3:
		p := &Patch{}
		if r.IntN(2) == 0 {
			uid := uint32(1 + r.IntN(80))
			p.UID = &uid
		}
		st := fmt.Sprintf("s%d", r.IntN(3))
		p.Storage = &st
		return Entry{Op: OpModify, Name: name, Patch: p}
	case 4:
		return Entry{Op: OpPasswd, Name: name, Hash: fakeBcrypt(r.IntN(100))}
	case 5:
		return Entry{Op: OpAliasAdd, Name: name, Alias: fmt.Sprintf("a%d", r.IntN(40))}
	default:
		return Entry{Op: OpAliasDel, Name: name, Alias: fmt.Sprintf("a%d", r.IntN(40))}
	}
}

// applyModel applies e to m with the same rules, reporting validity.
func applyModel(m model, e Entry) bool {
	owner := func(k string) (string, bool) {
		for n, u := range m {
			if n == k || slices.Contains(u.Aliases, k) {
				return n, true
			}
		}
		return "", false
	}
	uidOwner := func(uid uint32) (string, bool) {
		for n, u := range m {
			if u.UID == uid {
				return n, true
			}
		}
		return "", false
	}
	old, exists := m[e.Name]
	var nu User
	switch e.Op {
	case OpAdd:
		if _, taken := owner(e.Name); taken {
			return false
		}
		nu = *e.User
	case OpDelete:
		if !exists {
			return false
		}
		delete(m, e.Name)
		return true
	default:
		if !exists {
			return false
		}
		nu = old
		nu.Aliases = slices.Clone(old.Aliases)
		switch e.Op {
		case OpModify:
			if e.Patch.UID != nil {
				nu.UID = *e.Patch.UID
			}
			if e.Patch.Storage != nil {
				nu.Storage = *e.Patch.Storage
			}
		case OpPasswd:
			nu.Hash = e.Hash
		case OpAliasAdd:
			if e.Alias == nu.Name || slices.Contains(nu.Aliases, e.Alias) {
				return false
			}
			nu.Aliases = append(nu.Aliases, e.Alias)
		case OpAliasDel:
			i := slices.Index(nu.Aliases, e.Alias)
			if i < 0 {
				return false
			}
			nu.Aliases = slices.Delete(nu.Aliases, i, i+1)
		}
	}
	for _, k := range append([]string{nu.Name}, nu.Aliases...) {
		if o, ok := owner(k); ok && o != e.Name {
			return false
		}
	}
	if o, ok := uidOwner(nu.UID); ok && o != e.Name {
		return false
	}
	if len(nu.Aliases) == 0 {
		nu.Aliases = nil
	}
	m[e.Name] = nu
	return true
}

func TestIndexApplyDifferential(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		m := model{}
		var base []User
		for i := range 20 {
			nu := User{Name: fmt.Sprintf("u%d", i), UID: uint32(i + 1), GID: 7, Storage: "s0", Hash: "!"}
			base = append(base, nu)
			m[nu.Name] = nu
		}
		ix := mustBuild(t, base)
		for step := range 300 {
			e := randomEntry(r, m)
			ne, err := e.normalize()
			if err != nil {
				t.Fatalf("normalize %v: %v", e, err)
			}
			nix, err := ix.apply(ne)
			ok := applyModel(m, ne)
			if (err == nil) != ok {
				t.Fatalf("seed %d step %d: %v: index err %v, model ok %v", seed, step, e, err, ok)
			}
			if err == nil {
				ix = nix
			}
			m.check(t, ix, fmt.Sprintf("seed %d step %d", seed, step))
			if step%50 == 49 {
				if ix, err = ix.rebase(); err != nil {
					t.Fatal(err)
				}
				m.check(t, ix, "after rebase")
			}
		}
	}
}

func TestApplyErrors(t *testing.T) {
	ix := mustBuild(t, []User{u("juan", 1000, "jp"), u("ana", 1001)})
	uid := uint32(1001)
	zero := uint32(0)
	tests := []struct {
		e    Entry
		want string
	}{
		{Entry{Op: OpDelete, Name: "nobody"}, "no such user"},
		{Entry{Op: OpDelete, Name: "jp"}, "no such user"}, // an alias is not a user
		{Entry{Op: OpAdd, Name: "ana", User: &User{Name: "ana", UID: 5, Storage: "s"}}, `name "ana" is already the name of user "ana"`},
		{Entry{Op: OpAdd, Name: "x", User: &User{Name: "x", UID: 1000, Storage: "s"}}, `uid 1000 already used by user "juan"`},
		{Entry{Op: OpAdd, Name: "x", User: &User{Name: "x", UID: 5, Storage: "s", Aliases: []string{"jp"}}}, `alias "jp" is already an alias of user "juan"`},
		{Entry{Op: OpAdd, Name: "x", User: &User{Name: "y", UID: 5, Storage: "s"}}, "differs"},
		{Entry{Op: OpAdd, Name: "x/y", User: &User{Name: "x/y", UID: 5, Storage: "s"}}, "invalid user name"},
		{Entry{Op: OpModify, Name: "ana", Patch: &Patch{UID: &uid}}, ""},
		{Entry{Op: OpModify, Name: "juan", Patch: &Patch{UID: &uid}}, `uid 1001 already used by user "ana"`},
		{Entry{Op: OpModify, Name: "juan", Patch: &Patch{UID: &zero}}, "uid 0 refused"},
		{Entry{Op: OpModify, Name: "juan"}, "needs a patch"},
		{Entry{Op: OpPasswd, Name: "juan", Hash: "$5$abc$def"}, "unsupported password hash"},
		{Entry{Op: OpAliasAdd, Name: "ana", Alias: "JP"}, `alias "jp" is already an alias of user "juan"`},
		{Entry{Op: OpAliasAdd, Name: "ana", Alias: "juan"}, `is already the name of user "juan"`},
		{Entry{Op: OpAliasAdd, Name: "ana", Alias: "ana"}, "own name"},
		{Entry{Op: OpAliasDel, Name: "ana", Alias: "jp"}, "not one of its aliases"},
		{Entry{Op: 99, Name: "ana"}, "unknown operation"},
	}
	for _, tt := range tests {
		ne, err := tt.e.normalize()
		if err == nil {
			_, err = ix.apply(ne)
		}
		if tt.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tt.e, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.e, err, tt.want)
		}
	}
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkBuild1M builds a 1 M-user index and reports the build time and
// the heap it keeps (HeapInuse after GC, the input slice freed).
func BenchmarkBuild1M(b *testing.B) {
	n := 1000000
	for b.Loop() {
		users := sampleUsers(n, 1)
		before := heapInuse()
		start := time.Now()
		ix, err := Build(users)
		if err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		users = nil
		after := heapInuse()
		b.ReportMetric(el.Seconds(), "build-s")
		b.ReportMetric(float64(after)/(1<<20), "heapMB-with-index")
		b.ReportMetric(float64(int64(after)-int64(before))/(1<<20), "heapMB-delta")
		b.ReportMetric(float64(len(ix.c.arena))/(1<<20), "arenaMB")
		runtime.KeepAlive(ix)
	}
}

func BenchmarkByName(b *testing.B) {
	n := 1000000
	if testing.Short() {
		n = 100000
	}
	users := sampleUsers(n, 1)
	ix := mustBuild(b, users)
	names := make([]string, 4096)
	for i := range names {
		names[i] = users[(i*7919)%n].Name
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, ok := ix.ByName(names[i&4095]); !ok {
			b.Fatal("not found")
		}
		i++
	}
}

func BenchmarkByUID(b *testing.B) {
	ix := mustBuild(b, sampleUsers(1000000, 1))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := ix.ByUID(uint32(10000 + (i*7919)%1000000)); !ok {
			b.Fatal("not found")
		}
		i++
	}
}

func TestMaxUID(t *testing.T) {
	ix, err := Build(nil)
	if err != nil || ix.MaxUID() != 0 {
		t.Fatalf("empty index: %d, %v", ix.MaxUID(), err)
	}
	ix, err = Build([]User{{Name: "a", UID: 10, Storage: "s"}, {Name: "b", UID: 30, Storage: "s"}, {Name: "c", UID: 20, Storage: "s"}})
	if err != nil || ix.MaxUID() != 30 {
		t.Fatalf("MaxUID = %d, %v", ix.MaxUID(), err)
	}
	// Changes live in the overlay until the next rebase.
	ix2, err := ix.apply(Entry{Op: OpAdd, User: &User{Name: "d", UID: 40, Storage: "s"}})
	if err != nil || ix2.MaxUID() != 40 {
		t.Fatalf("after add: %d, %v", ix2.MaxUID(), err)
	}
	ix3, err := ix2.apply(Entry{Op: OpDelete, Name: "d"})
	if err != nil || ix3.MaxUID() != 30 {
		t.Fatalf("after delete of the top uid: %d, %v", ix3.MaxUID(), err)
	}
	ix4, err := ix3.apply(Entry{Op: OpDelete, Name: "b"})
	if err != nil || ix4.MaxUID() != 20 {
		t.Fatalf("after delete of the top base uid: %d, %v", ix4.MaxUID(), err)
	}
}

func TestBuilderAndRange(t *testing.T) {
	b := NewBuilder(0, 0)
	for i, n := range []string{"Carla", "ana", "beto"} {
		if err := b.Add(User{Name: n, UID: uint32(30 - i), Storage: "s1", Aliases: []string{n + "-alias"}}); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ix.Range(func(u User) bool { names = append(names, u.Name); return true })
	if strings.Join(names, ",") != "beto,ana,carla" {
		t.Fatalf("Range order (by uid) = %v", names)
	}
	if u, ok := ix.Resolve("ANA-alias"); !ok || u.Name != "ana" {
		t.Fatalf("alias lookup in a built index: %+v %v", u, ok)
	}
	n := 0
	ix.Range(func(User) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("Range did not stop when told: %d", n)
	}
	// A bad user poisons the builder: nothing half-built escapes.
	bad := NewBuilder(0, 0)
	bad.Add(User{Name: "ok", UID: 1, Storage: "s"})
	if err := bad.Add(User{Name: "../x", UID: 2, Storage: "s"}); err == nil {
		t.Fatal("bad name accepted")
	}
	if err := bad.Add(User{Name: "fine", UID: 3, Storage: "s"}); err == nil {
		t.Fatal("builder accepted users after an error")
	}
	if _, err := bad.Finish(); err == nil {
		t.Fatal("Finish after an error returned an index")
	}
	dup := NewBuilder(0, 0)
	dup.Add(User{Name: "a", UID: 1, Storage: "s"})
	dup.Add(User{Name: "b", UID: 1, Storage: "s"})
	if _, err := dup.Finish(); err == nil || !strings.Contains(err.Error(), "uid 1") {
		t.Fatalf("duplicate uid: %v", err)
	}
}
