package mailstore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/dirsync"
	"correo/src/mailbox"
)

// Errors a server maps to IMAP response codes.
var (
	ErrNoFolder     = errors.New("no such folder")                                                  // NO [NONEXISTENT], or [TRYCREATE] for APPEND/COPY/MOVE
	ErrExists       = errors.New("folder already exists")                                           // NO [ALREADYEXISTS]
	ErrHasChildren  = errors.New("folder has subfolders; delete or rename them first")              // NO [INUSE]
	ErrInbox        = errors.New("INBOX cannot be deleted, and nothing can be renamed to INBOX")    // NO [CANNOT]
	ErrExpunged     = errors.New("message has been expunged")                                       // NO [EXPUNGEISSUED]
	ErrUIDValidity  = errors.New("the folder's UIDVALIDITY changed; the session must reselect it")  // BYE, then the client resyncs
	ErrUnderItself  = errors.New("a folder cannot be renamed to a name under itself")               // NO [CANNOT]
	ErrSpecialInUse = errors.New("another folder already has this special use; choose that folder") // NO [USEATTR]
	// ErrMoving is mailbox.ErrMoving: the mailbox is frozen while it is
	// copied to another storage host, and nothing was changed. The server
	// ends the session (BYE [UNAVAILABLE]); the client reconnects to the
	// new host.
	ErrMoving = mailbox.ErrMoving
)

// Special-use attributes (RFC 6154) for the default folders.
const (
	UseSent   = `\Sent`
	UseDrafts = `\Drafts`
	UseTrash  = `\Trash`
	UseJunk   = `\Junk`
)

// Files this package keeps in a folder or in the root, besides the UID
// list, the keyword table and the locks.
const (
	specialUseFile = "correo-specialuse"
	defaultsFile   = "correo-defaults"
	markerFile     = "maildirfolder" // Maildir++: "this is a folder, not a Maildir of its own"
	deletingPrefix = "correo-deleting."
)

// Store is one user's mailbox: the Maildir at its root and the Maildir++
// folders in it. It is safe for concurrent use; any number of Stores, in
// any number of processes, may share a root.
type Store struct {
	root    string
	mu      sync.Mutex
	folders map[string]*folderCache
}

// Open returns the Store at root, the user's Maildir (what
// mailbox.Scheme.MaildirPath gives). INBOX is created if missing: a user
// may log in before the first delivery, and pdeliveryd accepts an
// existing Maildir as it is.
func Open(root string) (*Store, error) {
	if root == "" || !filepath.IsAbs(root) {
		return nil, fmt.Errorf("opening mailbox %q: the root must be an absolute path (a bug in the caller)", root)
	}
	root = filepath.Clean(root)
	if err := mkdirDurable(root); err != nil {
		return nil, fmt.Errorf("opening mailbox %s: %w", root, err)
	}
	if err := ensureMaildir(root); err != nil {
		return nil, err
	}
	s := &Store{root: root, folders: map[string]*folderCache{}}
	s.removeLeftovers()
	return s, nil
}

// removeLeftovers removes what a Delete interrupted by a crash left
// behind. It is a change like any other, so it waits for a mailbox that
// is being moved: the target's Open removes the copies.
func (s *Store) removeLeftovers() {
	names, err := readNames(s.root)
	if err != nil {
		return
	}
	var left []string
	for _, n := range names {
		if strings.HasPrefix(n, deletingPrefix) {
			left = append(left, n)
		}
	}
	if len(left) == 0 {
		return
	}
	lk, err := s.lockNames("removing leftovers of a folder deletion")
	if err != nil {
		return
	}
	defer lk.unlock()
	for _, n := range left {
		os.RemoveAll(filepath.Join(s.root, n))
	}
}

// lockNames serialises the changes that add, remove or rename folder
// directories (and their special-use files) against the mover: they take
// no folder's own lock, so they take INBOX's (the root's), which the
// mover takes too, and then check for the moving marker. It must not be
// held while calling begin on INBOX: two flocks of one process on one
// file exclude each other.
func (s *Store) lockNames(what string) (*flock, error) {
	lk, err := lockFile(filepath.Join(s.root, lockName))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if mailbox.Moving(s.root) {
		lk.unlock()
		return nil, fmt.Errorf("%s: %w", what, ErrMoving)
	}
	return lk, nil
}

