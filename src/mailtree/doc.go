// Package mailtree is the file-level engine of an online mailbox move: it
// lists one user's Maildir++ tree (Scan), compares two listings (Diff,
// Verify), and builds the copy on the target host (Stage). It does no
// networking; a transport carries manifests (Encode, DecodeManifest) and
// file contents between the two sides.
//
// A move runs as passes. The first copies the tree while the mailbox is
// live; later ones (the delta, once the mailbox is frozen by
// mailbox.MovingMarker) copy only what changed. Each pass is:
//
//	src := Scan(root)                       on the source
//	dst := stage.Manifest()                 on the target (resumes after a crash)
//	fetch, remove := Diff(src, dst)
//	for e in remove: stage.Remove(e)        before the fetches: a path that
//	                                        changed kind is in both lists
//	for e in fetch:  f, cur := Open(root, e) on the source; the target
//	                 stage.Put(cur, body, sum) (or Create/Write/Commit)
//	stage.Sync()                            everything durable
//	Verify(Scan(root), stage.Manifest())    once the source is frozen
//
// # Durability and crashes
//
// Nothing is served from the stage before it is committed (renamed into
// place by the mover), and that happens only after a Sync. So files are
// not fsynced one by one, which would cost a disk flush per message:
// Sync makes a whole pass durable at once with one syncfs(2) on the
// stage's file system.
//
// The price is that, between the first change of a pass and the end of
// its Sync, a crash of the host (power loss, kernel panic) can leave
// files with the right name, size and mtime but lost contents (zeros or
// an empty file), which Diff and Verify, comparing listings, would take
// as copied. So before it changes anything, a pass durably creates the
// marker file .mailtree-dirty in the stage root, and only a Sync that
// succeeded removes it. A stage found with the marker by OpenStage, or by
// Manifest when no pass of its own is in progress, was interrupted
// (killed, crashed, or closed without Sync) and cannot be trusted: it is
// emptied, marker last, and the next pass copies everything again. A
// process killed without a crash of the host loses nothing on disk, but
// it cannot be told apart from one. Scan never lists the marker (it
// starts with the stage's ".mailtree-" prefix), so Diff and Verify never
// see it, and no Sync that succeeded leaves it for the commit.
//
// A stage is used by one Stage value at a time: another one, in this
// process or another, would take the first one's pass for an interrupted
// one.
//
// Names, contents, permission bits and modification times are kept
// exactly, because the mail protocols read them: IMAP's INTERNALDATE is the
// file's mtime, POP3's UIDL hashes the file name, flags live in the name
// and quota usage is its S= part.
//
// Every path that comes from the other side goes through ValidPath, and the
// stage walks paths one component at a time with O_NOFOLLOW, so a hostile
// or buggy peer cannot make the target write outside the stage, and a
// symbolic link in the source tree (which could point at another user's
// mail) is neither listed nor followed.
package mailtree
