package directory

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
)

// Journal file format: a sequence of records, each
//
//	length  uint32 LE: bytes of payload (1 .. maxJournalRecord)
//	crc     uint32 LE: CRC-32C (Castagnoli) of the payload
//	payload the Entry as JSON
//
// appended with one write and fsynced before the change is acknowledged.

const maxJournalRecord = 1 << 16

func encodeRecord(e Entry) ([]byte, error) {
	payload, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if len(payload) > maxJournalRecord {
		return nil, fmt.Errorf("journal entry of %d bytes, more than %d", len(payload), maxJournalRecord)
	}
	rec := make([]byte, 8, 8+len(payload))
	binary.LittleEndian.PutUint32(rec, uint32(len(payload)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(payload, castagnoli))
	return append(rec, payload...), nil
}

// errShortRecord means the data ends inside a record.
var errShortRecord = errors.New("record cut short")

// decodeRecord decodes the record at the start of b and returns it with
// its length. errShortRecord: b ends inside the record. Any other error is
// a damaged record.
func decodeRecord(b []byte) (Entry, int, error) {
	var e Entry
	if len(b) < 8 {
		return e, 0, errShortRecord
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > maxJournalRecord {
		return e, 0, fmt.Errorf("bad record length %d", n)
	}
	if uint64(len(b)-8) < uint64(n) {
		return e, 0, errShortRecord
	}
	payload := b[8 : 8+n]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return e, 0, errors.New("checksum mismatch")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, 0, fmt.Errorf("bad entry: %v", err)
	}
	if dec.More() {
		return e, 0, errors.New("bad entry: trailing data")
	}
	return e, 8 + int(n), nil
}

// journalScan is the result of reading a whole journal file.
type journalScan struct {
	entries []Entry
	offsets []int64 // file offset of each entry
	end     int64   // end of the last good record
	torn    string  // why the tail after end was dropped ("" if none)
}

// scanJournal decodes every record. A damaged or incomplete record at the
// very end (what a crash during an unacknowledged append leaves) is
// reported in torn, with end marking where to truncate; damage with more
// data after it is an error naming file and offset.
func scanJournal(name string, b []byte) (journalScan, error) {
	var js journalScan
	off := 0
	for off < len(b) {
		e, n, err := decodeRecord(b[off:])
		if err == nil {
			js.entries = append(js.entries, e)
			js.offsets = append(js.offsets, int64(off))
			off += n
			continue
		}
		rest := b[off:]
		switch {
		case err == errShortRecord:
			js.torn = fmt.Sprintf("%s: dropped a torn last record at offset %d (%d bytes; a crash cut it short before it was acknowledged)", name, off, len(rest))
		case allZero(rest):
			js.torn = fmt.Sprintf("%s: dropped %d zero bytes at offset %d (space allocated by a crash before an acknowledged write)", name, len(rest), off)
		case recordReachesEnd(rest):
			js.torn = fmt.Sprintf("%s: dropped a damaged last record at offset %d (%v; a crash during an unacknowledged append)", name, off, err)
		default:
			return js, fmt.Errorf("%s: corrupt record at offset %d: %v (records follow it, so this is not a torn write: refusing to guess)", name, off, err)
		}
		js.end = int64(off)
		return js, nil
	}
	js.end = int64(off)
	return js, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// recordReachesEnd reports whether the record header at b claims a length
// that ends exactly at the end of b (so it is the last record).
func recordReachesEnd(b []byte) bool {
	if len(b) < 8 {
		return true
	}
	n := binary.LittleEndian.Uint32(b)
	return n > 0 && n <= maxJournalRecord && uint64(len(b)) == 8+uint64(n)
}
