package mailstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"correo/src/dirsync"
	"correo/src/mailbox"
)

// lockName is the per-folder lock for UID list updates. It is not
// pop3d's correo-pop3.lock: see the package comment.
const lockName = "correo-mailstore.lock"

// folderCache is what this process knows of one folder's list. ops on the
// folder in this process are serialised by mu (the flock alone would do,
// but the cache is shared memory).
type folderCache struct {
	mu    sync.Mutex
	l     *uidList
	kw    *keywords
	byKey map[string]uint32
	hdr   string // the header of l as last read or written
}

// op is one locked operation on a folder: lock, load, change, save.
type op struct {
	s      *Store
	name   string
	dir    string
	fc     *folderCache
	lk     *flock
	l      *uidList
	kw     *keywords
	byKey  map[string]uint32
	bumped bool
	dirty  bool
	// frozen: the mailbox's moving marker was there when the lock was
	// taken. Only reads that find nothing to write may go on; see begin.
	frozen bool
	// moved lists the UIDs this op moved from new/ to cur/: the first
	// IMAP session to see a message reports it as \Recent (RFC 3501).
	moved []uint32
}

func (s *Store) cacheFor(dir string) *folderCache {
	s.mu.Lock()
	defer s.mu.Unlock()
	fc := s.folders[dir]
	if fc == nil {
		fc = &folderCache{}
		s.folders[dir] = fc
	}
	return fc
}

// dropCache forgets folders at or under dir, after a delete or rename.
func (s *Store) dropCache(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.folders {
		if d == dir || strings.HasPrefix(d, dir+".") {
			delete(s.folders, d)
		}
	}
}

// begin locks and loads folders (one or two; two are locked in the order
// of their paths so that COPY A→B and COPY B→A cannot deadlock). The ops
// come back in the order of the names; the same folder twice gives the
// same op twice. A mailbox frozen for a move (mailbox.MovingMarker) is
// refused with ErrMoving once the lock is held: the mover takes every
// folder lock after writing the marker, so a change either ended before
// it copies or sees the marker here.
func (s *Store) begin(names ...string) ([]*op, error) { return s.beginMode(false, names...) }

// beginRead is begin for operations that only look: a frozen folder is
// still loaded, and the op fails only if it would have to write (a scan
// that finds something new, a list to rebuild), which keeps the answers
// true to what the mover copies.
func (s *Store) beginRead(names ...string) ([]*op, error) { return s.beginMode(true, names...) }

func (s *Store) beginMode(read bool, names ...string) ([]*op, error) {
	ops := make([]*op, len(names))
	var uniq []*op
	for i, n := range names {
		canon, err := CanonicalName(n)
		if err != nil {
			return nil, err
		}
		dir, err := folderPath(s.root, canon)
		if err != nil {
			return nil, err
		}
		for _, o := range uniq {
			if o.dir == dir {
				ops[i] = o
			}
		}
		if ops[i] == nil {
			ops[i] = &op{s: s, name: canon, dir: dir}
			uniq = append(uniq, ops[i])
		}
	}
	sorted := append([]*op(nil), uniq...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].dir < sorted[j].dir })
	for i, o := range sorted {
		if err := o.lock(read); err != nil {
			for _, p := range sorted[:i] {
				p.release(false)
			}
			return nil, err
		}
	}
	return ops, nil
}

func (o *op) lock(read bool) error {
	// Lstat: a folder that is a symbolic link could lead out of the
	// user's mailbox; List does not show one either.
	if fi, err := os.Lstat(o.dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("folder %q: %w", o.name, ErrNoFolder)
	}
	if fi, err := os.Lstat(filepath.Join(o.dir, "cur")); err != nil || !fi.IsDir() {
		return fmt.Errorf("folder %q: %w", o.name, ErrNoFolder)
	}
	o.fc = o.s.cacheFor(o.dir)
	o.fc.mu.Lock()
	lk, err := lockFile(filepath.Join(o.dir, lockName))
	if err != nil {
		o.fc.mu.Unlock()
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("folder %q: %w", o.name, ErrNoFolder)
		}
		return fmt.Errorf("folder %q: %w", o.name, err)
	}
	o.lk = lk
	o.frozen = mailbox.Moving(o.s.root)
	if o.frozen && !read {
		o.release(false)
		return fmt.Errorf("folder %q: %w", o.name, ErrMoving)
	}
	if err := o.load(); err != nil {
		o.release(false)
		return err
	}
	return nil
}

