package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// A slot is a file of slots/ that holds one message at a time and is
// reused for the next one: a 64-byte header, the message, then the
// envelope it was accepted with (JSON). Committing a message overwrites a
// slot in place and fdatasyncs it: no file is created, renamed or
// removed, so no directory changes and no inode is allocated per message
// (on ext4 those are the dearest steps of a small durable write; see the
// package doc).
//
// Header (integers little-endian):
//
//	0   4  magic "CQS1"
//	4   1  state: 'C' committed (queued), anything else free
//	5   3  zero
//	8  20  queue id
//	28  8  message length
//	36  4  envelope length
//	40  4  CRC-32C of message, envelope and header bytes 8..40
//	44 20  zero
//
// The state byte is outside the checksum: marking a finished message free
// is a one-byte write. A slot whose header says committed but whose bytes
// do not match the checksum was torn by a crash before its fdatasync
// returned, so it was never acknowledged.
const (
	slotHeaderLen  = 64
	slotMagic      = "CQS1"
	slotCommitted  = 'C'
	slotFree       = 'F'
	slotStateByte  = 4
	slotNameDigits = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type slotHeader struct {
	state  byte
	id     string
	msgLen int64
	envLen int64
	sum    uint32
}

// fields are the header bytes the checksum covers.
func (h slotHeader) fields() []byte {
	b := make([]byte, 32)
	copy(b, h.id)
	binary.LittleEndian.PutUint64(b[20:], uint64(h.msgLen))
	binary.LittleEndian.PutUint32(b[28:], uint32(h.envLen))
	return b
}

func (h slotHeader) encode() []byte {
	b := make([]byte, slotHeaderLen)
	copy(b, slotMagic)
	b[slotStateByte] = h.state
	copy(b[8:40], h.fields())
	binary.LittleEndian.PutUint32(b[40:], h.sum)
	return b
}

// errNotInUse marks a slot that holds no queued message: free, never
// written, or cut short while being written.
var errNotInUse = errors.New("holds no queued message")

// decodeSlotHeader reads a header; a slot not marked committed gives
// errNotInUse.
func decodeSlotHeader(b []byte) (slotHeader, error) {
	if len(b) < slotHeaderLen || string(b[:4]) != slotMagic || b[slotStateByte] != slotCommitted {
		return slotHeader{}, errNotInUse
	}
	h := slotHeader{
		state:  b[slotStateByte],
		id:     string(b[8:28]),
		msgLen: int64(binary.LittleEndian.Uint64(b[28:])),
		envLen: int64(binary.LittleEndian.Uint32(b[36:])),
		sum:    binary.LittleEndian.Uint32(b[40:]),
	}
	if !ValidID(h.id) {
		return slotHeader{}, fmt.Errorf("slot header names queue id %q: %w", h.id, errTorn)
	}
	if h.msgLen < 0 || h.msgLen > 1<<40 || h.envLen <= 0 || h.envLen > maxEnvelopeBytes {
		return slotHeader{}, fmt.Errorf("slot header of %s gives %d message and %d envelope bytes: %w", h.id, h.msgLen, h.envLen, errTorn)
	}
	return h, nil
}

// readSlot reads the header of an open slot and, for a committed one, its
// envelope; verify checks the whole slot against its checksum.
func readSlot(f *os.File, verify bool) (slotHeader, *Envelope, error) {
	hb := make([]byte, slotHeaderLen)
	if n, err := f.ReadAt(hb, 0); n < slotHeaderLen {
		if err == io.EOF || err == nil {
			return slotHeader{}, nil, errNotInUse
		}
		return slotHeader{}, nil, fmt.Errorf("%s: reading the slot header: %w", f.Name(), err)
	}
	h, err := decodeSlotHeader(hb)
	if err != nil {
		if err == errNotInUse {
			return h, nil, err
		}
		return h, nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	fi, err := f.Stat()
	if err != nil {
		return h, nil, err
	}
	if end := slotHeaderLen + h.msgLen + h.envLen; fi.Size() < end {
		return h, nil, fmt.Errorf("%s: message %s needs %d bytes, the file has %d: %w", f.Name(), h.id, end, fi.Size(), errTorn)
	}
	if verify {
		c := crc32.New(castagnoli)
		if _, err := io.Copy(c, io.NewSectionReader(f, slotHeaderLen, h.msgLen+h.envLen)); err != nil {
			return h, nil, fmt.Errorf("%s: reading it to check its checksum: %w", f.Name(), err)
		}
		sum := crc32.Update(c.Sum32(), castagnoli, h.fields())
		if sum != h.sum {
			return h, nil, fmt.Errorf("%s: message %s has checksum %08x, its header says %08x: %w", f.Name(), h.id, sum, h.sum, errTorn)
		}
	}
	data := make([]byte, h.envLen)
	if _, err := f.ReadAt(data, slotHeaderLen+h.msgLen); err != nil {
		return h, nil, fmt.Errorf("%s: reading the envelope of %s: %w", f.Name(), h.id, err)
	}
	e, err := Decode(data)
	if err != nil {
		return h, nil, fmt.Errorf("%s: envelope of %s: %w", f.Name(), h.id, err)
	}
	if e.ID != h.id || e.Size != h.msgLen {
		return h, nil, fmt.Errorf("%s: envelope of %s says id %s and %d bytes, the header %d: %w", f.Name(), h.id, e.ID, e.Size, h.msgLen, errTorn)
	}
	return h, e, nil
}

// validSlotName reports whether name is a slot file's name, which keeps
// stray files out of the pool: digits only, at least slotNameDigits of
// them (numbers past 99999999 just grow longer), and few enough for a
// uint64.
func validSlotName(name string) bool {
	if len(name) < slotNameDigits || len(name) > 19 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return false
		}
	}
	return true
}
