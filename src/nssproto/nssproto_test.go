package nssproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []Request{
		{Op: OpGetpwnam, Name: "juan"},
		{Op: OpGetpwuid, ID: 5001},
		{Op: OpGetpwent, Cursor: 1 << 40},
		{Op: OpGetgrnam, Name: "correo"},
		{Op: OpGetgrgid, ID: 5000},
		{Op: OpGetgrent},
	} {
		b, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		got, err := ReadRequest(bytes.NewReader(b))
		if err != nil || got != r {
			t.Errorf("round trip %+v: got %+v, %v", r, got, err)
		}
	}
}

// The example in PROTOCOL.md, byte for byte: the document and the code
// must not drift apart.
func TestProtocolExample(t *testing.T) {
	b, _ := AppendRequest(nil, Request{Op: OpGetpwnam, Name: "juan"})
	want := []byte{0, 0, 0, 8, 1, 1, 0, 4, 'j', 'u', 'a', 'n'}
	if !bytes.Equal(b, want) {
		t.Errorf("request = % x, want % x", b, want)
	}
	b, err := AppendResponse(nil, OpGetpwnam, Response{Status: StatusFound, Passwd: []Passwd{
		{Name: "juan", UID: 5001, GID: 5000, Home: "/home/juan", Shell: "/bin/sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	var w bytes.Buffer
	w.Write([]byte{0, 0, 0, 0x26, 0, 0, 4})
	w.WriteString("juan")
	w.Write([]byte{0, 0, 0x13, 0x89, 0, 0, 0x13, 0x88, 0, 0, 0, 10})
	w.WriteString("/home/juan")
	w.Write([]byte{0, 7})
	w.WriteString("/bin/sh")
	if !bytes.Equal(b, w.Bytes()) {
		t.Errorf("response = % x\nwant       % x", b, w.Bytes())
	}
	doc, err := readDoc()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc, "00 00 00 26 00 00 04") || !strings.Contains(doc, "0x26 = 38 bytes") {
		t.Errorf("PROTOCOL.md's example does not show the length prefix 00 00 00 26 (38 bytes)")
	}
}

func TestResponseRoundTrip(t *testing.T) {
	pw := []Passwd{
		{Name: "juan", UID: 5001, GID: 5000, Gecos: "Juan Pérez", Home: "/var/mail/j/u/a/juan", Shell: "/usr/sbin/nologin"},
		{Name: "ana", UID: 5002, GID: 5000},
	}
	gr := []Group{{Name: "correo", GID: 5000}, {Name: "staff", GID: 5001, Members: []string{"juan", "ana"}}}
	cases := []struct {
		op Op
		r  Response
	}{
		{OpGetpwnam, Response{Status: StatusFound, Passwd: pw[:1]}},
		{OpGetpwuid, Response{Status: StatusNotFound}},
		{OpGetpwnam, Response{Status: StatusUnavail}},
		{OpGetpwnam, Response{Status: StatusTryAgain}},
		{OpGetpwent, Response{Status: StatusFound, Passwd: pw, Next: 77}},
		{OpGetpwent, Response{Status: StatusFound}},
		{OpGetgrgid, Response{Status: StatusFound, Groups: gr[1:]}},
		{OpGetgrent, Response{Status: StatusFound, Groups: gr}},
	}
	for _, c := range cases {
		b, err := AppendResponse(nil, c.op, c.r)
		if err != nil {
			t.Fatalf("%s %+v: %v", c.op, c.r, err)
		}
		got, err := ReadResponse(bytes.NewReader(b), c.op)
		if err != nil || !reflect.DeepEqual(got, c.r) {
			t.Errorf("%s: got %+v, %v; want %+v", c.op, got, err, c.r)
		}
	}
}

func TestLimits(t *testing.T) {
	// A length prefix over the limit is refused before the body is read.
	hdr := binary.BigEndian.AppendUint32(nil, MaxRequest+1)
	if _, err := ReadRequest(bytes.NewReader(hdr)); !errors.Is(err, ErrTooLong) {
		t.Errorf("oversize request: %v", err)
	}
	hdr = binary.BigEndian.AppendUint32(nil, MaxResponse+1)
	if _, err := ReadResponse(bytes.NewReader(hdr), OpGetpwent); !errors.Is(err, ErrTooLong) {
		t.Errorf("oversize response: %v", err)
	}
	// A page too large to send is an error for the sender, not a frame.
	var page []Passwd
	for i := 0; i < 20; i++ {
		page = append(page, Passwd{Name: "u", Gecos: strings.Repeat("g", MaxField)})
	}
	if _, err := AppendResponse(nil, OpGetpwent, Response{Status: StatusFound, Passwd: page}); !errors.Is(err, ErrTooLong) {
		t.Errorf("oversize page: %v", err)
	}
	// Values that would break C strings or passwd lines do not travel.
	for _, p := range []Passwd{{Name: ""}, {Name: "a\x00b"}, {Name: "a:b"}, {Name: "a", Home: "x\ny"},
		{Name: strings.Repeat("n", MaxName+1)}, {Name: "a", Shell: strings.Repeat("s", MaxField+1)}} {
		if _, err := AppendResponse(nil, OpGetpwnam, Response{Status: StatusFound, Passwd: []Passwd{p}}); err == nil {
			t.Errorf("%+v travelled", p)
		}
	}
	if _, err := AppendRequest(nil, Request{Op: OpGetpwnam, Name: strings.Repeat("n", MaxName+1)}); err == nil {
		t.Error("over-long name in a request travelled")
	}
}

func TestMalformed(t *testing.T) {
	for name, body := range map[string][]byte{
		"empty":          {},
		"version 2":      {2, 1, 0, 1, 'a'},
		"op 0":           {1, 0},
		"op 7":           {1, 7},
		"truncated uid":  {1, 2, 0, 0},
		"trailing":       {1, 2, 0, 0, 0, 1, 9},
		"name too long":  append([]byte{1, 1, 1, 0}, bytes.Repeat([]byte("a"), 256)...),
		"empty name":     {1, 1, 0, 0},
		"NUL in name":    {1, 1, 0, 2, 'a', 0},
		"string overrun": {1, 1, 0, 9, 'a'},
	} {
		if _, err := DecodeRequest(body); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, c := range map[string]struct {
		op   Op
		body []byte
	}{
		"empty":          {OpGetpwnam, nil},
		"status 4":       {OpGetpwnam, []byte{4}},
		"notfound+junk":  {OpGetpwnam, []byte{1, 0}},
		"truncated":      {OpGetpwnam, []byte{0, 0, 1, 'a', 0, 0}},
		"count overrun":  {OpGetpwent, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}},
		"members 65535":  {OpGetgrnam, []byte{0, 0, 1, 'g', 0, 0, 0, 1, 0xff, 0xff}},
		"field too long": {OpGetpwnam, append([]byte{0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x01}, make([]byte, 4097)...)},
		"bad op":         {Op(9), []byte{1}},
	} {
		if _, err := DecodeResponse(c.op, c.body); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A clean close between frames is io.EOF; inside a frame it is not.
	if _, err := ReadRequest(bytes.NewReader(nil)); err != io.EOF {
		t.Errorf("empty stream: %v", err)
	}
	if _, err := ReadRequest(bytes.NewReader([]byte{0, 0, 0, 5, 1})); err != io.ErrUnexpectedEOF {
		t.Errorf("cut body: %v", err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range []Request{{Op: OpGetpwnam, Name: "juan"}, {Op: OpGetpwuid, ID: 5001},
		{Op: OpGetpwent, Cursor: 3}, {Op: OpGetgrnam, Name: "correo"}, {Op: OpGetgrgid, ID: 5000}, {Op: OpGetgrent}} {
		b, _ := AppendRequest(nil, r)
		f.Add(b[4:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeRequest(body)
		if err != nil {
			return
		}
		// What decodes must encode back to the same bytes.
		b, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", r, err)
		}
		if !bytes.Equal(b[4:], body) {
			t.Fatalf("re-encoding differs:\n% x\n% x", body, b[4:])
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	add := func(op Op, r Response) {
		b, err := AppendResponse(nil, op, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{byte(op)}, b[4:]...))
	}
	add(OpGetpwnam, Response{Status: StatusFound, Passwd: []Passwd{{Name: "juan", UID: 5001, GID: 5000, Home: "/h", Shell: "/bin/sh"}}})
	add(OpGetpwuid, Response{Status: StatusNotFound})
	add(OpGetpwent, Response{Status: StatusFound, Next: 9, Passwd: []Passwd{{Name: "a"}, {Name: "b", Gecos: "B"}}})
	add(OpGetgrent, Response{Status: StatusFound, Groups: []Group{{Name: "correo", GID: 5000, Members: []string{"juan"}}}})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		op := Op(data[0])
		r, err := DecodeResponse(op, data[1:])
		if err != nil {
			return
		}
		b, err := AppendResponse(nil, op, r)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", r, err)
		}
		if !bytes.Equal(b[4:], data[1:]) {
			t.Fatalf("re-encoding differs:\n% x\n% x", data[1:], b[4:])
		}
	})
}

func readDoc() (string, error) {
	b, err := os.ReadFile("PROTOCOL.md")
	return string(b), err
}
