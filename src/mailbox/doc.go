// Package mailbox owns user mailboxes on a storage host: where a user's home
// lives under the mail root (the layout schemes), the single rule for what a
// user name may be (NormalizeName), and the Maildir in that home (delivery and
// reading, with no locks).
//
// # Layout schemes
//
// One directory with every user (the paper's /var/spool/mail) gets slow to
// scan and to update long before the disk is full. The paper spreads homes
// over three levels named after characters of the user name, and Fig. 4
// compares three choices of characters:
//
//	first3       juan → j/u/a/juan   the paper's choice; easy to find by eye
//	first2last1  juan → j/u/n/juan
//	first1last2  juan → j/a/n/juan   first character, then the last two
//	hash2        juan → xx/yy/juan   FNV-1a 32-bit of the name, two hex levels
//
// Real names are skewed (many start with "ma", "ju", "jo"), so first3
// crowds some leaves; using last characters spreads better, and the hash
// spreads evenly at the price of not being guessable. LayoutReport measures
// this for a real user list. Names shorter than three characters are padded
// with '_' (j → j/_/_/j), and '.' or '-' in a level directory also become '_'
// so that no level is ever "." or "-". The leaf always ends in the full,
// normalised name, so two users never share a home even when they share a
// leaf.
//
// # Maildir and the fsync discipline
//
// correo acknowledges a message (LMTP 250) only when it would survive a crash
// at that instant. Deliver therefore:
//
//  1. creates tmp/<unique> with O_EXCL, so no two deliveries share a file;
//  2. writes the message and fsyncs the file: the data must be on disk before
//     any name points at it, or a crash could leave a truncated message in new/;
//  3. renames it into new/<unique>,S=<size>,W=<wire size>: the message
//     appears atomically, whole or not at all, to readers;
//  4. fsyncs new/: a rename lives in the directory, and until the directory is
//     on disk a crash can undo it and lose an acknowledged message.
//
// When a Maildir or its parents are created, each new directory's parent is
// fsynced for the same reason: a new/ that vanishes after a crash takes its
// messages with it. A crash between 2 and 3 leaves only a file in tmp/, never
// seen by readers and removed later by CleanTmp (TmpMaxAge, 36 hours).
//
// Reading needs no fsync except to make deletions and new→cur moves durable,
// which matter less (a crash brings back a message the user already saw) and
// are batched by Sync.
//
// There are no locks: unique names, O_EXCL and atomic rename make any number
// of concurrent deliveries and readers safe, across processes and hosts.
package mailbox
