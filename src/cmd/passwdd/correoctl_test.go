package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"correo/src/pwclient"
)

// ctl runs correoctl against the test cluster's profile.
func (e *env) ctl(stdin string, args ...string) (string, error) {
	args = append(args, "-profile", e.profile)
	cmd := exec.Command(correoctl(e.t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCorreoctlUsers drives the operator's commands against real passwdd
// processes: the admin path end to end.
func TestCorreoctlUsers(t *testing.T) {
	e := newEnv(t)
	e.start("pw1")
	e.start("pw2")
	steps := []struct {
		stdin string
		args  []string
		want  string
		fail  bool
	}{
		{"juan-secret\n", []string{"users", "add", "-uid", "5001", "-gecos", "Juan Perez", "-aliases", "jperez,juan.perez", "-password-stdin", "juan"}, "added juan (uid 5001) on s1", false},
		{"", []string{"users", "add", "-uid", "5002", "maria"}, "added maria (uid 5002)", false},
		{"", []string{"users", "add", "pedro"}, "added pedro (uid 10000)", false},
		{"", []string{"users", "add", "quique"}, "added quique (uid 10001)", false},
		{"", []string{"users", "add", "-uid", "5003", "../etc"}, "invalid user name", true},
		{"", []string{"users", "add", "-uid", "5001", "dup"}, "uid 5001", true},
		{"", []string{"users", "show", "juan"}, "gecos     Juan Perez", false},
		{"", []string{"users", "show", "juan"}, "password  (set)", false},
		{"", []string{"users", "show", "nadie"}, "no user", true},
		{"new-secret\n", []string{"users", "passwd", "maria"}, "password changed for maria", false},
		{"", []string{"users", "mod", "-state", "disabled", "-quota", "1048576", "maria"}, "modified maria", false},
		{"", []string{"users", "mod", "-state", "sleepy", "maria"}, "state", true},
		{"", []string{"users", "mod", "-storage", "nowhere", "maria"}, "not in the profile", true},
		{"", []string{"users", "mod", "maria"}, "nothing to change", true},
		{"", []string{"alias", "add", "maria", "mari"}, "alias mari → maria", false},
		{"", []string{"alias", "add", "maria", "jperez"}, "jperez", true},
		{"", []string{"alias", "del", "mari"}, "alias mari removed", false},
		{"", []string{"users", "list"}, "maria\t5002\t5000\ts1\tdisabled", false},
		{"", []string{"users", "del", "nadie"}, "no such user", true},
		{"", []string{"users", "add", "-uid", "7", "-server", "pw2", "x"}, "secondary", true},
		{"", []string{"passwd", "status"}, "pw1: primary, 4 users", false},
	}
	for _, s := range steps {
		out, err := e.ctl(s.stdin, s.args...)
		if (err != nil) != s.fail || !strings.Contains(out, s.want) {
			t.Errorf("correoctl %s: err %v (want failure %v)\n%s\nwant %q", strings.Join(s.args, " "), err, s.fail, out, s.want)
		}
	}
	pc, err := pwclient.FromProfile(e.p, e.ring, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.Authenticate(context.Background(), "juan", "juan-secret", "192.0.2.1"); err != nil {
		t.Errorf("juan cannot log in with the password given at add: %v", err)
	}
	if _, err := pc.Authenticate(context.Background(), "maria", "new-secret", "192.0.2.1"); err == nil {
		t.Error("disabled maria logs in")
	}
}

func TestCorreoctlImportAllOrNothing(t *testing.T) {
	e := newEnv(t)
	e.start("pw1")
	good := "name,uid,gid,gecos,password,aliases\nana,6001,5000,Ana,pw-ana,anita\nbeto,6002,5000,Beto,pw-beto,\n"
	bad := good + "../root,6003,5000,Evil,x,\ncarla,6001,5000,Dup uid,x,\n"
	goodPath := filepath.Join(e.dir, "good.csv")
	badPath := filepath.Join(e.dir, "bad.csv")
	os.WriteFile(goodPath, []byte(good), 0o600)
	os.WriteFile(badPath, []byte(bad), 0o600)

	out, err := e.ctl("", "users", "import", badPath)
	if err == nil || !strings.Contains(out, "bad.csv:4:") || !strings.Contains(out, "bad.csv:5:") || !strings.Contains(out, "nothing imported") {
		t.Fatalf("import of a bad file: %v\n%s", err, out)
	}
	if out, _ := e.ctl("", "passwd", "status"); !strings.Contains(out, "0 users") {
		t.Fatalf("a refused import changed the directory:\n%s", out)
	}
	out, err = e.ctl("", "users", "import", "-skip-bad", badPath)
	if err != nil || !strings.Contains(out, "imported 2 users") {
		t.Fatalf("import -skip-bad: %v\n%s", err, out)
	}
	out, err = e.ctl("", "users", "import", goodPath)
	if err == nil {
		t.Fatalf("importing the same users again was accepted:\n%s", out)
	}
	out, err = e.ctl("", "users", "import", "-replace", goodPath)
	if err != nil || !strings.Contains(out, "imported 2 users") {
		t.Fatalf("import -replace: %v\n%s", err, out)
	}
	pc, _ := pwclient.FromProfile(e.p, e.ring, nil)
	defer pc.Close()
	if u, err := pc.Authenticate(context.Background(), "ana", "pw-ana", "192.0.2.1"); err != nil || u.Aliases[0] != "anita" {
		t.Fatalf("imported user cannot log in: %+v %v", u, err)
	}

	// passwd + shadow, as exported from an old mail server.
	passwd := "root:x:0:0:root:/root:/bin/bash\nold1:x:1001:100:Old One:/home/old1:/bin/sh\nold2:x:1002:100:Old Two:/home/old2:/bin/sh\n"
	// openssl passwd -6 -salt saltsalt secret
	shadow := "root:*:19000:0:99999:7:::\nold1:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1:19000:0:99999:7:::\nold2:!:19000:0:99999:7:::\n"
	pp := filepath.Join(e.dir, "passwd")
	sp := filepath.Join(e.dir, "shadow")
	os.WriteFile(pp, []byte(passwd), 0o600)
	os.WriteFile(sp, []byte(shadow), 0o600)
	out, err = e.ctl("", "users", "import", "-shadow", sp, pp)
	if err != nil || !strings.Contains(out, "imported 2 users") {
		t.Fatalf("passwd+shadow import: %v\n%s", err, out)
	}
	if _, err := pc.Authenticate(context.Background(), "old1", "secret", "192.0.2.2"); err != nil {
		t.Fatalf("imported $6$ hash does not verify: %v", err)
	}
	if _, err := pc.Authenticate(context.Background(), "old2", "", "192.0.2.2"); err == nil {
		t.Fatal("locked shadow entry logs in")
	}
}
