package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
)

// adminFlags are the flags of every command that talks to passwdd.
type adminFlags struct {
	fs      *flag.FlagSet
	profile *string
	server  *string
}

func newAdminFlags(name string) *adminFlags {
	fs := newFlags(name)
	return &adminFlags{fs: fs,
		profile: fs.String("profile", "", "host profile (default: the embedded hosts/dev.toml)"),
		server:  fs.String("server", "", "passwd server host name (default: the primary)")}
}

// connect opens an admin session with the primary (or -server) using the
// profile's cluster key.
func (a *adminFlags) connect() (*pwadmin.Client, *cluster.Profile, error) {
	p, err := cluster.LoadFlag(*a.profile, cluster.Options{})
	if err != nil {
		return nil, nil, err
	}
	return a.connectTo(p, *a.server)
}

func (a *adminFlags) connectTo(p *cluster.Profile, host string) (*pwadmin.Client, *cluster.Profile, error) {
	ring, err := keyfile.Load(p.Cluster.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	if host == "" {
		prim, _ := p.PasswdServers()
		host = prim.Name
	}
	addr, err := p.Listen(host, cluster.SvcPasswdAdmin)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pwadmin.Dial(ctx, addr.String(), ring)
	return c, p, err
}

// parseArgs parses flags and requires exactly n positional arguments (any
// number when n < 0).
func parseArgs(fs *flag.FlagSet, args []string, n int, what string) ([]string, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	// Allow flags after the positional arguments too: `users del juan -profile x`.
	var pos []string
	rest := fs.Args()
	for len(rest) > 0 {
		if strings.HasPrefix(rest[0], "-") {
			if err := parseFlags(fs, rest); err != nil {
				return nil, err
			}
			rest = fs.Args()
			continue
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	if n >= 0 && len(pos) != n {
		return nil, fmt.Errorf("%w: expected %s", errUsage, what)
	}
	return pos, nil
}

func do(c *pwadmin.Client, req pwadmin.Request) (pwadmin.Response, error) {
	resp, err := c.Do(req)
	var e *pwadmin.Error
	if errors.As(err, &e) && e.Code == pwadmin.CodeNotPrimary {
		return resp, fmt.Errorf("%s (use -server to choose the primary)", e.Msg)
	}
	return resp, err
}

// readPassword takes a password from stdin (first line), so it never
// appears in a process list or shell history.
func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("reading the password from stdin: none given")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

var stdin io.Reader = os.Stdin

func runUsersAdd(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("users add")
	uid := a.fs.Uint("uid", 0, "uid (default: the next free one from 10000)")
	gid := a.fs.Uint("gid", 0, "gid (default: the cluster's mail group)")
	gecos := a.fs.String("gecos", "", "full name")
	shell := a.fs.String("shell", directory.DefaultShell, "login shell")
	storage := a.fs.String("storage", "", "storage host (default: by the profile's placement policy)")
	quota := a.fs.Int64("quota", 0, "mailbox quota in bytes (0: none)")
	aliases := a.fs.String("aliases", "", "comma-separated other local parts")
	pwStdin := a.fs.Bool("password-stdin", false, "read the password from the first line of stdin")
	pos, err := parseArgs(a.fs, args, 1, "one user name")
	if err != nil {
		return err
	}
	u := directory.User{Name: pos[0], UID: uint32(*uid), GID: uint32(*gid), Gecos: *gecos, Shell: *shell,
		Storage: *storage, Quota: *quota}
	if *aliases != "" {
		u.Aliases = strings.Split(*aliases, ",")
	}
	req := pwadmin.Request{Op: pwadmin.OpUserAdd, User: &u}
	if *pwStdin {
		if req.Password, err = readPassword(stdin); err != nil {
			return err
		}
	}
	c, _, err := a.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := do(c, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "added %s (uid %d) on %s\n", resp.User.Name, resp.User.UID, resp.User.Storage)
	return nil
}

func runUsersDel(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("users del")
	pos, err := parseArgs(a.fs, args, 1, "one user name")
	if err != nil {
		return err
	}
	return simple(a, pwadmin.Request{Op: pwadmin.OpUserDel, Name: pos[0]}, stdout, "deleted "+pos[0])
}

func simple(a *adminFlags, req pwadmin.Request, stdout io.Writer, done string) error {
	c, _, err := a.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := do(c, req); err != nil {
		return err
	}
	fmt.Fprintln(stdout, done)
	return nil
}

func runUsersMod(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("users mod")
	var p directory.Patch
	set := map[string]string{}
	for _, f := range []string{"uid", "gid", "gecos", "shell", "storage", "quota", "state"} {
		f := f
		a.fs.Func(f, "new "+f, func(v string) error { set[f] = v; return nil })
	}
	pos, err := parseArgs(a.fs, args, 1, "one user name")
	if err != nil {
		return err
	}
	if len(set) == 0 {
		return fmt.Errorf("%w: nothing to change: give -gecos, -shell, -storage, -quota, -state, -uid or -gid", errUsage)
	}
	for k, v := range set {
		switch k {
		case "uid", "gid":
			var n uint32
			if _, err := fmt.Sscan(v, &n); err != nil {
				return fmt.Errorf("%w: -%s %q is not a number", errUsage, k, v)
			}
			if k == "uid" {
				p.UID = &n
			} else {
				p.GID = &n
			}
		case "gecos":
			p.Gecos = &v
		case "shell":
			p.Shell = &v
		case "storage":
			p.Storage = &v
		case "quota":
			var q int64
			if _, err := fmt.Sscan(v, &q); err != nil || q < 0 {
				return fmt.Errorf("%w: -quota %q is not a byte count", errUsage, v)
			}
			p.Quota = &q
		case "state":
			st, err := directory.ParseState(v)
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			p.State = &st
		}
	}
	return simple(a, pwadmin.Request{Op: pwadmin.OpUserMod, Name: pos[0], Patch: &p}, stdout, "modified "+pos[0])
}

func runUsersPasswd(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("users passwd")
	pos, err := parseArgs(a.fs, args, 1, "one user name (the password is read from stdin)")
	if err != nil {
		return err
	}
	pw, err := readPassword(stdin)
	if err != nil {
		return err
	}
	return simple(a, pwadmin.Request{Op: pwadmin.OpUserPasswd, Name: pos[0], Password: pw}, stdout, "password changed for "+pos[0])
}

func runUsersShow(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("users show")
	asJSON := a.fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(a.fs, args, 1, "one user name")
	if err != nil {
		return err
	}
	c, _, err := a.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := do(c, pwadmin.Request{Op: pwadmin.OpUserShow, Name: pos[0]})
	if err != nil {
		return err
	}
	u := resp.User
	if *asJSON {
		return json.NewEncoder(stdout).Encode(u)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "name\t%s\nuid\t%d\ngid\t%d\ngecos\t%s\nshell\t%s\nstorage\t%s\nquota\t%d\nstate\t%s\npassword\t%s\naliases\t%s\n",
		u.Name, u.UID, u.GID, u.Gecos, u.Shell, u.Storage, u.Quota, u.State, u.Hash, strings.Join(u.Aliases, ", "))
	return w.Flush()
}

func runUsersList(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("users list")
	if _, err := parseArgs(a.fs, args, 0, "no arguments"); err != nil {
		return err
	}
	c, _, err := a.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var cursor uint64
	for {
		resp, err := do(c, pwadmin.Request{Op: pwadmin.OpUserList, Cursor: cursor, Max: 5000})
		if err != nil {
			return err
		}
		for _, u := range resp.Users {
			fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\n", u.Name, u.UID, u.GID, u.Storage, u.State, u.Gecos)
		}
		if resp.Next == 0 {
			return nil
		}
		cursor = resp.Next
	}
}

func runAliasAdd(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("alias add")
	pos, err := parseArgs(a.fs, args, 2, "USER ALIAS")
	if err != nil {
		return err
	}
	return simple(a, pwadmin.Request{Op: pwadmin.OpAliasAdd, Name: pos[0], Alias: pos[1]}, stdout, "alias "+pos[1]+" → "+pos[0])
}

func runAliasDel(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("alias del")
	pos, err := parseArgs(a.fs, args, 1, "ALIAS")
	if err != nil {
		return err
	}
	return simple(a, pwadmin.Request{Op: pwadmin.OpAliasDel, Alias: pos[0]}, stdout, "alias "+pos[0]+" removed")
}

// importChunk keeps each admin frame well under the stream's frame limit.
const importChunk = 10_000

func runUsersImport(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("users import")
	format := a.fs.String("format", "", "passwd or csv (default: from the file name: .csv is CSV)")
	shadow := a.fs.String("shadow", "", "shadow file with the passwd file's hashes")
	minUID := a.fs.Uint("min-uid", 1000, "skip accounts below this uid (system users)")
	replace := a.fs.Bool("replace", false, "make the file the whole user set (default: add to the existing users)")
	skipBad := a.fs.Bool("skip-bad", false, "import the good lines even when some are bad (default: all or nothing)")
	pos, err := parseArgs(a.fs, args, 1, "one FILE")
	if err != nil {
		return err
	}
	file := pos[0]
	if *format == "" {
		*format = "passwd"
		if strings.HasSuffix(strings.ToLower(file), ".csv") {
			*format = "csv"
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	// The profile first: it says how to hash the CSV's plaintext passwords.
	p, err := cluster.LoadFlag(*a.profile, cluster.Options{})
	if err != nil {
		return err
	}
	opts := directory.ImportOptions{MinUID: uint32(*minUID), BcryptCost: p.Cluster.Passwd.BcryptCost}
	var users []directory.User
	var bad []directory.LineError
	switch *format {
	case "csv":
		users, bad = directory.ParseCSV(f, opts)
	case "passwd":
		var sh io.Reader
		if *shadow != "" {
			sf, err := os.Open(*shadow)
			if err != nil {
				return err
			}
			defer sf.Close()
			sh = sf
		}
		users, bad = directory.ParsePasswdShadow(f, sh, opts)
	default:
		return fmt.Errorf("%w: -format must be passwd or csv", errUsage)
	}
	for _, e := range bad {
		fmt.Fprintln(stderr, e.Error())
	}
	if len(bad) > 0 && !*skipBad {
		return fmt.Errorf("%d bad lines: nothing imported (fix them, or pass -skip-bad to import the %d good ones)", len(bad), len(users))
	}
	c, _, err := a.connectTo(p, *a.server)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := do(c, pwadmin.Request{Op: pwadmin.OpImportBegin, Replace: *replace}); err != nil {
		return err
	}
	for i := 0; i < len(users); i += importChunk {
		if _, err := do(c, pwadmin.Request{Op: pwadmin.OpImportChunk, Chunk: pwadmin.UsersChunk(users[i:min(i+importChunk, len(users))])}); err != nil {
			return err
		}
	}
	resp, err := do(c, pwadmin.Request{Op: pwadmin.OpImportCommit})
	if err != nil {
		return fmt.Errorf("import refused, nothing changed: %w", err)
	}
	fmt.Fprintf(stdout, "imported %d users from %s\n", resp.Count, file)
	return nil
}

func runPasswdStatus(args []string, stdout, stderr io.Writer) error {
	a := newAdminFlags("passwd status")
	asJSON := a.fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(a.fs, args, 0, "no arguments"); err != nil {
		return err
	}
	p, err := cluster.LoadFlag(*a.profile, cluster.Options{})
	if err != nil {
		return err
	}
	prim, sec := p.PasswdServers()
	hosts := []*cluster.Host{prim}
	if sec != nil {
		hosts = append(hosts, sec)
	}
	failed := 0
	for _, h := range hosts {
		c, _, err := a.connectTo(p, h.Name)
		if err != nil {
			fmt.Fprintf(stdout, "%s: DOWN: %v\n", h.Name, err)
			failed++
			continue
		}
		resp, err := do(c, pwadmin.Request{Op: pwadmin.OpStats})
		c.Close()
		if err != nil {
			fmt.Fprintf(stdout, "%s: ERROR: %v\n", h.Name, err)
			failed++
			continue
		}
		st := resp.Stats
		if *asJSON {
			json.NewEncoder(stdout).Encode(st)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s, %d users, generation %d/%d, journal %d bytes, up %ds\n",
			st.Host, st.Role, st.Users, st.Epoch, st.Seq, st.JournalSize, st.UptimeSec)
		if st.Role == "secondary" {
			fmt.Fprintf(stdout, "  following primary: %v (last heard %s ago)\n", st.Following, st.Lag)
		} else {
			fmt.Fprintf(stdout, "  secondaries connected: %v\n", st.Secondaries)
		}
		fmt.Fprintf(stdout, "  requests %v; dropped %v; auth ok %d denied %d locked %d\n",
			st.Requests, st.Dropped, st.AuthOK, st.AuthDenied, st.AuthLocked)
		fmt.Fprintf(stdout, "  logins from the credentials cache %d, by password hash check %d (each about %s); %d cached\n",
			st.AuthCached, st.AuthVerified, st.VerifyCost, st.AuthCacheEntries)
		fmt.Fprintf(stdout, "  answers: slowest %s, %d over 1 ms, %d over 10 ms\n",
			st.SlowestAnswer, st.AnswersOver1ms, st.AnswersOver10ms)
	}
	if failed == len(hosts) {
		return errors.New("no passwd server answered")
	}
	return nil
}

func runKeyNew(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("key new")
	pos, err := parseArgs(fs, args, 1, "the FILE to create")
	if err != nil {
		return err
	}
	if _, err := keyfile.Create(pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created cluster key %s (mode 0600): copy it to every host of the cluster\n", pos[0])
	return nil
}