// Root is the Maildir the Store was opened on.
func (s *Store) Root() string { return s.root }

// Close forgets cached state. Nothing is held open between calls, so it
// cannot fail and is there for symmetry with the server's session end.
func (s *Store) Close() error {
	s.mu.Lock()
	s.folders = map[string]*folderCache{}
	s.mu.Unlock()
	return nil
}

// Folder is one entry of List.
type Folder struct {
	Name       string   // canonical, '/' between levels
	Attrs      []string // \HasChildren or \HasNoChildren, \Noselect, \NonExistent, and SpecialUse
	SpecialUse string   // \Sent, \Drafts, \Trash, \Junk or ""
}

// List returns every folder, INBOX first and the rest by name. A parent
// that does not exist but has children (left by a rename or made by
// another tool) is listed \NonExistent \Noselect so a client can still
// show the tree; the server decides whether a LIST pattern shows it.
func (s *Store) List() ([]Folder, error) {
	names, err := s.folderNames()
	if err != nil {
		return nil, err
	}
	exists := map[string]bool{Inbox: true}
	for _, n := range names {
		exists[n] = true
	}
	all := map[string]bool{Inbox: true}
	children := map[string]bool{}
	for n := range exists {
		all[n] = true
		for p := parentName(n); p != ""; p = parentName(p) {
			all[p] = true
			children[p] = true
		}
	}
	out := make([]Folder, 0, len(all))
	for n := range all {
		f := Folder{Name: n}
		if !exists[n] {
			f.Attrs = append(f.Attrs, `\NonExistent`, `\Noselect`)
		} else if n != Inbox {
			dir, _ := folderPath(s.root, n)
			if fi, err := os.Stat(filepath.Join(dir, "cur")); err != nil || !fi.IsDir() {
				f.Attrs = append(f.Attrs, `\Noselect`)
			}
			f.SpecialUse = readSpecialUse(dir)
		}
		if children[n] {
			f.Attrs = append(f.Attrs, `\HasChildren`)
		} else {
			f.Attrs = append(f.Attrs, `\HasNoChildren`)
		}
		if f.SpecialUse != "" {
			f.Attrs = append(f.Attrs, f.SpecialUse)
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Name == Inbox) != (out[j].Name == Inbox) {
			return out[i].Name == Inbox
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// folderNames lists the folder directories under the root (not INBOX).
func (s *Store) folderNames() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("listing folders of %s: %w", s.root, err)
	}
	var out []string
	for _, e := range ents {
		// Symbolic links are not followed: a link could point at another
		// user's mail.
		if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		if n, ok := nameOfDir(e.Name()); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

func readSpecialUse(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, specialUseFile))
	if err != nil {
		return ""
	}
	switch u := strings.TrimSpace(string(data)); u {
	case UseSent, UseDrafts, UseTrash, UseJunk, `\All`, `\Archive`, `\Flagged`:
		return u
	}
	return ""
}

// exists says whether a folder is there (INBOX always is).
func (s *Store) exists(canon string) bool {
	dir, err := folderPath(s.root, canon)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(dir)
	return err == nil && fi.IsDir()
}

// Create makes a folder and any missing parents (RFC 9051 CREATE).
func (s *Store) Create(name string) error {
	canon, err := CanonicalName(name)
	if err != nil {
		return err
	}
	lk, err := s.lockNames(fmt.Sprintf("creating folder %q", canon))
	if err != nil {
		return err
	}
	defer lk.unlock()
	return s.createWithParents(canon)
}

// createWithParents is Create under lockNames.
func (s *Store) createWithParents(canon string) error {
	if canon == Inbox || s.exists(canon) {
		return fmt.Errorf("creating folder %q: %w", canon, ErrExists)
	}
	for p := parentName(canon); p != "" && p != Inbox; p = parentName(p) {
		if !s.exists(p) {
			if err := s.create(p); err != nil && !errors.Is(err, ErrExists) {
				return err
			}
		}
	}
	return s.create(canon)
}

// create builds the folder under a temporary name and renames it into
// place, so no other session ever sees a folder without cur/ or its
// marker, and of two concurrent CREATEs exactly one succeeds.
func (s *Store) create(canon string) error {
	dir, err := folderPath(s.root, canon)
	if err != nil {
		return err
	}
	tmp, err := tempName(s.root, "correo-creating.")
	if err != nil {
		return err
	}
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return fmt.Errorf("creating folder %q: %w", canon, err)
	}
	if err := os.Mkdir(tmp, dirMode); err != nil {
		return fail(err)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(tmp, sub), dirMode); err != nil {
			return fail(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, markerFile), nil, fileMode); err != nil {
		return fail(err)
	}
	if err := dirsync.Sync(tmp); err != nil {
		return fail(err)
	}
	// renameat2(RENAME_NOREPLACE): a plain rename would replace an empty
	// directory of that name instead of failing.
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return fail(ErrExists)
		}
		return fail(err)
	}
	if err := dirsync.Sync(s.root); err != nil {
		return fmt.Errorf("creating folder %q: %w", canon, err)
	}
	return nil
}

