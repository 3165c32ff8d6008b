package pop3

import (
	"bufio"
	"io"
)

// writeMessage streams a stored message (LF or CRLF line ends) to w as a
// POP3 multi-line body: CRLF line ends, dot-stuffed, a final line end
// added if the message lacks one. With bodyLines >= 0 only the header
// section, the empty line after it and that many body lines are sent
// (TOP). It does not write the terminating ".\r\n". It returns the bytes
// read from r.
//
// Lines are handled in slices of the reader's buffer, so a message of any
// size or a line of any length costs one buffer of memory.
func writeMessage(w *bufio.Writer, r *bufio.Reader, bodyLines int) (int64, error) {
	var read int64
	atStart := true    // the next byte starts a line
	pendingCR := false // a CR ended the previous slice: part of CRLF or not?
	inHeader := true
	sent := 0
	for {
		line, err := r.ReadSlice('\n')
		read += int64(len(line))
		if len(line) > 0 {
			if pendingCR {
				pendingCR = false
				if line[0] != '\n' {
					w.WriteByte('\r')
				}
			}
			if atStart && line[0] == '.' {
				w.WriteByte('.')
			}
			if line[len(line)-1] == '\n' {
				body := line[:len(line)-1]
				if len(body) > 0 && body[len(body)-1] == '\r' {
					body = body[:len(body)-1]
				}
				// An empty line counts only when it starts a line: the
				// "\n" left over from a CR LF split across slices ends a
				// line begun earlier.
				emptyLine := atStart && len(body) == 0
				w.Write(body)
				if _, werr := w.WriteString("\r\n"); werr != nil {
					return read, werr
				}
				atStart = true
				if bodyLines >= 0 {
					if inHeader {
						if emptyLine {
							inHeader = false
							if bodyLines == 0 {
								return read, nil
							}
						}
					} else {
						sent++
						if sent >= bodyLines {
							return read, nil
						}
					}
				}
			} else {
				// A slice of a long line (or the last line without LF):
				// hold back a trailing CR until we know whether LF follows.
				if line[len(line)-1] == '\r' {
					line = line[:len(line)-1]
					pendingCR = true
				}
				if _, werr := w.Write(line); werr != nil {
					return read, werr
				}
				atStart = false
			}
		}
		switch err {
		case nil, bufio.ErrBufferFull:
			continue
		case io.EOF:
			if pendingCR {
				w.WriteByte('\r')
				atStart = false
			}
			if !atStart {
				_, err = w.WriteString("\r\n")
				return read, err
			}
			return read, nil
		default:
			return read, err
		}
	}
}

// wireSize counts what writeMessage would send for the whole message,
// without dot-stuffing: bytes plus one per bare LF. It is the fallback
// for names without W=.
func wireSize(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	prevCR := false
	for {
		k, err := r.Read(buf)
		for _, b := range buf[:k] {
			if b == '\n' && !prevCR {
				n++
			}
			prevCR = b == '\r'
		}
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
