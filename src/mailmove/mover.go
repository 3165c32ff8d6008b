package mailmove

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/mailbox"
)

// Directory is what a move needs of passwdd: the user's storage host and
// state, and changing them. correoctl's implementation follows a passwd
// failover (it tries the other server when one is down or no longer
// primary).
type Directory interface {
	User(ctx context.Context, name string) (storage string, state directory.State, err error)
	// Set sets the state, and the storage host when storage is not "".
	Set(ctx context.Context, name string, state directory.State, storage string) error
}

// Steps of a move, as journaled: each is written before it is taken.
const (
	StepCopy   = "copy"   // live passes into the target's stage
	StepFreeze = "freeze" // passwd moving, source frozen, delta, verify
	StepCommit = "commit" // the stage becomes the target's Maildir
	StepSwitch = "switch" // passwd points at the target
	StepRetire = "retire" // the source's copy is marked moved
)

// Journal is one move's record in cluster.moves.journal_dir.
type Journal struct {
	User string `json:"user"`
	From string `json:"from"`
	To   string `json:"to"`
	// State is the user's state before the move, given back at the switch.
	State   directory.State `json:"state"`
	Step    string          `json:"step"`
	Started time.Time       `json:"started"`
	Updated time.Time       `json:"updated"`
}

// Report is what a move did.
type Report struct {
	User, From, To string
	// Live are the passes made while the mailbox was in use; Delta the
	// one made frozen, Verified what was compared.
	Live     []Pass
	Delta    Pass
	Verified Pass
	// Frozen is how long the user saw "moving": from passwd's moving to
	// the switch.
	Frozen time.Duration
	Took   time.Duration
}

// Mover drives moves from wherever correoctl runs.
type Mover struct {
	Profile *cluster.Profile
	Ring    *keyfile.Ring
	Dir     Directory
	// JournalDir defaults to the profile's cluster.moves.journal_dir.
	JournalDir string
	// RateLimit in bytes per second; 0 takes the profile's rate_limit_mb.
	RateLimit int64
	// Progress, if set, gets the target's reports during each pass.
	Progress func(user, phase string, p Progress)
	// Note, if set, gets one line per step for the operator.
	Note func(format string, a ...any)
}

func (m *Mover) note(format string, a ...any) {
	if m.Note != nil {
		m.Note(format, a...)
	}
}

func (m *Mover) journalDir() string {
	if m.JournalDir != "" {
		return m.JournalDir
	}
	return m.Profile.Cluster.Moves.JournalDir
}

func (m *Mover) rate() int64 {
	if m.RateLimit > 0 {
		return m.RateLimit
	}
	return int64(m.Profile.Cluster.Moves.RateLimitMB) * 1_000_000
}

func (m *Mover) journalPath(user string) string {
	return filepath.Join(m.journalDir(), user+".json")
}

// save writes the journal durably: a step is only taken once its record
// survives a crash.
func (m *Mover) save(j *Journal) error {
	j.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	dir := m.journalDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("move journal directory: %w", err)
	}
	path := m.journalPath(j.User)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("move journal: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("move journal %s: %w", path, err)
	}
	return nil
}

func (m *Mover) finish(user string) error {
	if err := os.Remove(m.journalPath(user)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(m.journalDir())
}

// Load reads a user's journal; ok is false when no move is pending.
func (m *Mover) Load(user string) (*Journal, bool, error) {
	b, err := os.ReadFile(m.journalPath(user))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, false, fmt.Errorf("move journal %s is damaged: %w", m.journalPath(user), err)
	}
	return &j, true, nil
}

// Pending lists the users whose moves are journaled and unfinished.
func (m *Mover) Pending() ([]string, error) {
	entries, err := os.ReadDir(m.journalDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var users []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() {
			users = append(users, n)
		}
	}
	sort.Strings(users)
	return users, nil
}

func (m *Mover) dial(ctx context.Context, host string) (*Client, error) {
	addr, err := m.Profile.Listen(host, cluster.SvcMailboxMove)
	if err != nil {
		return nil, err
	}
	return Dial(ctx, addr.String(), m.Ring)
}

