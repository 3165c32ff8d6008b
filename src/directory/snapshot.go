package directory

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unsafe"
)

// Snapshot file format (also the stream a primary sends a secondary):
//
//	header  "correo-dir-snap1" (16 bytes)
//	        epoch, seq, count, arena-bytes hint: 4 × uint64 little-endian
//	count × user, in uid order, each as uvarint length + record:
//	        name, gecos, shell, hash, storage: uvarint length + bytes each
//	        uid, gid: uvarint; quota: varint; state: 1 byte
//	        alias count: uvarint, then each alias as uvarint length + bytes
//	trailer CRC-32C (Castagnoli) of everything before it: uint32 LE,
//	        then "end\n"
//
// Binary and length-prefixed so 1 M users decode in well under a second
// straight into an index builder, without a []User in between.

var (
	snapMagic   = []byte("correo-dir-snap1")
	snapTrailer = []byte("end\n")
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

type snapHeader struct {
	epoch, seq, count, arena uint64
}

// writeSnapshot encodes ix to w.
func writeSnapshot(w io.Writer, ix *Index, epoch, seq uint64) error {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
	var hdr [48]byte
	copy(hdr[:], snapMagic)
	binary.LittleEndian.PutUint64(hdr[16:], epoch)
	binary.LittleEndian.PutUint64(hdr[24:], seq)
	binary.LittleEndian.PutUint64(hdr[32:], uint64(ix.Len()))
	binary.LittleEndian.PutUint64(hdr[40:], uint64(len(ix.c.arena)))
	bw.Write(hdr[:])
	var buf []byte
	str := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	var rec []byte
	n := uint64(0)
	ix.each(0, func(u User) bool {
		buf = buf[:0]
		str(u.Name)
		str(u.Gecos)
		str(u.Shell)
		str(u.Hash)
		str(u.Storage)
		buf = binary.AppendUvarint(buf, uint64(u.UID))
		buf = binary.AppendUvarint(buf, uint64(u.GID))
		buf = binary.AppendVarint(buf, u.Quota)
		buf = append(buf, byte(u.State))
		buf = binary.AppendUvarint(buf, uint64(len(u.Aliases)))
		for _, a := range u.Aliases {
			str(a)
		}
		rec = binary.AppendUvarint(rec[:0], uint64(len(buf)))
		bw.Write(rec)
		bw.Write(buf)
		n++
		return true
	})
	if n != uint64(ix.Len()) {
		return fmt.Errorf("snapshot: wrote %d users, index has %d", n, ix.Len())
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	var tr [8]byte
	binary.LittleEndian.PutUint32(tr[:], crc.Sum32())
	copy(tr[4:], snapTrailer)
	_, err := w.Write(tr[:])
	return err
}

// sreader reads a stream keeping a CRC of exactly the bytes consumed.
type sreader struct {
	r        io.Reader
	buf      []byte
	pos, end int
	crcPos   int
	crc      uint32
	off      int64 // stream offset of buf[0]
}

func (s *sreader) fill(need int) error {
	if s.end-s.pos >= need {
		return nil
	}
	s.crc = crc32.Update(s.crc, castagnoli, s.buf[s.crcPos:s.pos])
	n := copy(s.buf, s.buf[s.pos:s.end])
	s.off += int64(s.pos)
	s.pos, s.end, s.crcPos = 0, n, 0
	if need > len(s.buf) {
		nb := make([]byte, max(need, 2*len(s.buf)))
		copy(nb, s.buf[:n])
		s.buf = nb
	}
	for s.end < need {
		m, err := s.r.Read(s.buf[s.end:])
		s.end += m
		if err != nil {
			if s.end >= need {
				return nil
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (s *sreader) offset() int64 { return s.off + int64(s.pos) }

func (s *sreader) bytes(n int) ([]byte, error) {
	if err := s.fill(n); err != nil {
		return nil, err
	}
	b := s.buf[s.pos : s.pos+n]
	s.pos += n
	return b, nil
}

func (s *sreader) uvarint() (uint64, error) {
	if err := s.fill(binary.MaxVarintLen64); err != nil && s.end == s.pos {
		return 0, err
	}
	v, n := binary.Uvarint(s.buf[s.pos:s.end])
	if n <= 0 {
		return 0, errors.New("bad varint")
	}
	s.pos += n
	return v, nil
}

// maxSnapRecord bounds one encoded user (the field limits make a real one
// far smaller).
const maxSnapRecord = 1 << 14

// readSnapshot decodes a snapshot from r into a new Index, checking every
// user as Build does. sizeHint (the file size, or 0 for a stream) bounds
// the memory reserved up front from the header's figures. Errors carry the
// byte offset.
func readSnapshot(r io.Reader, sizeHint int64) (*Index, snapHeader, error) {
	var h snapHeader
	s := &sreader{r: r, buf: make([]byte, 1<<16)}
	fail := func(err error) (*Index, snapHeader, error) {
		if err == io.ErrUnexpectedEOF {
			err = errors.New("truncated")
		}
		return nil, h, fmt.Errorf("offset %d: %w", s.offset(), err)
	}
	hb, err := s.bytes(48)
	if err != nil {
		return fail(err)
	}
	if string(hb[:16]) != string(snapMagic) {
		return fail(errors.New("not a correo directory snapshot (bad magic)"))
	}
	h.epoch = binary.LittleEndian.Uint64(hb[16:])
	h.seq = binary.LittleEndian.Uint64(hb[24:])
	h.count = binary.LittleEndian.Uint64(hb[32:])
	h.arena = binary.LittleEndian.Uint64(hb[40:])
	limit := uint64(1 << 16) // a stream: grow as needed
	if sizeHint > 0 {
		limit = uint64(sizeHint)
	}
	b := newBuilder(int(min(h.count, limit/8)), int(min(h.arena, limit)))
	var d recDecoder
	for i := uint64(0); i < h.count; i++ {
		n, err := s.uvarint()
		if err == nil && n > maxSnapRecord {
			err = fmt.Errorf("record of %d bytes", n)
		}
		var rec []byte
		if err == nil {
			rec, err = s.bytes(int(n))
		}
		if err != nil {
			return fail(fmt.Errorf("user %d: %w", i+1, err))
		}
		u, err := d.decode(rec)
		if err == nil {
			u, err = normalizeUser(u)
		}
		if err == nil {
			err = b.add(u)
		}
		if err != nil {
			return fail(fmt.Errorf("user %d: %w", i+1, err))
		}
	}
	s.crc = crc32.Update(s.crc, castagnoli, s.buf[s.crcPos:s.pos])
	s.crcPos = s.pos
	want := s.crc
	tr, err := s.bytes(8)
	if err != nil {
		return fail(fmt.Errorf("trailer: %w", err))
	}
	if got := binary.LittleEndian.Uint32(tr); got != want || string(tr[4:]) != string(snapTrailer) {
		return fail(fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", got, want))
	}
	if sizeHint > 0 && s.offset() != sizeHint {
		return fail(fmt.Errorf("%d bytes after the trailer", sizeHint-s.offset()))
	}
	c, err := b.finish()
	if err != nil {
		return fail(err)
	}
	return &Index{c: c}, h, nil
}

// recDecoder decodes one user record; the strings it returns alias the
// record's bytes (the builder copies them into its arena).
type recDecoder struct {
	aliases []string
}

func (d *recDecoder) decode(b []byte) (User, error) {
	var u User
	bad := errors.New("malformed user record")
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			panic(bad)
		}
		b = b[n:]
		return v
	}
	str := func() string {
		n := uv()
		if n > uint64(len(b)) {
			panic(bad)
		}
		s := b[:n]
		b = b[n:]
		if n == 0 {
			return ""
		}
		return unsafe.String(&s[0], len(s))
	}
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				if r != bad {
					panic(r)
				}
				err = bad
			}
		}()
		u.Name, u.Gecos, u.Shell, u.Hash, u.Storage = str(), str(), str(), str(), str()
		uid, gid := uv(), uv()
		if uid > 1<<32-1 || gid > 1<<32-1 {
			panic(bad)
		}
		u.UID, u.GID = uint32(uid), uint32(gid)
		q, n := binary.Varint(b)
		if n <= 0 || len(b) < n+1 {
			panic(bad)
		}
		u.Quota = q
		u.State = State(b[n])
		b = b[n+1:]
		na := uv()
		if na > MaxAliases {
			panic(bad)
		}
		d.aliases = d.aliases[:0]
		for range na {
			d.aliases = append(d.aliases, str())
		}
		if len(b) != 0 {
			panic(bad)
		}
	}()
	if err != nil {
		return u, err
	}
	if len(d.aliases) > 0 {
		u.Aliases = d.aliases
	}
	return u, nil
}
