package daemon

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// DropPrivileges switches a daemon started as root to the profile's
// run_as account once its sockets are bound (ports below 1024 need root;
// nothing after that does). Its state directory is handed to that
// account first, since the daemon keeps writing there. With no run_as, or
// when not root, it does nothing: the service manager chose the account.
func (e *Env) DropPrivileges() error {
	name := e.Profile.Cluster.RunAs
	if name == "" || os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("cluster.run_as %q: %w (create the account, or leave run_as empty and let the service manager pick one)", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 {
		return fmt.Errorf("cluster.run_as %q: unusable account (uid %s, gid %s)", name, u.Uid, u.Gid)
	}
	err = filepath.WalkDir(e.StateDir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("handing the state directory %s to %s: %w", e.StateDir, name, err)
	}
	// Order matters: supplementary groups and the group while still root,
	// the user last. Go applies each to every thread of the process.
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("dropping supplementary groups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("switching to group %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("switching to user %s: %w", name, err)
	}
	e.Log.Info("dropped root", "user", name, "uid", uid, "gid", gid)
	return nil
}