// load reads the list, reusing the cached parse when the header (which
// carries a generation bumped by every write) is unchanged. A missing or
// corrupt list is rebuilt from the files with a new UIDVALIDITY.
func (o *op) load() error {
	fc := o.fc
	path := filepath.Join(o.dir, uidlistFile)
	f, err := os.Open(path)
	var hint uint32
	if fc.l != nil {
		hint = fc.l.validity
	}
	if err == nil {
		data, rerr := readHeadThenAll(f, fc.hdr, fc.l != nil)
		f.Close()
		switch {
		case rerr != nil:
			return fmt.Errorf("folder %q: reading %s: %w", o.name, path, rerr)
		case data == nil: // header unchanged
			o.l, o.kw, o.byKey = fc.l, fc.kw, fc.byKey
			return nil
		}
		l, perr := parseUIDList(data)
		if perr == nil {
			kw, err := readKeywords(o.dir)
			if err != nil {
				return err
			}
			o.l, o.kw = l, kw
			o.byKey = make(map[string]uint32, len(l.msgs))
			for i := range l.msgs {
				o.byKey[l.msgs[i].key] = l.msgs[i].uid
			}
			fc.l, fc.kw, fc.byKey = o.l, o.kw, o.byKey
			fc.hdr = l.header()
			return nil
		}
		// Corrupt: never reuse its UIDVALIDITY, even if only its body
		// is damaged, since its UIDs can no longer be trusted.
		line, _, _ := strings.Cut(string(data), "\n")
		if h, err := parseHeader(line); err == nil && h.validity > hint {
			hint = h.validity
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("folder %q: opening %s: %w", o.name, path, err)
	}
	if o.frozen {
		return fmt.Errorf("folder %q: its UID list needs a rebuild: %w", o.name, ErrMoving)
	}
	v, err := newValidity(o.s.root, hint)
	if err != nil {
		return fmt.Errorf("folder %q: choosing a new UIDVALIDITY: %w", o.name, err)
	}
	kw, err := readKeywords(o.dir)
	if err != nil {
		return err
	}
	o.l = &uidList{validity: v, uidNext: 1, modseq: 1}
	o.kw = kw
	o.byKey = map[string]uint32{}
	o.dirty = true
	fc.l, fc.kw, fc.byKey, fc.hdr = o.l, o.kw, o.byKey, ""
	return o.scan(false)
}

// readHeadThenAll returns nil when the file's first line equals hdr (and
// have is true), else the whole file. Reading 512 bytes instead of the
// whole list is what makes a Refresh with nothing new cheap.
func readHeadThenAll(f *os.File, hdr string, have bool) ([]byte, error) {
	buf := make([]byte, 512)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	buf = buf[:n]
	if have {
		if i := strings.IndexByte(string(buf), '\n'); i >= 0 && string(buf[:i]) == hdr {
			return nil, nil
		}
	}
	if n < 512 {
		return buf, nil
	}
	rest, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return append(buf, rest...), nil
}

// mod returns the MODSEQ of this operation's changes: one new value per
// operation, higher than any before, shared by everything it changes.
func (o *op) mod() uint64 {
	if !o.bumped {
		o.l.modseq++
		o.bumped = true
	}
	o.dirty = true
	return o.l.modseq
}

// release saves a dirty list when ok and unlocks. A failed save, or any
// failure (ok false) after the cache may have been changed, drops the
// cache so the next operation rereads the disk.
func (o *op) release(ok bool) error {
	if o.lk == nil {
		return nil
	}
	var err error
	switch {
	case o.frozen && o.dirty:
		// Nothing reaches the disk of a frozen mailbox.
		err = fmt.Errorf("folder %q: %w", o.name, ErrMoving)
	case ok && o.dirty:
		err = o.save()
	}
	if !ok || err != nil {
		o.fc.l, o.fc.kw, o.fc.byKey, o.fc.hdr = nil, nil, nil, ""
	}
	o.lk.unlock()
	o.lk = nil
	o.fc.mu.Unlock()
	return err
}

// frozenChange is ErrMoving when a read on a frozen folder found
// something it would have had to write: its answer would show state
// that is not on disk.
func (o *op) frozenChange() error {
	if o.frozen && o.dirty {
		return fmt.Errorf("folder %q: %w", o.name, ErrMoving)
	}
	return nil
}

// finish releases ops from begin, saving each once.
func finish(ops []*op, ok bool) error {
	var errs []error
	done := map[*op]bool{}
	for _, o := range ops {
		if o == nil || done[o] {
			continue
		}
		done[o] = true
		errs = append(errs, o.release(ok))
	}
	return errors.Join(errs...)
}

func (o *op) save() error {
	o.l.gen++
	o.l.trimVanished()
	if err := writeDurable(o.dir, uidlistFile, o.l.marshal()); err != nil {
		return fmt.Errorf("folder %q: saving the UID list: %w", o.name, err)
	}
	o.fc.hdr = o.l.header()
	o.dirty = false
	return nil
}

// remove drops messages from the list and logs them for VANISHED.
func (o *op) remove(uids []uint32) {
	if len(uids) == 0 {
		return
	}
	m := o.mod()
	set := SetOf(uids)
	if n := len(o.l.vanished); n > 0 && o.l.vanished[n-1].modseq == m {
		set = SetOf(append(o.l.vanished[n-1].uids.UIDs(), uids...))
		o.l.vanished[n-1].uids = set
	} else {
		o.l.vanished = append(o.l.vanished, expungeRec{modseq: m, uids: set})
	}
	keep := o.l.msgs[:0]
	for _, e := range o.l.msgs {
		if set.Contains(e.uid) {
			delete(o.byKey, e.key)
			continue
		}
		keep = append(keep, e)
	}
	// Clear the tail so dropped keys can be collected.
	for i := len(keep); i < len(o.l.msgs); i++ {
		o.l.msgs[i] = entry{}
	}
	o.l.msgs = keep
}

// add appends a message with the next UID.
func (o *op) add(e entry) (uint32, error) {
	if o.l.uidNext == 0xffffffff {
		return 0, fmt.Errorf("folder %q has used every UID under UIDVALIDITY %d; remove %s to start over with a new UIDVALIDITY", o.name, o.l.validity, filepath.Join(o.dir, uidlistFile))
	}
	e.uid = o.l.uidNext
	e.modseq = o.mod()
	o.l.uidNext++
	o.l.msgs = append(o.l.msgs, e)
	o.byKey[e.key] = e.uid
	return e.uid, nil
}

type found struct {
	sub, key, info string
	t              int64
}

// scan brings the list up to date with new/ and cur/: adopts unknown files
// in delivery order, notices vanished ones and renamed flags, and (move)
// moves new/ to cur/ as a client has now seen them.
func (o *op) scan(move bool) error {
	l := o.l
	seen := make([]bool, len(l.msgs))
	var fresh []found
	for _, sub := range [...]string{"new", "cur"} {
		names, err := readNames(filepath.Join(o.dir, sub))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("folder %q: %w", o.name, ErrNoFolder)
			}
			return fmt.Errorf("folder %q: listing %s/: %w", o.name, sub, err)
		}
		for _, n := range names {
			key, info := n, ""
			if i := strings.IndexByte(n, ':'); i >= 0 {
				key, info = n[:i], n[i:]
			}
			if !validKey(key) || info != "" && !validInfo(info) {
				continue
			}
			if uid, ok := o.byKey[key]; ok {
				i := l.find(uid)
				if i < 0 || seen[i] {
					continue
				}
				seen[i] = true
				e := &l.msgs[i]
				inNew := sub == "new"
				if e.inNew != inNew || e.info != info {
					if infoFlags(e.info) != infoFlags(info) {
						e.modseq = o.mod()
					}
					e.inNew, e.info = inNew, info
					o.dirty = true
				}
				continue
			}
			fresh = append(fresh, found{sub: sub, key: key, info: info, t: mailbox.KeyTime(key)})
		}
	}
	var gone []uint32
	for i := range l.msgs {
		if !seen[i] {
			gone = append(gone, l.msgs[i].uid)
		}
	}
	o.remove(gone)
	sort.Slice(fresh, func(i, j int) bool {
		if fresh[i].t != fresh[j].t {
			return fresh[i].t < fresh[j].t
		}
		return fresh[i].key < fresh[j].key
	})
	for _, f := range fresh {
		if _, dup := o.byKey[f.key]; dup {
			continue
		}
		path := filepath.Join(o.dir, f.sub, f.key+f.info)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue // gone meanwhile, or not a message
		}
		size := keyField(f.key, "W")
		if size < 0 {
			if size, err = wireSizeOf(path); err != nil {
				continue
			}
		}
		if _, err := o.add(entry{size: size, date: fi.ModTime().Unix(), inNew: f.sub == "new", info: f.info, key: f.key}); err != nil {
			return err
		}
	}
	if move && !o.frozen {
		o.moveToCur()
	}
	return nil
}

