package directory

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"correo/src/mailbox"
)

// ImportOptions tunes ParsePasswdShadow and ParseCSV.
type ImportOptions struct {
	// MinUID skips accounts with a smaller uid (system users) without an
	// error; uid 0 is always refused.
	MinUID uint32
	// DefaultStorage is the storage host of users whose input names none;
	// "" leaves it empty for AssignStorage.
	DefaultStorage string
	// BcryptCost hashes plaintext passwords (CSV's password column);
	// zero means DefaultBcryptCost.
	BcryptCost int
}

// DefaultShell is the shell of CSV users without one: mail accounts do not
// log in to a shell.
const DefaultShell = "/usr/sbin/nologin"

// LineError is one bad input line.
type LineError struct {
	File   string
	Line   int
	Reason string
}

func (e LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason) }

// fileName is the reader's name if it has one (an *os.File), else def.
func fileName(r io.Reader, def string) string {
	if n, ok := r.(interface{ Name() string }); ok && n.Name() != "" {
		return n.Name()
	}
	return def
}

const maxImportLine = 64 << 10

// lines calls f with each line (without the newline) and its number; a line
// longer than maxImportLine is reported and skipped.
func lines(r io.Reader, file string, errs *[]LineError, f func(n int, line string)) {
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			*errs = append(*errs, LineError{file, n, fmt.Sprintf("line longer than %d bytes", maxImportLine)})
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				*errs = append(*errs, LineError{file, n, "read error: " + err.Error()})
				return
			}
			if err == io.EOF {
				return
			}
			continue
		}
		if len(line) > 0 {
			s := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
			f(n, s)
		}
		if err != nil {
			if err != io.EOF {
				*errs = append(*errs, LineError{file, n, "read error: " + err.Error()})
			}
			return
		}
	}
}

func parseID(what, s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a number from 0 to 4294967295", what, s)
	}
	return uint32(v), nil
}

// ParsePasswdShadow reads passwd(5) lines (name:pw:uid:gid:gecos:home:shell)
// and, if shadow is not nil, shadow(5) lines (name:hash:...). The hash comes
// from shadow when shadow is given, else from passwd's second field unless
// that is "x" (then the user has no password login). Users below
// opts.MinUID are skipped; blank lines and '#' comments are ignored. Every
// bad line is reported; the users of good lines are returned either way
// (an all-or-nothing import refuses when there is any error).
func ParsePasswdShadow(passwd, shadow io.Reader, opts ImportOptions) ([]User, []LineError) {
	var errs []LineError
	pfile := fileName(passwd, "passwd")
	type pline struct {
		line int
		pw   string
	}
	var users []User
	var info []pline
	byName := map[string]int{}
	byUID := map[uint32]int{}
	lines(passwd, pfile, &errs, func(n int, line string) {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			return
		}
		bad := func(f string, a ...any) { errs = append(errs, LineError{pfile, n, fmt.Sprintf(f, a...)}) }
		fs := strings.Split(line, ":")
		if len(fs) != 7 {
			bad("%d fields, expected 7 (name:password:uid:gid:gecos:home:shell)", len(fs))
			return
		}
		uid, err := parseID("uid", fs[2])
		if err != nil {
			bad("%v", err)
			return
		}
		gid, err := parseID("gid", fs[3])
		if err != nil {
			bad("%v", err)
			return
		}
		if uid < opts.MinUID {
			return
		}
		if uid == 0 {
			bad("uid 0 (%s) is never imported: no root through the cluster directory", fs[0])
			return
		}
		name, err := mailbox.NormalizeName(fs[0])
		if err != nil {
			bad("%v", err)
			return
		}
		if first, dup := byName[name]; dup {
			bad("duplicate user %q (first at line %d)", name, info[first].line)
			return
		}
		if first, dup := byUID[uid]; dup {
			bad("user %q: uid %d already used by user %q at line %d", name, uid, users[first].Name, info[first].line)
			return
		}
		u := User{Name: name, UID: uid, GID: gid, Gecos: fs[4], Shell: fs[6], Storage: opts.DefaultStorage}
		if fs[1] != "x" {
			u.Hash = fs[1]
		}
		if err := checkImported(u); err != nil {
			bad("%v", err)
			return
		}
		byName[name] = len(users)
		byUID[uid] = len(users)
		users = append(users, u)
		info = append(info, pline{n, fs[1]})
	})
	if shadow == nil {
		return users, errs
	}
	sfile := fileName(shadow, "shadow")
	seen := map[string]int{}
	lines(shadow, sfile, &errs, func(n int, line string) {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			return
		}
		bad := func(f string, a ...any) { errs = append(errs, LineError{sfile, n, fmt.Sprintf(f, a...)}) }
		fs := strings.Split(line, ":")
		if len(fs) < 2 {
			bad("no password field (expected name:hash:...)")
			return
		}
		name, err := mailbox.NormalizeName(fs[0])
		if err != nil {
			bad("%v", err)
			return
		}
		if first, dup := seen[name]; dup {
			bad("duplicate user %q (first at line %d)", name, first)
			return
		}
		seen[name] = n
		i, ok := byName[name]
		if !ok {
			return // a system user skipped in passwd, or one not imported
		}
		if err := CheckHash(fs[1]); err != nil {
			bad("user %q: %v", name, err)
			return
		}
		users[i].Hash = fs[1]
	})
	for i, u := range users {
		if _, ok := seen[u.Name]; !ok && info[i].pw == "x" {
			errs = append(errs, LineError{pfile, info[i].line, fmt.Sprintf("user %q: password is in shadow but %s has no line for it", u.Name, sfile)})
		}
	}
	return users, errs
}

