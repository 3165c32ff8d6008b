package queue

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
)

// Queue files of earlier correo versions, still read so that an upgrade
// loses nothing: q/ID.msg holding the message, then the envelope it was
// accepted with and a trailer (the oldest kept the envelope only in
// q/ID.env). New messages go to slots (slot.go); these are delivered and
// removed.
//
// A legacy q/ID.msg: the message bytes (Size of them), the envelope's
// JSON, then a fixed-length trailer giving the JSON's length and the
// CRC-32C of everything before the trailer (a file renamed into q/ before
// its data sync could be torn by a crash; the checksum finds it).
const trailerFormat = "\ncorreo-envelope %08x %08x\n"

var trailerLen = int64(len(fmt.Sprintf(trailerFormat, 0, 0)))

func trailer(n int, sum uint32) []byte { return fmt.Appendf(nil, trailerFormat, n, sum) }

// parseTrailer returns the envelope length and the checksum a trailer
// gives.
func parseTrailer(tb []byte) (n int64, sum uint32, err error) {
	const prefix = "\ncorreo-envelope "
	rest, ok := bytes.CutPrefix(tb, []byte(prefix))
	if ok {
		rest, ok = bytes.CutSuffix(rest, []byte("\n"))
	}
	if !ok || len(rest) != 17 || rest[8] != ' ' {
		return 0, 0, errors.New("no envelope at its end: damaged, or left by an older correo")
	}
	ln, err := strconv.ParseUint(string(rest[:8]), 16, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("envelope trailer %q: %w", tb, err)
	}
	cs, err := strconv.ParseUint(string(rest[9:]), 16, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("envelope trailer %q: %w", tb, err)
	}
	return int64(ln), uint32(cs), nil
}

// errTorn marks a message file whose bytes do not match its checksum.
var errTorn = errors.New("torn by a crash before it was acknowledged, or damaged")

// readTrailer reads the envelope stored at the end of a message file and,
// when verify is set, checks the whole file against its checksum.
func readTrailer(f *os.File, verify bool) (*Envelope, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < trailerLen {
		return nil, fmt.Errorf("%s: no envelope at its end (%d bytes): damaged, or left by an older correo", f.Name(), size)
	}
	tb := make([]byte, trailerLen)
	if _, err := f.ReadAt(tb, size-trailerLen); err != nil {
		return nil, fmt.Errorf("%s: reading the envelope trailer: %w", f.Name(), err)
	}
	n, sum, err := parseTrailer(tb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if n <= 0 || n > maxEnvelopeBytes || n > size-trailerLen {
		return nil, fmt.Errorf("%s: envelope length %d does not fit the file (%d bytes)", f.Name(), n, size)
	}
	if verify {
		h := crc32.New(castagnoli)
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, size-trailerLen)); err != nil {
			return nil, fmt.Errorf("%s: reading it to check its checksum: %w", f.Name(), err)
		}
		if h.Sum32() != sum {
			return nil, fmt.Errorf("%s: checksum %08x, the trailer says %08x: %w", f.Name(), h.Sum32(), sum, errTorn)
		}
	}
	data := make([]byte, n)
	if _, err := f.ReadAt(data, size-trailerLen-n); err != nil {
		return nil, fmt.Errorf("%s: reading the envelope: %w", f.Name(), err)
	}
	e, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if e.Size != size-trailerLen-n {
		return nil, fmt.Errorf("%s: envelope says %d message bytes, the file holds %d", f.Name(), e.Size, size-trailerLen-n)
	}
	return e, nil
}
