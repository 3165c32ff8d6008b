package imapmsg

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"
)

// typical10K is the shape most mail has today: multipart/mixed holding a
// multipart/alternative (text and HTML) and a small base64 attachment, about
// 10 KB, stored with LF.
func typical10K() []byte {
	var b strings.Builder
	b.WriteString("Return-Path: <alice@example.org>\nReceived: from mx1.example.org by storage1 with LMTP; Mon, 4 Mar 2024 09:12:01 +0000\n")
	b.WriteString("Date: Mon, 4 Mar 2024 10:11:58 +0100\nFrom: Alice Example <alice@example.org>\nTo: Bob <bob@example.net>, \"Carol C.\" <carol@example.net>\n")
	b.WriteString("Cc: team@example.org\nSubject: =?UTF-8?Q?Informe_mensual_=E2=80=94_marzo?=\nMessage-ID: <20240304091158.GA1234@example.org>\n")
	b.WriteString("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"mixed-1\"\n\n--mixed-1\nContent-Type: multipart/alternative; boundary=\"alt-1\"\n\n")
	b.WriteString("--alt-1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "Line %d of the report, with some words to make it look like prose. =E2=80=94\n", i)
	}
	b.WriteString("--alt-1\nContent-Type: text/html; charset=utf-8\n\n<html><body>\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "<p>Line %d of the report, with some words to make it look like prose.</p>\n", i)
	}
	b.WriteString("</body></html>\n--alt-1--\n--mixed-1\nContent-Type: application/pdf; name=\"r.pdf\"\nContent-Disposition: attachment; filename=\"r.pdf\"\nContent-Transfer-Encoding: base64\n\n")
	b.WriteString(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("%PDF-1.4 binary"), 250)))
	b.WriteString("\n--mixed-1--\n")
	return []byte(b.String())
}

func BenchmarkEnvelopeBodyStructure(b *testing.B) {
	msg := typical10K()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	var out []byte
	for i := 0; i < b.N; i++ {
		m, _ := Parse(bytes.NewReader(msg), int64(len(msg)))
		out = AppendEnvelope(out[:0], m.Envelope(), true)
		out = AppendBodyStructure(out, m.BodyStructure(), true, true)
	}
	b.ReportMetric(float64(len(msg)), "msgbytes")
}

// BenchmarkEnvelopeOnly is FETCH ENVELOPE: the header pass alone.
func BenchmarkEnvelopeOnly(b *testing.B) {
	msg := typical10K()
	b.ReportAllocs()
	var out []byte
	for i := 0; i < b.N; i++ {
		m, _ := Parse(bytes.NewReader(msg), int64(len(msg)))
		out = AppendEnvelope(out[:0], m.Envelope(), true)
	}
}

func BenchmarkSection(b *testing.B) {
	msg := typical10K()
	m, _ := Parse(bytes.NewReader(msg), int64(len(msg)))
	m.BodyStructure()
	for _, c := range []struct {
		name string
		path []int
		spec string
	}{{"BODY[]", nil, ""}, {"BODY[1.1]", []int{1, 1}, ""}, {"BODY[HEADER.FIELDS]", nil, "HEADER.FIELDS"}} {
		b.Run(c.name, func(b *testing.B) {
			_, n := m.Section(c.path, c.spec, []string{"From", "Subject", "Date"}, false)
			b.SetBytes(n)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				r, _ := m.Section(c.path, c.spec, []string{"From", "Subject", "Date"}, false)
				io.Copy(io.Discard, r)
			}
		})
	}
	b.Run("BINARY[2]", func(b *testing.B) {
		_, n, _ := m.Binary([]int{2})
		b.SetBytes(n)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r, _, _ := m.Binary([]int{2})
			io.Copy(io.Discard, r)
		}
	})
}

// BenchmarkLargeBody: a 10 MB single-part body, to show the CRLF stream
// costs memory per call, not per byte.
func BenchmarkLargeBody(b *testing.B) {
	msg := []byte("Subject: big\n\n" + strings.Repeat("0123456789 abcdefghijklmnopqrstuvwxyz 0123456789 abcdefghijklmnopqrst\n", 140000))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m, _ := Parse(bytes.NewReader(msg), int64(len(msg)))
		r, _ := m.Section(nil, "", nil, false)
		io.Copy(io.Discard, r)
	}
}
