package mailbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestMoving(t *testing.T) {
	root := t.TempDir()
	if Moving(root) || Moving(filepath.Join(root, "none")) || CheckNotMoving(root) != nil {
		t.Fatal("a Maildir without the marker, or without a directory, is not moving")
	}
	if err := os.WriteFile(filepath.Join(root, MovingMarker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !Moving(root) || !errors.Is(CheckNotMoving(root), ErrMoving) {
		t.Fatal("the marker freezes the Maildir")
	}
	// A path through a file: the caller's own write reports that.
	if Moving(filepath.Join(root, MovingMarker, "x")) {
		t.Error("a Maildir path that is not a directory is not moving")
	}
}
