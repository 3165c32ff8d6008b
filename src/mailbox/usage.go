package mailbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Usage is a mailbox's quota usage, the one definition pdeliveryd's quota
// check and imapd's QUOTA share: the sum of the S= sizes (bytes on disk)
// of the messages in new/ and cur/ of the Maildir and of every Maildir++
// folder under it (a directory ".Name" holding cur/). Files in tmp/ are
// not counted. Symbolic links are not followed: one could point at
// another user's mail. A Maildir that does not exist yet holds 0 bytes;
// a folder removed during the scan counts 0.
func Usage(root string) (int64, error) {
	total, err := listedSize(root)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return total, nil
	}
	if err != nil {
		return 0, fmt.Errorf("quota usage of %s: %w", root, err)
	}
	for _, e := range ents {
		n := e.Name()
		if len(n) < 2 || n[0] != '.' || n == ".." || !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		dir := filepath.Join(root, n)
		if fi, err := os.Lstat(filepath.Join(dir, "cur")); err != nil || !fi.IsDir() {
			continue
		}
		size, err := listedSize(dir)
		if err != nil {
			return 0, err
		}
		total += size
	}
	return total, nil
}

func listedSize(dir string) (int64, error) {
	msgs, err := New(dir).List()
	if err != nil {
		return 0, fmt.Errorf("quota usage: %w", err)
	}
	var total int64
	for _, m := range msgs {
		total += m.Size
	}
	return total, nil
}
