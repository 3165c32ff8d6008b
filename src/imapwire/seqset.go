package imapwire

import (
	"slices"
	"strconv"
	"strings"
)

// SeqRange is Start:Stop as written; 0 stands for "*" (0 is no message
// number or UID, so it is free).
type SeqRange struct{ Start, Stop uint32 }

// SeqSet is a sequence set of message numbers or UIDs.
type SeqSet struct {
	// Saved is "$", the result of the last SEARCH ... RETURN (SAVE)
	// (RFC 5182); the server substitutes it and Set is empty.
	Saved bool
	// Set is the ranges as written.
	Set []SeqRange
}

// ParseSeqSet parses "1,3:5,7:*" or "$". Numbers run from 1 to
// 4294967295 (nz-number of RFC 9051); "0", leading zeros and anything
// larger are refused.
func ParseSeqSet(s string) (SeqSet, error) {
	if s == "$" {
		return SeqSet{Saved: true}, nil
	}
	if s == "" {
		return SeqSet{}, &Error{Text: "Empty sequence set"}
	}
	var set SeqSet
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := parseSeqNumber(lo)
		if err != nil {
			return SeqSet{}, err
		}
		b := a
		if isRange {
			if b, err = parseSeqNumber(hi); err != nil {
				return SeqSet{}, err
			}
		}
		set.Set = append(set.Set, SeqRange{a, b})
	}
	return set, nil
}

func parseSeqNumber(s string) (uint32, error) {
	if s == "*" {
		return 0, nil
	}
	if s == "" {
		return 0, &Error{Text: "Invalid sequence set: empty number"}
	}
	if s == "$" {
		return 0, &Error{Text: "Invalid sequence set: $ must stand alone"}
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, &Error{Text: "Invalid sequence set: " + strconv.Quote(s) + " is not a number"}
		}
	}
	if s[0] == '0' {
		return 0, &Error{Text: "Invalid sequence set: message numbers and UIDs start at 1, without leading zeros"}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, &Error{Text: "Invalid sequence set: " + s + " is over 4294967295"}
	}
	return uint32(n), nil
}

// resolve gives r with "*" as max, low end first; ok false when "*" has no
// value (max 0: an empty mailbox).
func (r SeqRange) resolve(max uint32) (SeqRange, bool) {
	if r.Start == 0 {
		r.Start = max
	}
	if r.Stop == 0 {
		r.Stop = max
	}
	if r.Start == 0 || r.Stop == 0 {
		return SeqRange{}, false
	}
	if r.Start > r.Stop {
		r.Start, r.Stop = r.Stop, r.Start
	}
	return r, true
}

// Contains reports whether n is in the set when "*" is max. With max 0
// (an empty mailbox) "*" stands for nothing, so "1:*" contains nothing
// and "1:3" still contains 1 to 3. A Saved set contains nothing: the
// server substitutes it first.
func (s SeqSet) Contains(n, max uint32) bool {
	for _, r := range s.Set {
		if r, ok := r.resolve(max); ok && r.Start <= n && n <= r.Stop {
			return true
		}
	}
	return false
}

// Ranges resolves "*" to max and returns the set sorted, with overlapping
// and adjacent ranges merged; ranges containing "*" vanish when max is 0.
// Their number is bounded by the set's length, not by the numbers in it.
func (s SeqSet) Ranges(max uint32) []SeqRange {
	out := make([]SeqRange, 0, len(s.Set))
	for _, r := range s.Set {
		if r, ok := r.resolve(max); ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b SeqRange) int {
		if a.Start != b.Start {
			if a.Start < b.Start {
				return -1
			}
			return 1
		}
		return 0
	})
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && uint64(r.Start) <= uint64(merged[n-1].Stop)+1 {
			merged[n-1].Stop = max32(merged[n-1].Stop, r.Stop)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

func max32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// CheckSeq is RFC 9051 section 6.4's rule for message sequence numbers:
// a number above count, or "*" in an empty mailbox, makes the command BAD.
// (UIDs that do not exist are simply not matched.)
func (s SeqSet) CheckSeq(count uint32) error {
	for _, r := range s.Set {
		if (r.Start == 0 || r.Stop == 0) && count == 0 {
			return &Error{Text: "No messages: * is not a message number in an empty mailbox"}
		}
		if r.Start > count || r.Stop > count {
			return &Error{Text: "Message number out of range: the mailbox has " + strconv.FormatUint(uint64(count), 10)}
		}
	}
	return nil
}

// String writes the set as IMAP does.
func (s SeqSet) String() string {
	if s.Saved {
		return "$"
	}
	var b strings.Builder
	for i, r := range s.Set {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(seqNum(r.Start))
		if r.Stop != r.Start {
			b.WriteByte(':')
			b.WriteString(seqNum(r.Stop))
		}
	}
	return b.String()
}

func seqNum(n uint32) string {
	if n == 0 {
		return "*"
	}
	return strconv.FormatUint(uint64(n), 10)
}