func tempName(root, prefix string) (string, error) {
	var rb [8]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return "", err
	}
	return filepath.Join(root, prefix+hex.EncodeToString(rb[:])), nil
}

// hasChildren says whether any folder lives under canon.
func (s *Store) hasChildren(canon string) (bool, error) {
	names, err := s.folderNames()
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if strings.HasPrefix(n, canon+"/") {
			return true, nil
		}
	}
	return false, nil
}

// Delete removes a folder and its messages. INBOX cannot be deleted, and a
// folder with subfolders is refused (ErrHasChildren): Maildir++ cannot
// keep a \Noselect name with children the way RFC 9051 describes, so the
// client is asked to delete the children first, as Dovecot does. The
// folder is first renamed aside, so other sessions see it vanish at once,
// then removed.
func (s *Store) Delete(name string) error {
	canon, err := CanonicalName(name)
	if err != nil {
		return err
	}
	if canon == Inbox {
		return fmt.Errorf("deleting %q: %w", name, ErrInbox)
	}
	// Held through the RemoveAll too: a mover copying a half-removed
	// folder would give the target messages the user deleted.
	lk, err := s.lockNames(fmt.Sprintf("deleting folder %q", canon))
	if err != nil {
		return err
	}
	defer lk.unlock()
	if !s.exists(canon) {
		return fmt.Errorf("deleting folder %q: %w", canon, ErrNoFolder)
	}
	if kids, err := s.hasChildren(canon); err != nil {
		return err
	} else if kids {
		return fmt.Errorf("deleting folder %q: %w", canon, ErrHasChildren)
	}
	dir, _ := folderPath(s.root, canon)
	aside, err := tempName(s.root, deletingPrefix)
	if err != nil {
		return err
	}
	if err := dirsync.Rename(dir, aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("deleting folder %q: %w", canon, ErrNoFolder)
		}
		return fmt.Errorf("deleting folder %q: %w", canon, err)
	}
	s.dropCache(dir)
	if err := dirsync.Sync(s.root); err != nil {
		return fmt.Errorf("deleting folder %q: %w", canon, err)
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("deleting folder %q: removing %s (Open retries it): %w", canon, aside, err)
	}
	return nil
}

