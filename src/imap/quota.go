package imap

import (
	"fmt"
	"strings"

	"correo/src/imapwire"
	"correo/src/mailstore"
)

// QUOTA (RFC 9208). A user has one quota root, "", holding every folder:
// the directory's quota in bytes (0: none), against the usage pdeliveryd
// checks at delivery (mailbox.Usage), shown in units of 1024 octets. The
// quota is read at login; it is set with correoctl, not SETQUOTA.

const quotaRoot = `""`

// quotaLine is the QUOTA response for the user's root.
func (ss *session) quotaLine() (string, error) {
	used, err := ss.store.Usage()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("QUOTA %s (STORAGE %d %d)", quotaRoot, (used+1023)/1024, ss.user.Quota/1024), nil
}

func (ss *session) getQuotaRoot(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 1 {
		return ss.bad1(cmd, "GETQUOTAROOT takes a mailbox name.")
	}
	name, ok := ss.folderArg(cmd.Args[0])
	if !ok {
		return ss.bad1(cmd, "GETQUOTAROOT takes a mailbox name.")
	}
	if _, err := ss.store.Status(name); err != nil {
		return ss.no(cmd, err)
	}
	if ss.user.Quota <= 0 {
		ss.w.Untagged("QUOTAROOT " + ss.wireName(name))
		ss.w.Tagged(cmd.Tag, "OK", "", "GETQUOTAROOT completed: no quota.")
		return false
	}
	line, err := ss.quotaLine()
	if err != nil {
		return ss.no(cmd, err)
	}
	ss.w.Untagged("QUOTAROOT " + ss.wireName(name) + " " + quotaRoot)
	ss.w.Untagged(line)
	ss.w.Tagged(cmd.Tag, "OK", "", "GETQUOTAROOT completed.")
	return false
}

func (ss *session) getQuota(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 1 {
		return ss.bad1(cmd, "GETQUOTA takes a quota root.")
	}
	root, ok := cmd.Args[0].AString()
	if !ok {
		return ss.bad1(cmd, "GETQUOTA takes a quota root.")
	}
	if root != "" || ss.user.Quota <= 0 {
		ss.w.Tagged(cmd.Tag, "NO", "NONEXISTENT", "No such quota root; GETQUOTAROOT INBOX names yours.")
		return false
	}
	line, err := ss.quotaLine()
	if err != nil {
		return ss.no(cmd, err)
	}
	ss.w.Untagged(line)
	ss.w.Tagged(cmd.Tag, "OK", "", "GETQUOTA completed.")
	return false
}

// overQuota says whether adding bytes would take the user over quota
// (APPEND and COPY; a MOVE adds nothing). Like pdeliveryd's check it is
// soft: two concurrent APPENDs may both pass.
func (ss *session) overQuota(bytes int64) (bool, error) {
	if ss.user.Quota <= 0 {
		return false, nil
	}
	used, err := ss.store.Usage()
	if err != nil {
		return false, err
	}
	return used+bytes > ss.user.Quota, nil
}

func (ss *session) refuseOverQuota(cmd *imapwire.Command) bool {
	ss.w.Tagged(cmd.Tag, "NO", "OVERQUOTA", fmt.Sprintf("%s refused: it would exceed your quota of %d KB; delete or expunge messages first.", strings.ToUpper(cmd.Name), ss.user.Quota/1024))
	return false
}

// copySize is the bytes a COPY of uids adds.
func copySize(mb *mailstore.Mailbox, uids []uint32) int64 {
	var n int64
	for _, u := range uids {
		if s := mb.Seq(u); s > 0 {
			n += mb.Messages()[s-1].Size
		}
	}
	return n
}
