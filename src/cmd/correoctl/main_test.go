package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.txt")
	os.WriteFile(users, []byte("juan\nmaria:x:1000:1000::/home/maria:/bin/sh\n../etc\n\njuana\n"), 0o644)
	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string
		stderr    string
		notStdout string
	}{
		{"no args", nil, 2, "", "usage: correoctl", ""},
		{"unknown", []string{"frob", "it"}, 2, "", `unknown command "frob it"`, ""},
		{"zone", []string{"dns", "zone", "--profile", "../../../hosts/example.toml"}, 0, "mx\tIN\tA\t10.77.0.11\n", "", ""},
		{"zone positional", []string{"dns", "zone", "../../../hosts/example.toml"}, 0, "$ORIGIN correo.example.", "", ""},
		{"zone default is dev", []string{"dns", "zone"}, 0, "$ORIGIN correo.test.", "", ""},
		{"bad profile", []string{"dns", "zone", "../../cluster/testdata/bad/duplicate-name.toml"}, 1, "", `duplicate-name.toml:32: host[3].name (mx1): duplicate host name "mx1"`, ""},
		{"missing profile", []string{"profile", "check", "--profile", filepath.Join(dir, "nope.toml")}, 1, "", "no such file", ""},
		{"check needs key", []string{"profile", "check", "../../../hosts/example.toml"}, 1, "", "cluster key file /var/lib/correo/cluster.key does not exist", ""},
		{"settings", []string{"profile", "settings", "../../../hosts/example.toml"}, 0, `"listen": "10.77.0.31:24"`, "", ""},
		{"report", []string{"layout", "report", "--users", users}, 0, "first3       3", "line 3", ""},
		{"report strict", []string{"layout", "report", "--strict", "--users", users}, 1, "", "1 invalid lines", ""},
		{"report needs users", []string{"layout", "report"}, 2, "", "-users FILE is required", ""},
		{"sample", []string{"layout", "sample", "-n", "5", "-seed", "3"}, 0, "", "", ".."},
		{"sample bad n", []string{"layout", "sample", "-n", "0"}, 2, "", "at least 1", ""},
		{"bad flag", []string{"dns", "zone", "--nope"}, 2, "", "flag provided but not defined", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) ||
				(tt.notStdout != "" && strings.Contains(out.String(), tt.notStdout)) {
				t.Fatalf("code %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
		})
	}
}

func TestSampleIsDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	run([]string{"layout", "sample", "-n", "200", "-seed", "9"}, &a, os.Stderr)
	run([]string{"layout", "sample", "-n", "200", "-seed", "9"}, &b, os.Stderr)
	if a.String() != b.String() || strings.Count(a.String(), "\n") != 200 {
		t.Fatal("layout sample is not deterministic or has the wrong count")
	}
}