// Rename renames a folder and its subfolders (RFC 9051 RENAME). Renaming
// INBOX moves its messages into a new folder and leaves INBOX empty; its
// subfolders stay. The target's missing parents are created. Each
// directory moves atomically, but a tree of several is not moved as one:
// a crash half way leaves some children under the old name, to be renamed
// again.
func (s *Store) Rename(from, to string) error {
	src, err := CanonicalName(from)
	if err != nil {
		return err
	}
	dst, err := CanonicalName(to)
	if err != nil {
		return err
	}
	if dst == Inbox {
		return fmt.Errorf("renaming %q to %q: %w", src, to, ErrInbox)
	}
	if dst == src || strings.HasPrefix(dst, src+"/") {
		return fmt.Errorf("renaming %q to %q: %w", src, dst, ErrUnderItself)
	}
	lk, err := s.lockNames(fmt.Sprintf("renaming %q to %q", src, dst))
	if err != nil {
		return err
	}
	// Unlocked by hand: renaming INBOX goes on through begin, which takes
	// the same lock.
	locked := true
	defer func() {
		if locked {
			lk.unlock()
		}
	}()
	if !s.exists(src) {
		return fmt.Errorf("renaming folder %q: %w", src, ErrNoFolder)
	}
	if s.exists(dst) {
		return fmt.Errorf("renaming %q to %q: %w", src, dst, ErrExists)
	}
	for p := parentName(dst); p != "" && p != Inbox; p = parentName(p) {
		if !s.exists(p) {
			if err := s.create(p); err != nil && !errors.Is(err, ErrExists) {
				return err
			}
		}
	}
	if src == Inbox {
		if err := s.create(dst); err != nil {
			return err
		}
		lk.unlock()
		locked = false
		// Select and Move check for the marker themselves; one that
		// appears in between leaves dst made but empty, INBOX whole.
		return s.moveInboxTo(dst)
	}
	names, err := s.folderNames()
	if err != nil {
		return err
	}
	moves := []string{src}
	for _, n := range names {
		if strings.HasPrefix(n, src+"/") {
			moves = append(moves, n)
		}
	}
	for _, n := range moves {
		target := dst + strings.TrimPrefix(n, src)
		if _, err := CanonicalName(target); err != nil {
			return fmt.Errorf("renaming %q to %q: subfolder %q would become %w", src, dst, n, err)
		}
		if s.exists(target) {
			return fmt.Errorf("renaming %q to %q: %q: %w", src, dst, target, ErrExists)
		}
	}
	srcDir, _ := folderPath(s.root, src)
	for _, n := range moves {
		a, _ := folderPath(s.root, n)
		b, _ := folderPath(s.root, dst+strings.TrimPrefix(n, src))
		if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE); err != nil {
			s.dropCache(srcDir)
			if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
				err = ErrExists
			}
			return fmt.Errorf("renaming folder %q to %q: %w", n, dst+strings.TrimPrefix(n, src), err)
		}
	}
	s.dropCache(srcDir)
	if err := dirsync.Sync(s.root); err != nil {
		return fmt.Errorf("renaming %q to %q: %w", src, dst, err)
	}
	return nil
}

// moveInboxTo moves every message of INBOX into dst.
func (s *Store) moveInboxTo(dst string) error {
	mb, err := s.Select(Inbox)
	if err != nil {
		return err
	}
	uids := make([]uint32, len(mb.msgs))
	for i, m := range mb.msgs {
		uids[i] = m.UID
	}
	_, _, err = mb.Move(uids, dst)
	return err
}

// Status is what the STATUS command (and LIST-STATUS) reports.
type Status struct {
	Messages      int
	UIDNext       uint32
	UIDValidity   uint32
	Unseen        int
	Deleted       int
	Size          int64 // sum of RFC822.SIZE (RFC 8438 STATUS=SIZE)
	DeletedSize   int64 // of the messages flagged \Deleted (RFC 9208 DELETED-STORAGE)
	Recent        int   // messages still in new/: no IMAP session has seen them
	HighestModSeq uint64
}

// Status scans a folder and counts. It does not move new/ to cur/: a
// STATUS is not the user looking at the messages.
func (s *Store) Status(name string) (Status, error) {
	ops, err := s.beginRead(name)
	if err != nil {
		return Status{}, err
	}
	o := ops[0]
	if err := o.scan(false); err != nil {
		finish(ops, false)
		return Status{}, err
	}
	if err := o.frozenChange(); err != nil {
		finish(ops, false)
		return Status{}, err
	}
	st := Status{Messages: len(o.l.msgs), UIDNext: o.l.uidNext, UIDValidity: o.l.validity, HighestModSeq: o.l.modseq}
	for i := range o.l.msgs {
		e := &o.l.msgs[i]
		f := infoFlags(e.info)
		if strings.IndexByte(f, 'S') < 0 {
			st.Unseen++
		}
		if strings.IndexByte(f, 'T') >= 0 {
			st.Deleted++
			st.DeletedSize += e.size
		}
		if e.inNew {
			st.Recent++
		}
		st.Size += e.size
	}
	return st, finish(ops, true)
}

