package imapmsg

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// The standard library decodes only UTF-8, US-ASCII and ISO-8859-1. The
// single-byte Western charsets below are most of the rest of European mail
// (Outlook labels Latin-1 text windows-1252), and SEARCH must match their
// text; others stay undecoded and still match on their ASCII.

var cp1252 = [32]rune{
	'€', 0x81, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0x8d, 'Ž', 0x8f,
	0x90, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0x9d, 'ž', 'Ÿ',
}

var latin9 = map[byte]rune{0xa4: '€', 0xa6: 'Š', 0xa8: 'š', 0xb4: 'Ž', 0xb8: 'ž', 0xbc: 'Œ', 0xbd: 'œ', 0xbe: 'Ÿ'}

// singleByte returns the byte-to-rune mapping for charset, or nil when it is
// not one this package knows.
func singleByte(charset string) func(byte) rune {
	switch strings.ToLower(charset) {
	case "iso-8859-1", "latin1", "iso_8859-1", "l1", "us-ascii", "ascii":
		return func(c byte) rune { return rune(c) }
	case "windows-1252", "cp1252", "x-cp1252":
		return func(c byte) rune {
			if c >= 0x80 && c < 0xa0 {
				return cp1252[c-0x80]
			}
			return rune(c)
		}
	case "iso-8859-15", "latin9", "latin-9", "iso_8859-15":
		return func(c byte) rune {
			if r, ok := latin9[c]; ok {
				return r
			}
			return rune(c)
		}
	}
	return nil
}

func toUTF8(b []byte, m func(byte) rune) []byte {
	out := make([]byte, 0, len(b)+len(b)/8)
	for _, c := range b {
		if c < 0x80 {
			out = append(out, c)
		} else {
			out = utf8.AppendRune(out, m(c))
		}
	}
	return out
}

func charsetReader(charset string, in io.Reader) (io.Reader, error) {
	m := singleByte(charset)
	if m == nil {
		return nil, fmt.Errorf("imapmsg: charset %q not known", charset)
	}
	// Encoded words are short (a header is at most MaxHeaderBytes).
	b, err := io.ReadAll(io.LimitReader(in, 1<<20))
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(toUTF8(b, m)), nil
}