// moveToCur renames new/ files to cur/ with an empty info. Not fsynced: a
// crash merely puts them back in new/ with the same key and UID.
func (o *op) moveToCur() {
	for i := range o.l.msgs {
		e := &o.l.msgs[i]
		if !e.inNew {
			continue
		}
		info := e.info
		if info == "" {
			info = ":2,"
		}
		from := filepath.Join(o.dir, "new", e.name())
		to := filepath.Join(o.dir, "cur", e.key+info)
		err := dirsync.Rename(from, to)
		if err != nil {
			// pop3d may have moved it first, with the same target name.
			if _, serr := os.Lstat(to); serr != nil {
				continue
			}
		}
		e.inNew, e.info = false, info
		o.dirty = true
		o.moved = append(o.moved, e.uid)
	}
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// path returns the file of an entry.
func (o *op) path(e *entry) string { return filepath.Join(o.dir, e.sub(), e.name()) }

// setInfo renames a message to carry new flag letters (into cur/). It
// returns fs.ErrNotExist when the file is not where the list says, which
// callers answer with a scan and one retry.
func (o *op) setInfo(e *entry, letters string) error {
	// Any other info (":1,...", experimental per the spec) is replaced
	// by a standard one: its letters had no meaning here anyway.
	info := ":2," + letters
	from := o.path(e)
	to := filepath.Join(o.dir, "cur", e.key+info)
	if from == to {
		return nil
	}
	if err := dirsync.Rename(from, to); err != nil {
		return err
	}
	e.inNew, e.info = false, info
	return nil
}