// checkImported runs the record checks that do not need a storage host.
func checkImported(u User) error {
	if u.Storage == "" {
		u.Storage = "placeholder"
	}
	_, err := normalizeUser(u)
	return err
}

var csvColumns = map[string]bool{"name": true, "uid": true, "gid": true, "gecos": true, "shell": true,
	"hash": true, "password": true, "storage": true, "quota": true, "state": true, "aliases": true}

// ParseCSV reads users from CSV with a header row naming the columns:
// name and uid are required; gid (default: the uid), gecos, shell (default
// DefaultShell), hash, password, storage (default opts.DefaultStorage),
// quota (bytes, or with a K, M, G or T suffix, powers of 1024), state
// (active, disabled, moving) and aliases (separated by ';' or spaces) are
// optional. password is plaintext hashed here with bcrypt, in parallel over
// GOMAXPROCS — at ~50-100 ms per password per core, 10 000 passwords take
// minutes; prefer hashes. hash and password on the same line is an error.
// Duplicate names, aliases and uids are errors naming both lines.
func ParseCSV(r io.Reader, opts ImportOptions) ([]User, []LineError) {
	file := fileName(r, "csv")
	var errs []LineError
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		if err == io.EOF {
			err = errors.New("empty file: expected a header row")
		}
		return nil, []LineError{{file, 1, err.Error()}}
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		switch {
		case !csvColumns[h]:
			errs = append(errs, LineError{file, 1, fmt.Sprintf("unknown column %q", h)})
		case col[h] != 0:
			errs = append(errs, LineError{file, 1, fmt.Sprintf("column %q repeated", h)})
		default:
			col[h] = i + 1
		}
	}
	for _, need := range []string{"name", "uid"} {
		if col[need] == 0 {
			errs = append(errs, LineError{file, 1, fmt.Sprintf("missing required column %q", need)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	type pending struct {
		user int
		line int
		pw   string
	}
	var users []User
	var userLine []int
	var toHash []pending
	owner := map[string]int{} // name or alias -> index in users
	byUID := map[uint32]int{}
	lastLine := 1
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// FieldPos is only valid after a successful Read.
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line := pe.Line
				if pe.StartLine != 0 {
					line = pe.StartLine
				}
				errs = append(errs, LineError{file, line, pe.Err.Error()})
				continue
			}
			errs = append(errs, LineError{file, lastLine + 1, "read error: " + err.Error()})
			break
		}
		line, _ := cr.FieldPos(0)
		lastLine = line
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		bad := func(f string, a ...any) { errs = append(errs, LineError{file, line, fmt.Sprintf(f, a...)}) }
		if len(rec) != len(header) {
			bad("%d fields, the header has %d", len(rec), len(header))
			continue
		}
		get := func(c string) string {
			if i := col[c]; i != 0 {
				return strings.TrimSpace(rec[i-1])
			}
			return ""
		}
		u, pw, err := csvUser(get, opts)
		if err != nil {
			bad("%v", err)
			continue
		}
		conflict := false
		for _, k := range append([]string{u.Name}, u.Aliases...) {
			if o, dup := owner[k]; dup {
				if k == u.Name && users[o].Name == k {
					bad("duplicate user %q (first at line %d)", k, userLine[o])
				} else {
					bad("user %q: %q is already a name or alias of user %q at line %d", u.Name, k, users[o].Name, userLine[o])
				}
				conflict = true
				break
			}
		}
		if !conflict {
			if o, dup := byUID[u.UID]; dup {
				bad("user %q: uid %d already used by user %q at line %d", u.Name, u.UID, users[o].Name, userLine[o])
				conflict = true
			}
		}
		if conflict {
			continue
		}
		i := len(users)
		for _, k := range append([]string{u.Name}, u.Aliases...) {
			owner[k] = i
		}
		byUID[u.UID] = i
		users = append(users, u)
		userLine = append(userLine, line)
		if pw != "" {
			toHash = append(toHash, pending{i, line, pw})
		}
	}
	// Hash plaintext passwords in parallel.
	if len(toHash) > 0 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		work := make(chan pending)
		for range min(runtime.GOMAXPROCS(0), len(toHash)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range work {
					h, err := HashPassword(p.pw, cmp.Or(opts.BcryptCost, DefaultBcryptCost))
					mu.Lock()
					if err != nil {
						errs = append(errs, LineError{file, p.line, fmt.Sprintf("user %q: %v", users[p.user].Name, err)})
					} else {
						users[p.user].Hash = h
					}
					mu.Unlock()
				}
			}()
		}
		for _, p := range toHash {
			work <- p
		}
		close(work)
		wg.Wait()
		sortLineErrors(errs)
	}
	return users, errs
}

