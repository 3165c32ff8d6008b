package imapmsg

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"correo/internal/testutil"
)

// dovecotDiffs lists where correo knowingly differs from Dovecot 2.3, by
// message file and item; each says why.
var dovecotDiffs = map[string]string{
	"nobody.eml BODY[HEADER.FIELDS.NOT (FROM SUBJECT RECEIVED)]": "RFC 9051 includes the blank line; Dovecot copies none when the header had none",
	"empty.eml BODY[HEADER.FIELDS.NOT (FROM SUBJECT RECEIVED)]":  "same",
	"encoded-rfc822.eml BINARY.SIZE[1]":                          "RFC 3516 says decode; Dovecot says 0 and sends the base64",
	"encoded-rfc822.eml BINARY[1]":                               "same",
	"qp-base64-edge.eml BINARY.SIZE[1]":                          "Dovecot fails every part once any part has an unknown encoding; correo only that part",
	"qp-base64-edge.eml BINARY.SIZE[2]":                          "same",
	"qp-base64-edge.eml BINARY[1]":                               "Dovecot refuses =ZZ in quoted-printable ([PARSE]); correo keeps it as text, as mail readers do",
	"qp-base64-edge.eml BINARY[2]":                               "Dovecot refuses junk in base64 ([PARSE]); correo skips it, as mail readers do",
}

