package nsstest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"correo/src/nssproto"
)

type decodeCase struct {
	op   byte
	body []byte
}

// crossCheckCases: the fuzz corpus of FuzzDecodeResponse (first byte op,
// rest body), valid answers of every op, and every truncation and many
// single-byte mutations of those.
func crossCheckCases(t *testing.T) []decodeCase {
	var cases []decodeCase
	corpus, _ := filepath.Glob(filepath.Join(SrcDir(), "..", "nssproto", "testdata", "fuzz", "FuzzDecodeResponse", "*"))
	if len(corpus) == 0 {
		t.Fatal("no FuzzDecodeResponse corpus found")
	}
	for _, f := range corpus {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a go fuzz v1 file", f)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(s) > 0 {
			cases = append(cases, decodeCase{s[0], []byte(s[1:])})
		}
	}
	pw := []nssproto.Passwd{
		{Name: "juan", UID: 5001, GID: 5000, Gecos: "Juan", Home: "/var/mail/j/u/a/juan", Shell: "/bin/sh"},
		{Name: "a", UID: 1, GID: 1},
	}
	gr := []nssproto.Group{{Name: "correo", GID: 5000}, {Name: "s", GID: 7, Members: []string{"juan", "a"}}}
	valid := []struct {
		op nssproto.Op
		r  nssproto.Response
	}{
		{nssproto.OpGetpwnam, nssproto.Response{Status: nssproto.StatusFound, Passwd: pw[:1]}},
		{nssproto.OpGetpwuid, nssproto.Response{Status: nssproto.StatusFound, Passwd: pw[1:]}},
		{nssproto.OpGetpwent, nssproto.Response{Status: nssproto.StatusFound, Passwd: pw, Next: 1 << 33}},
		{nssproto.OpGetgrnam, nssproto.Response{Status: nssproto.StatusFound, Groups: gr[1:]}},
		{nssproto.OpGetgrent, nssproto.Response{Status: nssproto.StatusFound, Groups: gr}},
		{nssproto.OpGetgrgid, nssproto.Response{Status: nssproto.StatusNotFound}},
		{nssproto.OpGetpwnam, nssproto.Response{Status: nssproto.StatusTryAgain}},
	}
	for _, v := range valid {
		b, err := nssproto.AppendResponse(nil, v.op, v.r)
		if err != nil {
			t.Fatal(err)
		}
		body := b[4:]
		for op := byte(0); op <= 7; op++ {
			cases = append(cases, decodeCase{op, body})
		}
		for n := 0; n < len(body); n++ {
			cases = append(cases, decodeCase{byte(v.op), body[:n]})
		}
		for i := range body {
			for _, x := range []byte{0, 1, 2, 0xff, ':', '\n', ',', body[i] + 1} {
				m := bytes.Clone(body)
				m[i] = x
				cases = append(cases, decodeCase{byte(v.op), m})
			}
		}
	}
	return cases
}

func runWithInput(bin string, in []byte) ([]byte, error) {
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(in)
	return cmd.Output()
}
