// Package dedup makes a delivery inside the cluster idempotent: smtpd
// sends every LMTP transaction with a delivery key, pdeliveryd records
// the key of every recipient it stored, and a repeated key gets the 250
// of the first delivery instead of a second copy in the mailbox.
//
// # Why
//
// A queue retries what it cannot prove was delivered: a crash of smtpd
// between the storage host's 250 and the queue's record of it, or of
// pdeliveryd between its Maildir fsync and its 250, brings the message
// back, and without a key it is stored twice.
//
// # The key
//
// A delivery key names one queued message: its queue id and its trace id
// (80 random bits, persisted in the envelope, so every retry of the
// message carries the same key, and two hosts' queues never do). The
// recipient comes from RCPT: pdeliveryd's record is per (key, recipient),
// so a retry for the recipients still pending is answered for each.
//
// smtpd sends the key as the first line of the message, in a header only
// smtpd's LMTP client writes:
//
//	X-Correo-Delivery-Key: 0190f2c3a4b5c0000012.abcdefghijklmnop 1:<32 hex digits>
//
// The last field is a MAC (HMAC-SHA-256, 128 bits) of the key with the
// cluster key file's key of that id. pdeliveryd honours the line only
// when it is the very first line of the message and its MAC is right,
// and removes it before storing: a sender outside the cluster (through
// smtpd, Postfix or pdelivery) cannot produce the MAC, and a copy of a
// valid line never reaches a mailbox. Without a valid line a delivery is
// handled exactly as before.
//
// # Durability, and the window left
//
// pdeliveryd appends an intent for each (key, recipient) before the
// Maildir write (no sync: it must precede the rename into new/ in the
// page cache, which a SIGKILL keeps), then, once the Maildir write is
// durable, a delivered record, fdatasynced before the 250; concurrent
// deliveries share that fdatasync. After a crash a key found as an
// intent only is Unsure: the next attempt looks in the mailbox for a
// message with the trace id, named near the intent's time, and answers
// 250 if it is there. What remains:
//
//   - a power loss (not a kill) after the Maildir directory fsync and
//     before the key log's fdatasync: the intent may not have reached the
//     disk, the message has; the retry stores it again;
//   - a message found Unsure that the user deleted (POP3 DELE, IMAP
//     EXPUNGE) between the crash and the retry is stored again;
//   - keys past the bounds (MaxAge, MaxKeys) are forgotten;
//   - a mailbox moved to another storage host between the attempt and its
//     retry: the record stays on the old host.
//
// Each is a duplicate, never a loss: nothing here can make pdeliveryd
// answer 250 for a message it does not hold, except a key it recorded as
// delivered, which it writes only after the Maildir write is durable.
package dedup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"correo/src/keyfile"
)

// Header is the field that carries the key, always as the message's
// first line.
const Header = "X-Correo-Delivery-Key"

// MaxKeyLen bounds a key: a queue id, a dot and a trace id are 37.
const MaxKeyLen = 100

// macLen is the MAC's length in bytes: 128 bits, beyond guessing.
const macLen = 16

// macLabel separates this use of the cluster key from every other.
const macLabel = "correo delivery key v1\x00"

// ValidKey reports whether k may be sent: 1 to MaxKeyLen letters, digits,
// '.', '-' and '_' (no space: the header's fields are split on spaces).
func ValidKey(k string) bool {
	if k == "" || len(k) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func mac(secret [keyfile.KeySize]byte, key string) []byte {
	m := hmac.New(sha256.New, secret[:])
	m.Write([]byte(macLabel))
	m.Write([]byte(key))
	return m.Sum(nil)[:macLen]
}

// Line is the header line (CRLF-terminated) that carries key, sealed
// with the ring's current key; "" when key is not valid.
func Line(ring *keyfile.Ring, key string) string {
	if ring == nil || len(ring.Keys) == 0 || !ValidKey(key) {
		return ""
	}
	k := ring.Current()
	return Header + ": " + key + " " + strconv.Itoa(int(k.ID)) + ":" + hex.EncodeToString(mac(k.Secret, key)) + "\r\n"
}

// ParseLine checks a message's first line (without its line end, CR
// allowed) and returns the key it carries when the line is the key header
// with a MAC made by a key of the ring. isHeader says whether the line is
// the key header at all, valid or not.
func ParseLine(ring *keyfile.Ring, line string) (key string, ok, isHeader bool) {
	line = strings.TrimSuffix(line, "\r")
	name, value, found := strings.Cut(line, ":")
	if !found || !strings.EqualFold(name, Header) {
		return "", false, false
	}
	if ring == nil {
		return "", false, true
	}
	f := strings.Fields(value)
	if len(f) != 2 || !ValidKey(f[0]) {
		return "", false, true
	}
	id, m, found := strings.Cut(f[1], ":")
	n, err := strconv.ParseUint(id, 10, 8)
	if !found || err != nil || len(m) != 2*macLen {
		return "", false, true
	}
	got, err := hex.DecodeString(m)
	if err != nil {
		return "", false, true
	}
	k, known := ring.Lookup(uint8(n))
	if !known || !hmac.Equal(got, mac(k.Secret, f[0])) {
		return "", false, true
	}
	return f[0], true, true
}

// Key is what the store records for one recipient of one message: a hash
// of the delivery key and the recipient, fixed in size whatever their
// lengths.
type Key [16]byte

// RecipientKey is the record of key for the recipient address as given
// in RCPT (domain case folded: a retry sends the same address, but a
// lower-cased copy must not count as another recipient).
func RecipientKey(key, rcpt string) Key {
	if at := strings.LastIndexByte(rcpt, '@'); at >= 0 {
		rcpt = rcpt[:at] + strings.ToLower(rcpt[at:])
	}
	h := sha256.New()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(rcpt))
	var k Key
	copy(k[:], h.Sum(nil))
	return k
}