func sortLineErrors(errs []LineError) {
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0 && errs[j].Line < errs[j-1].Line; j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
}

func csvUser(get func(string) string, opts ImportOptions) (User, string, error) {
	var u User
	name, err := mailbox.NormalizeName(get("name"))
	if err != nil {
		return u, "", err
	}
	u.Name = name
	fail := func(f string, a ...any) (User, string, error) {
		return u, "", fmt.Errorf("user %q: %s", name, fmt.Sprintf(f, a...))
	}
	if u.UID, err = parseID("uid", get("uid")); err != nil {
		return fail("%v", err)
	}
	u.GID = u.UID
	if g := get("gid"); g != "" {
		if u.GID, err = parseID("gid", g); err != nil {
			return fail("%v", err)
		}
	}
	if u.UID < opts.MinUID {
		return fail("uid %d is below the minimum %d", u.UID, opts.MinUID)
	}
	u.Gecos = get("gecos")
	u.Shell = get("shell")
	if u.Shell == "" {
		u.Shell = DefaultShell
	}
	u.Hash = get("hash")
	pw := get("password")
	if pw != "" && u.Hash != "" {
		return fail("both a hash and a password given")
	}
	if pw != "" && len(pw) > MaxPasswordLen {
		return fail("password is %d bytes, longer than bcrypt's limit of %d", len(pw), MaxPasswordLen)
	}
	u.Storage = get("storage")
	if u.Storage == "" {
		u.Storage = opts.DefaultStorage
	}
	if q := get("quota"); q != "" {
		if u.Quota, err = parseQuota(q); err != nil {
			return fail("%v", err)
		}
	}
	if s := get("state"); s != "" {
		if u.State, err = ParseState(s); err != nil {
			return fail("%v", err)
		}
	}
	if a := get("aliases"); a != "" {
		u.Aliases = strings.FieldsFunc(a, func(r rune) bool { return r == ';' || r == ' ' || r == '\t' })
	}
	if err := checkImported(u); err != nil {
		return u, "", err
	}
	nu := u
	nu.Storage = "placeholder"
	nu, _ = normalizeUser(nu)
	u.Aliases = nu.Aliases
	return u, pw, nil
}

// parseQuota parses bytes with an optional K, M, G or T (1024-based) suffix.
func parseQuota(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	case "T":
		mult = 1 << 40
	}
	num := s
	if mult != 1 {
		num = s[:len(s)-1]
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("quota %q is not a byte count (digits with an optional K, M, G or T suffix)", s)
	}
	return v * mult, nil
}