// Move moves user's mailbox to the storage host to.
func (m *Mover) Move(ctx context.Context, user, to string) (Report, error) {
	rep := Report{User: user, To: to}
	if n, err := mailbox.NormalizeName(user); err != nil || n != user {
		return rep, fmt.Errorf("%q is not a valid user name", user)
	}
	h, err := m.Profile.Host(to)
	if err != nil {
		return rep, err
	}
	if !h.HasRole(cluster.RoleStorage) {
		return rep, fmt.Errorf("%s is not a storage host in %s", to, m.Profile.Source)
	}
	if _, pending, err := m.Load(user); err != nil {
		return rep, err
	} else if pending {
		return rep, fmt.Errorf("a move of %s is journaled and unfinished: run `correoctl mailbox move -resume %s` (or -abort)", user, user)
	}
	from, state, err := m.Dir.User(ctx, user)
	if err != nil {
		return rep, err
	}
	rep.From = from
	switch {
	case from == to:
		return rep, fmt.Errorf("%s's mailbox is already on %s", user, to)
	case state == directory.StateMoving:
		return rep, fmt.Errorf("%s is marked moving in passwd but no move is journaled here: if no other correoctl is moving it, set it back with `correoctl users mod -state active %s`", user, user)
	}
	// A Maildir of the user already live on the target would only be
	// found at the commit, with the source frozen: refuse now.
	dst, err := m.dial(ctx, to)
	if err != nil {
		return rep, err
	}
	st, err := dst.Status(user)
	dst.Close()
	if err != nil {
		return rep, err
	}
	if st.Live && !strings.HasPrefix(st.Marker, "moved") {
		return rep, fmt.Errorf("%s already holds a Maildir of %s that was not moved there: move it aside on %s before moving the mailbox there", to, user, to)
	}
	j := &Journal{User: user, From: from, To: to, State: state, Step: StepCopy, Started: time.Now().UTC()}
	if err := m.save(j); err != nil {
		return rep, err
	}
	m.note("moving %s from %s to %s", user, from, to)
	return m.run(ctx, j, rep)
}

// Resume finishes a journaled move from the step it reached.
func (m *Mover) Resume(ctx context.Context, user string) (Report, error) {
	j, ok, err := m.Load(user)
	if err != nil {
		return Report{}, err
	}
	if !ok {
		return Report{}, fmt.Errorf("no move of %s is journaled in %s", user, m.journalDir())
	}
	m.note("resuming the move of %s from %s to %s at step %s", user, j.From, j.To, j.Step)
	return m.run(ctx, j, Report{User: user, From: j.From, To: j.To})
}

// Abort rolls back a journaled move that has not reached its commit:
// the source thawed, passwd as before, the target's stage removed.
func (m *Mover) Abort(ctx context.Context, user string) error {
	j, ok, err := m.Load(user)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no move of %s is journaled in %s", user, m.journalDir())
	}
	if j.Step != StepCopy && j.Step != StepFreeze {
		return fmt.Errorf("the move of %s reached its %s step: %s serves the mailbox now; finish it with -resume", user, j.Step, j.To)
	}
	return m.rollback(ctx, j, errors.New("aborted by the operator"))
}