// TestAgainstDovecot asks Dovecot's imap binary (preauthenticated over a
// private Maildir, no daemon) the same FETCH items for every test message and
// compares the answers, strings compared by value (Dovecot sends some as
// literals where correo quotes). It needs Debian's dovecot-imapd, which
// the test command installs.
func TestAgainstDovecot(t *testing.T) {
	bin := "/usr/lib/dovecot/imap"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv(testutil.StrictEnv) != "" {
			t.Fatalf("%s (Debian's dovecot-imapd) is required by this test: run the project's test command (make test), which installs it", bin)
		}
		t.Skip("no", bin)
	}
	dir := t.TempDir()
	// The mail process runs as nobody: it must reach the Maildir.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	uid := os.Getuid()
	if uid == 0 {
		uid = 65534 // Dovecot refuses to run mail processes as root
	}
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
log_path = /dev/stderr
mail_uid = %[2]d
mail_gid = %[2]d
first_valid_uid = 1
ssl = no
`, dir, uid)), 0o644)
	for _, name := range testMessages(t) {
		name := name
		t.Run(filepath.Base(name), func(t *testing.T) {
			raw, _ := os.ReadFile(name)
			md := filepath.Join(dir, strings.TrimSuffix(filepath.Base(name), ".eml"))
			for _, d := range []string{"", "/new", "/cur", "/tmp", "/home"} {
				os.MkdirAll(md+d, 0o755)
				os.Chown(md+d, uid, uid)
			}
			os.WriteFile(md+"/new/1.eml", raw, 0o644)
			os.Chown(md+"/new/1.eml", uid, uid)
			var in bytes.Buffer
			in.WriteString("s SELECT INBOX\r\n")
			for i, it := range fetchItems {
				item := strings.Replace(it.name, "BODY[", "BODY.PEEK[", 1)
				item = strings.Replace(item, "BINARY[", "BINARY.PEEK[", 1)
				fmt.Fprintf(&in, "f%d FETCH 1 (%s)\r\n", i, item)
			}
			in.WriteString("z LOGOUT\r\n")
			cmd := exec.Command(bin, "-c", conf, "-o", "mail_location=maildir:"+md)
			cmd.Env = []string{"USER=nobody", "HOME=" + md + "/home"}
			cmd.Stdin = &in
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("dovecot: %v\n%s", err, out)
			}
			if !bytes.Contains(out, []byte("\r\ns OK")) {
				t.Fatalf("dovecot SELECT failed:\n%s", out)
			}
			answers := dovecotAnswers(t, out)
			m := parseFile(t, name)
			for i, it := range fetchItems {
				mine, err := it.get(m)
				want, ok := answers[i]
				if !ok {
					t.Errorf("%s: dovecot gave no answer", it.name)
					continue
				}
				if err != nil {
					if !strings.HasPrefix(want, "NO") {
						t.Errorf("%s: correo %v, dovecot %.200s", it.name, err, want)
					}
					continue
				}
				got := normalize(t, []byte(mine))
				if got != want {
					key := filepath.Base(name) + " " + it.name
					if why, ok := dovecotDiffs[key]; ok {
						t.Logf("%s: known difference (%s)", key, why)
						continue
					}
					t.Errorf("%s\ncorreo:  %.600q\ndovecot: %.600q", it.name, got, want)
				}
			}
		})
	}
}

// dovecotAnswers maps command index to the normalised value of the item it
// asked for, or "NO ..." when the command failed. Pipelined commands get
// their tagged replies after all the data, so answers are matched by the
// item name in each FETCH response.
func dovecotAnswers(t *testing.T, out []byte) map[int]string {
	byName := map[string]string{}
	failed := map[int]string{}
	for len(out) > 0 {
		line := out
		if i := bytes.Index(out, []byte("\r\n")); i >= 0 {
			line = out[:i]
		}
		if bytes.HasPrefix(line, []byte("* 1 FETCH (")) {
			rest := out[len("* 1 FETCH ("):]
			sp := itemNameEnd(rest)
			v, n := imapValue(rest[sp+1:])
			byName[string(rest[:sp])] = v
			out = rest[sp+1+n:]
			if i := bytes.Index(out, []byte("\r\n")); i >= 0 {
				out = out[i+2:]
			} else {
				out = nil
			}
			continue
		}
		if f := strings.Fields(string(line)); len(f) > 2 && f[0][0] == 'f' && f[1] != "OK" {
			if n, err := strconv.Atoi(f[0][1:]); err == nil {
				failed[n] = "NO " + strings.Join(f[2:], " ")
			}
		}
		if len(line) == len(out) {
			break
		}
		out = out[len(line)+2:]
	}
	res := map[int]string{}
	for i, it := range fetchItems {
		if no, ok := failed[i]; ok {
			res[i] = no
		} else if v, ok := byName[partialName.ReplaceAllString(it.name, "<$1>")]; ok {
			res[i] = v
		}
	}
	return res
}

// partialName: a reply names BODY[]<5.10> as BODY[]<5>.
var partialName = regexp.MustCompile(`<(\d+)\.\d+>`)

// itemNameEnd finds the space after a FETCH item name such as
// BODY[HEADER.FIELDS (FROM)]<0>.
func itemNameEnd(b []byte) int {
	depth := 0
	for i, c := range b {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ' ':
			if depth == 0 {
				return i
			}
		}
	}
	return len(b)
}

func normalize(t *testing.T, b []byte) string {
	v, _ := imapValue(b)
	return v
}

// imapValue reads one IMAP value and gives it back with every string quoted
// (so literal and quoted forms compare equal) and single spaces in lists.
func imapValue(b []byte) (string, int) {
	i := 0
	switch {
	case len(b) == 0:
		return "", 0
	case b[0] == '(':
		var parts []string
		i = 1
		for i < len(b) && b[i] != ')' {
			if b[i] == ' ' {
				i++
				continue
			}
			v, n := imapValue(b[i:])
			if n == 0 {
				break
			}
			parts = append(parts, v)
			i += n
		}
		return "(" + strings.Join(parts, " ") + ")", i + 1
	case b[0] == '"':
		var s []byte
		for i = 1; i < len(b) && b[i] != '"'; i++ {
			if b[i] == '\\' {
				i++
			}
			s = append(s, b[i])
		}
		return strconv.Quote(string(s)), i + 1
	case b[0] == '~': // literal8
		v, n := imapValue(b[1:])
		return v, n + 1
	case b[0] == '{':
		j := bytes.IndexByte(b, '}')
		n, _ := strconv.Atoi(string(b[1:j]))
		start := j + 3
		return strconv.Quote(string(b[start : start+n])), start + n
	default:
		for i < len(b) && b[i] != ' ' && b[i] != ')' && b[i] != '\r' {
			i++
		}
		return string(b[:i]), i
	}
}
