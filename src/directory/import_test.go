package directory

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func errStrings(errs []LineError) []string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return s
}

func wantErrs(t *testing.T, errs []LineError, want ...string) {
	t.Helper()
	got := errStrings(errs)
	if len(got) != len(want) {
		t.Fatalf("errors:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("error %d: %q, want it to contain %q", i, got[i], want[i])
		}
	}
}

func TestParsePasswdShadow(t *testing.T) {
	sha := shaCryptVectors[0].want
	passwd := `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment

juan:x:1000:1000:Juan Perez,,,:/home/juan:/bin/bash
Ana:x:1001:100:Ana:/home/ana:/bin/sh
nopw:*:1002:100::/home/nopw:/bin/sh
inline:` + sha + `:1003:100::/h:/bin/sh
bad line
juan:x:1004:100::/h:/bin/sh
dupuid:x:1000:100::/h:/bin/sh
bad/name:x:1005:100::/h:/bin/sh
big:x:99999999999:100::/h:/bin/sh
colon:x:1006:100:a:/h:/bin/sh
noshadow:x:1007:100::/h:/bin/sh
`
	shadow := `root:*:19000:0:99999:7:::
juan:` + sha + `:19000:0:99999:7:::
ana:!:19000::::::
colon:$y$j9T$abc$def:19000::::::
ghost:!:19000::::::
juan:!:19000::::::
`
	users, errs := ParsePasswdShadow(strings.NewReader(passwd), strings.NewReader(shadow), ImportOptions{MinUID: 1000, DefaultStorage: "s1"})
	wantErrs(t, errs,
		`passwd:9: 1 fields, expected 7`,
		`passwd:10: duplicate user "juan" (first at line 5)`,
		`passwd:11: user "dupuid": uid 1000 already used by user "juan" at line 5`,
		`passwd:12: invalid user name "bad/name"`,
		`passwd:13: uid "99999999999" is not a number`,
		`shadow:4: user "colon": unsupported password hash scheme "$y$"`,
		`shadow:6: duplicate user "juan" (first at line 2)`,
		`passwd:15: user "noshadow": password is in shadow but shadow has no line for it`,
	)
	byName := map[string]User{}
	for _, u := range users {
		byName[u.Name] = u
	}
	if len(users) != 6 {
		t.Fatalf("users %v", users)
	}
	if u := byName["juan"]; u.Hash != sha || u.Gecos != "Juan Perez,,," || u.Shell != "/bin/bash" || u.Storage != "s1" || u.GID != 1000 {
		t.Errorf("juan = %+v", u)
	}
	if byName["ana"].Hash != "!" || byName["nopw"].Hash != "*" || byName["inline"].Hash != sha {
		t.Errorf("hashes: %+v", users)
	}
	// Without shadow: "x" means no password login, no error.
	users, errs = ParsePasswdShadow(strings.NewReader("juan:x:1000:1000::/h:/bin/sh\nroot:x:0:0::/:/bin/sh\n"), nil, ImportOptions{DefaultStorage: "s"})
	wantErrs(t, errs, `passwd:2: uid 0 (root) is never imported`)
	if len(users) != 1 || users[0].Hash != "" {
		t.Fatalf("%+v", users)
	}
	if _, err := Build(users); err != nil {
		t.Fatal(err)
	}
}

func TestImportFileNames(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "users.csv")
	os.WriteFile(p, []byte("name,uid\nok,5\nbad,x\n"), 0o600)
	f, _ := os.Open(p)
	defer f.Close()
	_, errs := ParseCSV(f, ImportOptions{})
	wantErrs(t, errs, p+`:3: user "bad": uid "x" is not a number`)
}

func TestParseCSV(t *testing.T) {
	in := `Name,UID,gid,gecos,shell,hash,password,storage,quota,state,aliases
juan,1000,100,"Juan Pérez",/bin/sh,` + shaCryptVectors[0].want + `,,s2,10M,active,jp;juanp
ana,1001,,,,,secreto,,1G,disabled,ana.m anam
beto,1002,,,,,,,,,
juan,1003,,,,,,,,,
carla,1000,,,,,,,,,
dario,1004,,,,,,,,,jp
eva,1005,,,,!,pw,,,,
fede,abc,,,,,,,,,
gabi,1006,,,,,,,-5,,
hugo,1007,,,,,,,,sleeping,
../x,1008,,,,,,,,,
ines,1009,,,,,,,,,
too,many,fields,,,,,,,,,,,
jose,1010,,a:b,,,,,,,
`
	users, errs := ParseCSV(strings.NewReader(in), ImportOptions{DefaultStorage: "s1"})
	wantErrs(t, errs,
		`csv:5: duplicate user "juan" (first at line 2)`,
		`csv:6: user "carla": uid 1000 already used by user "juan" at line 2`,
		`csv:7: user "dario": "jp" is already a name or alias of user "juan" at line 2`,
		`csv:8: user "eva": both a hash and a password given`,
		`csv:9: user "fede": uid "abc" is not a number`,
		`csv:10: user "gabi": quota "-5" is not a byte count`,
		`csv:11: user "hugo": unknown state "sleeping"`,
		`csv:12: invalid user name "../x"`,
		`csv:14: `,
		`csv:15: user "jose": gecos contains ':'`,
	)
	if len(users) != 4 {
		t.Fatalf("users %+v", users)
	}
	j, a, b := users[0], users[1], users[2]
	if j.Gecos != "Juan Pérez" || j.Storage != "s2" || j.Quota != 10<<20 || !slices.Equal(j.Aliases, []string{"jp", "juanp"}) || j.GID != 100 {
		t.Errorf("juan %+v", j)
	}
	if a.State != StateDisabled || a.Quota != 1<<30 || !strings.HasPrefix(a.Hash, "$2a$10$") || !VerifyPassword(a.Hash, "secreto") ||
		a.GID != 1001 || a.Shell != DefaultShell || a.Storage != "s1" || !slices.Equal(a.Aliases, []string{"ana.m", "anam"}) {
		t.Errorf("ana %+v", a)
	}
	if b.Hash != "" || b.State != StateActive {
		t.Errorf("beto %+v", b)
	}
	if _, err := Build(users); err != nil {
		t.Fatal(err)
	}
}