func (m *Mover) rollback(ctx context.Context, j *Journal, cause error) error {
	var errs []error
	if j.Step == StepFreeze {
		if src, err := m.dial(ctx, j.From); err != nil {
			errs = append(errs, err)
		} else {
			// A copy already marked moved was not frozen by this move
			// (its freeze refused it) and thaw refuses it for good:
			// there is nothing to undo there, and counting it as a
			// failure would leave a journal no -abort can clear.
			if st, err := src.Status(j.User); err != nil || !strings.HasPrefix(st.Marker, "moved") {
				if err := retry(ctx, func() error { return src.Thaw(j.User) }); err != nil {
					errs = append(errs, err)
				}
			}
			src.Close()
		}
		if err := m.Dir.Set(ctx, j.User, j.State, j.From); err != nil {
			errs = append(errs, err)
		}
	}
	// The target's partial copy is only disk space: it is never served,
	// and the next move of the user to that host continues from it. A
	// target that cannot be reached (it may be why the move failed) does
	// not keep the rollback from finishing.
	dst, err := m.dial(ctx, j.To)
	if err == nil {
		err = retry(ctx, func() error { return dst.Abort(j.User) })
		dst.Close()
	}
	if err != nil {
		m.note("the partial copy of %s on %s stays until the next move there (%v)", j.User, j.To, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v; rolling back failed too (%v): run `correoctl mailbox move -abort %s` again", cause, errors.Join(errs...), j.User)
	}
	if err := m.finish(j.User); err != nil {
		return err
	}
	m.note("rolled back the move of %s: its mailbox stays on %s", j.User, j.From)
	return cause
}

func (m *Mover) run(ctx context.Context, j *Journal, rep Report) (Report, error) {
	start := time.Now()
	dst, err := m.dial(ctx, j.To)
	if err != nil {
		return rep, fmt.Errorf("%w; the move is journaled: -resume once %s is reachable", err, j.To)
	}
	defer dst.Close()
	var frozenAt time.Time
	if j.Step == StepCopy {
		// Live passes: the first copies everything, the second what
		// arrived meanwhile, so the frozen pass is short.
		for i := 0; i < 2; i++ {
			var p Pass
			err := retry(ctx, func() (err error) {
				p, err = dst.Pull(j.User, j.From, m.rate(), m.progress(j.User, "live"))
				return err
			})
			if err != nil {
				return rep, m.rollback(ctx, j, fmt.Errorf("copying %s's mailbox: %w", j.User, err))
			}
			rep.Live = append(rep.Live, p)
			m.note("copied %d files, %d bytes of %d in %s", p.Files, p.Bytes, p.Total, p.Took.Round(time.Millisecond))
			if p.Files == 0 && p.Removed == 0 {
				break
			}
		}
		j.Step = StepFreeze
		if err := m.save(j); err != nil {
			return rep, err
		}
	}
	if j.Step == StepFreeze {
		frozenAt = time.Now()
		if err := m.Dir.Set(ctx, j.User, directory.StateMoving, ""); err != nil {
			return rep, m.rollback(ctx, j, fmt.Errorf("marking %s moving in passwd: %w", j.User, err))
		}
		src, err := m.dial(ctx, j.From)
		if err != nil {
			return rep, m.rollback(ctx, j, err)
		}
		err = retry(ctx, func() error { return src.Freeze(j.User, j.To) })
		src.Close()
		if err != nil {
			return rep, m.rollback(ctx, j, err)
		}
		var p Pass
		err = retry(ctx, func() (err error) {
			p, err = dst.Pull(j.User, j.From, m.rate(), m.progress(j.User, "frozen"))
			return err
		})
		if err != nil {
			return rep, m.rollback(ctx, j, fmt.Errorf("copying what changed: %w", err))
		}
		rep.Delta = p
		var v Pass
		err = retry(ctx, func() (err error) {
			v, err = dst.Verify(j.User, j.From)
			return err
		})
		if err != nil {
			return rep, m.rollback(ctx, j, err)
		}
		rep.Verified = v
		m.note("frozen copy: %d files, %d bytes; verified %d files, %d bytes", p.Files, p.Bytes, v.Files, v.Bytes)
		j.Step = StepCommit
		if err := m.save(j); err != nil {
			return rep, err
		}
	}
	if j.Step == StepCommit {
		if err := retry(ctx, func() error { return dst.Commit(j.User) }); err != nil {
			return rep, fmt.Errorf("committing on %s: %w; the move is journaled: -resume", j.To, err)
		}
		j.Step = StepSwitch
		if err := m.save(j); err != nil {
			return rep, err
		}
	}
	if j.Step == StepSwitch {
		if err := m.Dir.Set(ctx, j.User, j.State, j.To); err != nil {
			return rep, fmt.Errorf("pointing passwd at %s: %w; the move is journaled: -resume", j.To, err)
		}
		if !frozenAt.IsZero() {
			rep.Frozen = time.Since(frozenAt)
		}
		j.Step = StepRetire
		if err := m.save(j); err != nil {
			return rep, err
		}
	}
	if j.Step == StepRetire {
		src, err := m.dial(ctx, j.From)
		if err == nil {
			err = retry(ctx, func() error { return src.Retire(j.User, j.To) })
			src.Close()
		}
		if err != nil {
			return rep, fmt.Errorf("marking the old copy on %s moved: %w; the mailbox already lives on %s; -resume to finish", j.From, err, j.To)
		}
	}
	if err := m.finish(j.User); err != nil {
		return rep, err
	}
	rep.Took = time.Since(start)
	m.note("moved %s to %s in %s (frozen %s)", j.User, j.To, rep.Took.Round(time.Millisecond), rep.Frozen.Round(time.Millisecond))
	return rep, nil
}

// busyWait is how long a step waits for another operation on the same
// mailbox to end: the copy of a killed correoctl stops within a second,
// a freeze within freeze_timeout.
const busyWait = time.Minute

// retry runs f again while the host answers that the mailbox is busy.
func retry(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(busyWait)
	for {
		err := f()
		if !IsBusy(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (m *Mover) progress(user, phase string) func(Progress) {
	if m.Progress == nil {
		return nil
	}
	return func(p Progress) { m.Progress(user, phase, p) }
}