// EnsureDefaults creates Sent, Drafts, Trash and Junk with their
// special-use attributes, once per mailbox: the root marker
// correo-defaults records that it was done, so folders the user deletes
// stay deleted. A folder already carrying a use (made by a client with
// CREATE-SPECIAL-USE, say) is not duplicated, and an existing folder of a
// default name without a use gets it.
func (s *Store) EnsureDefaults() error {
	if _, err := os.Lstat(filepath.Join(s.root, defaultsFile)); err == nil {
		return nil
	}
	lk, err := s.lockNames("creating the default folders")
	if err != nil {
		return err
	}
	defer lk.unlock()
	// Another session may have done it while this one waited.
	if _, err := os.Lstat(filepath.Join(s.root, defaultsFile)); err == nil {
		return nil
	}
	folders, err := s.List()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, f := range folders {
		if f.SpecialUse != "" {
			used[f.SpecialUse] = true
		}
	}
	for _, d := range []struct{ name, use string }{
		{"Sent", UseSent}, {"Drafts", UseDrafts}, {"Trash", UseTrash}, {"Junk", UseJunk},
	} {
		if used[d.use] {
			continue
		}
		if err := s.createWithParents(d.name); err != nil && !errors.Is(err, ErrExists) {
			return fmt.Errorf("creating the default folders: %w", err)
		}
		if err := s.setSpecialUse(d.name, d.use); err != nil && !errors.Is(err, ErrSpecialInUse) {
			return fmt.Errorf("creating the default folders: %w", err)
		}
	}
	return writeDurableUnlocked(s.root, defaultsFile, []byte("Sent Drafts Trash Junk\n"))
}

// SetSpecialUse gives a folder a special-use attribute (CREATE with USE,
// RFC 6154), or removes it with use "". One folder per use: a second one
// is refused with ErrSpecialInUse.
func (s *Store) SetSpecialUse(name, use string) error {
	canon, err := CanonicalName(name)
	if err != nil {
		return err
	}
	// Under lockNames also because two sessions giving two folders the
	// same use at once would both pass the check below.
	lk, err := s.lockNames(fmt.Sprintf("special use for %q", canon))
	if err != nil {
		return err
	}
	defer lk.unlock()
	return s.setSpecialUse(canon, use)
}