func TestParseCSVHeader(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "csv:1: empty file"},
		{"uid,gecos\n", `csv:1: missing required column "name"`},
		{"name,uid,colour\n", `csv:1: unknown column "colour"`},
		{"name,uid,name\n", `csv:1: column "name" repeated`},
	} {
		_, errs := ParseCSV(strings.NewReader(tt.in), ImportOptions{})
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.in, errs, tt.want)
		}
	}
}

func TestParseLongLine(t *testing.T) {
	in := "juan:x:1000:100::/h:/bin/sh\n" + strings.Repeat("x", 100000) + "\nana:x:1001:100::/h:/bin/sh\n"
	users, errs := ParsePasswdShadow(strings.NewReader(in), nil, ImportOptions{DefaultStorage: "s"})
	wantErrs(t, errs, "passwd:2: line longer than")
	if len(users) != 2 {
		t.Fatalf("%+v", users)
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add([]byte("name,uid,gid,aliases,quota,state,storage\njuan,1000,100,jp;x,5M,active,s\n"))
	f.Add([]byte("name,uid\n\"a\nb\",1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(bytes.ToLower(data), []byte("password")) {
			return // bcrypt per line would make the fuzzer crawl
		}
		users, errs := ParseCSV(bytes.NewReader(data), ImportOptions{DefaultStorage: "s"})
		for _, e := range errs {
			if e.Line < 1 {
				t.Fatalf("line number %d", e.Line)
			}
		}
		if len(errs) == 0 {
			if _, err := Build(users); err != nil {
				t.Fatalf("parsed cleanly but Build refused: %v", err)
			}
		}
	})
}

func FuzzParsePasswdShadow(f *testing.F) {
	f.Add([]byte("juan:x:1000:100:J:/h:/bin/sh\n"), []byte("juan:"+shaCryptVectors[0].want+":1::::::\n"))
	f.Add([]byte("a:*:5:5::/:/x\nb:!:6:6::/:/y\n"), []byte(""))
	f.Fuzz(func(t *testing.T, passwd, shadow []byte) {
		users, errs := ParsePasswdShadow(bytes.NewReader(passwd), bytes.NewReader(shadow), ImportOptions{MinUID: 1, DefaultStorage: "s"})
		if len(errs) == 0 {
			if _, err := Build(users); err != nil {
				t.Fatalf("parsed cleanly but Build refused: %v", err)
			}
		}
	})
}

// FuzzJournalRecord: decoding never panics; what decodes re-encodes to a
// record that decodes the same.
func FuzzJournalRecord(f *testing.F) {
	q := int64(5)
	for _, e := range []Entry{
		{Epoch: 1, Seq: 1, Op: OpAdd, Name: "juan", User: &User{Name: "juan", UID: 5, Storage: "s", Aliases: []string{"jp"}}},
		{Epoch: 1, Seq: 2, Op: OpModify, Name: "juan", Patch: &Patch{Quota: &q}},
		{Epoch: 1, Seq: 3, Op: OpAliasDel, Name: "juan", Alias: "jp"},
	} {
		rec, _ := encodeRecord(e)
		f.Add(rec)
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, '{'})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, n, err := decodeRecord(data)
		if err != nil {
			return
		}
		if n > len(data) {
			t.Fatalf("consumed %d of %d", n, len(data))
		}
		rec, err := encodeRecord(e)
		if err != nil {
			return
		}
		e2, _, err := decodeRecord(rec)
		if err != nil || fmt.Sprint(e2) != fmt.Sprint(e) {
			t.Fatalf("round trip: %v %v", e2, err)
		}
		if ne, err := e.normalize(); err == nil {
			emptyIndex.apply(ne) // must not panic
		}
		scanJournal("journal", data)
	})
}

// FuzzSnapshotDecode: decoding arbitrary bytes never panics, and whatever
// decodes is a valid index that re-encodes identically.
func FuzzSnapshotDecode(f *testing.F) {
	var buf bytes.Buffer
	writeSnapshot(&buf, mustBuild(f, []User{u("juan", 1000, "jp"), {Name: "ana", UID: 7, Storage: "s2", Gecos: "Ana", Quota: -0, State: StateMoving}}), 3, 4)
	f.Add(buf.Bytes())
	buf.Reset()
	writeSnapshot(&buf, emptyIndex, 1, 0)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, h, err := readSnapshot(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := writeSnapshot(&out, ix, h.epoch, h.seq); err != nil {
			t.Fatal(err)
		}
		ix2, _, err := readSnapshot(&out, 0)
		if err != nil || ix2.Len() != ix.Len() {
			t.Fatalf("re-decode: %v", err)
		}
		readSnapshot(io.LimitReader(bytes.NewReader(data), int64(len(data)/2)), 0)
	})
}