// setSpecialUse is SetSpecialUse under lockNames.
func (s *Store) setSpecialUse(name, use string) error {
	canon, err := CanonicalName(name)
	if err != nil {
		return err
	}
	switch use {
	case "", UseSent, UseDrafts, UseTrash, UseJunk, `\All`, `\Archive`, `\Flagged`:
	default:
		return fmt.Errorf("special use %q for %q: not one of \\Sent \\Drafts \\Trash \\Junk \\All \\Archive \\Flagged", use, canon)
	}
	if canon == Inbox {
		return fmt.Errorf("special use for INBOX: %w", ErrInbox)
	}
	if !s.exists(canon) {
		return fmt.Errorf("special use for %q: %w", canon, ErrNoFolder)
	}
	dir, _ := folderPath(s.root, canon)
	if use == "" {
		err := os.Remove(filepath.Join(dir, specialUseFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return dirsync.Sync(dir)
	}
	folders, err := s.List()
	if err != nil {
		return err
	}
	for _, f := range folders {
		if f.SpecialUse == use && f.Name != canon {
			return fmt.Errorf("special use %s for %q: %q has it: %w", use, canon, f.Name, ErrSpecialInUse)
		}
	}
	return writeDurableUnlocked(dir, specialUseFile, []byte(use+"\n"))
}

// Usage is the user's quota usage, as pdeliveryd counts it
// (mailbox.Usage): every folder's new/ and cur/, tmp/ not counted.
func (s *Store) Usage() (int64, error) { return mailbox.Usage(s.root) }

// Append stores a message in a folder (APPEND): it is written to tmp/,
// its mtime set to date (INTERNALDATE; zero means now), fsynced, renamed
// into cur/ with its flags and cur/ fsynced before the UID is given out,
// so a client that got the APPENDUID may rely on the message as on a
// delivered one. A missing folder is ErrNoFolder ([TRYCREATE]).
func (s *Store) Append(name string, flags []string, date time.Time, r io.Reader) (uid, uidValidity uint32, err error) {
	canon, err := CanonicalName(name)
	if err != nil {
		return 0, 0, err
	}
	dir, err := folderPath(s.root, canon)
	if err != nil {
		return 0, 0, err
	}
	if !s.exists(canon) {
		return 0, 0, fmt.Errorf("appending to %q: %w", canon, ErrNoFolder)
	}
	// Not the check that counts (begin's, under the lock, is) but it
	// spares writing a message to tmp/ of a mailbox being copied.
	if err := mailbox.CheckNotMoving(s.root); err != nil {
		return 0, 0, fmt.Errorf("appending to %q: %w", canon, err)
	}
	// Refuse bad flags before writing anything.
	if _, _, err := lettersFor(flags, &keywords{}, false); err != nil {
		return 0, 0, fmt.Errorf("appending to %q: %w", canon, err)
	}
	if date.IsZero() {
		date = time.Now()
	}
	base, err := uniqueBase(time.Now())
	if err != nil {
		return 0, 0, err
	}
	tmp := filepath.Join(dir, "tmp", base)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, fileMode)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, 0, fmt.Errorf("appending to %q: %w", canon, ErrNoFolder)
		}
		return 0, 0, fmt.Errorf("appending to %q: %w", canon, err)
	}
	placed := false
	defer func() {
		if !placed {
			os.Remove(tmp)
		}
	}()
	cw := &countingWriter{w: f}
	if _, err := io.Copy(cw, struct{ io.Reader }{r}); err != nil {
		f.Close()
		return 0, 0, fmt.Errorf("appending to %q: writing %s: %w", canon, tmp, err)
	}
	if err := os.Chtimes(tmp, date, date); err != nil {
		f.Close()
		return 0, 0, fmt.Errorf("appending to %q: setting the date of %s: %w", canon, tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, 0, fmt.Errorf("appending to %q: fsync of %s: %w", canon, tmp, err)
	}
	if err := f.Close(); err != nil {
		return 0, 0, fmt.Errorf("appending to %q: closing %s: %w", canon, tmp, err)
	}
	wire := cw.n + cw.bareLF
	key := fmt.Sprintf("%s,S=%d,W=%d", base, cw.n, wire)

	ops, err := s.begin(canon)
	if err != nil {
		return 0, 0, err
	}
	o := ops[0]
	letters, added, err := lettersFor(flags, o.kw, true)
	if err == nil && added {
		err = o.kw.write(o.dir)
	}
	if err != nil {
		finish(ops, false)
		return 0, 0, fmt.Errorf("appending to %q: %w", canon, err)
	}
	e := entry{size: wire, date: date.Unix(), info: ":2," + letters, key: key}
	curDir := filepath.Join(dir, "cur")
	if err := dirsync.Rename(tmp, filepath.Join(curDir, e.name())); err != nil {
		finish(ops, false)
		return 0, 0, fmt.Errorf("appending to %q: moving the message into cur/: %w", canon, err)
	}
	placed = true
	if err := dirsync.Sync(curDir); err != nil {
		os.Remove(filepath.Join(curDir, e.name()))
		finish(ops, false)
		return 0, 0, fmt.Errorf("appending to %q: %w", canon, err)
	}
	uid, err = o.add(e)
	if err != nil {
		finish(ops, false)
		return 0, 0, err
	}
	v := o.l.validity
	if err := finish(ops, true); err != nil {
		// The message is durable and a later scan gives it a UID, but
		// this one was not recorded: do not hand it out.
		return 0, 0, fmt.Errorf("appending to %q: the message is stored but its UID could not be recorded: %w", canon, err)
	}
	return uid, v, nil
}
