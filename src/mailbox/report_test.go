package mailbox

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"correo/src/usersample"
)

func TestReadNames(t *testing.T) {
	in := strings.Join([]string{
		"# users exported 2001-05-01",
		"juan",
		"",
		"  Maria  ",
		"root:x:0:0:root:/root:/bin/bash",
		"jperez:x:1000:1000:Juan Perez,,,:/home/jperez:/bin/sh",
		"../etc:x:1:1::/:/bin/sh",
		"bad name",
		"JUAN",
		"ok.name\r",
		"-rf",
	}, "\n")
	names, bad, err := ReadNames(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"juan", "maria", "root", "jperez", "ok.name"}; !slices.Equal(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
	wantLines := []int{7, 8, 9, 11}
	var got []int
	for _, b := range bad {
		got = append(got, b.Line)
		if !strings.Contains(b.Error(), "line ") {
			t.Errorf("LineError %q does not say the line", b.Error())
		}
	}
	if !slices.Equal(got, wantLines) {
		t.Errorf("bad lines = %v (%v), want %v", got, bad, wantLines)
	}
	var ne *NameError
	if !errors.As(bad[0], &ne) {
		t.Errorf("bad[0] does not unwrap to a *NameError: %v", bad[0])
	}
	if !strings.Contains(bad[2].Error(), "repeats line 2") {
		t.Errorf("duplicate reported as %q", bad[2].Error())
	}
	if _, _, err := ReadNames(iotest.ErrReader(errors.New("disk"))); err == nil {
		t.Error("read error not reported")
	}
}

func TestLayoutReport(t *testing.T) {
	// Hand-checked placement:
	//   first3:      juan,juana,juarez → j/u/a (3); jose → j/o/s; maria,mario → m/a/r (2); ana → a/n/a
	//   first2last1: juan → j/u/n; juana → j/u/a; juarez → j/u/z; jose → j/o/e;
	//                maria → m/a/a; mario → m/a/o; ana → a/n/a   (all 7 apart)
	names := []string{"juan", "juana", "juarez", "jose", "maria", "mario", "ana"}
	st := LayoutReport(names, []Scheme{First3, First2Last1, Hash2})
	if len(st) != 3 {
		t.Fatalf("got %d rows", len(st))
	}
	f3 := st[0]
	if f3.Scheme != First3 || f3.Users != 7 || f3.Leaves != 4 || f3.Max != 3 || f3.P99 != 3 {
		t.Errorf("first3 = %+v", f3)
	}
	if math.Abs(f3.Mean-1.75) > 1e-9 {
		t.Errorf("first3 mean = %v, want 1.75", f3.Mean)
	}
	// counts 3,1,2,1: deviations 1.25,-0.75,0.25,-0.75 → variance 2.75/4
	if want := math.Sqrt(2.75 / 4); math.Abs(f3.StdDev-want) > 1e-9 {
		t.Errorf("first3 stddev = %v, want %v", f3.StdDev, want)
	}
	f21 := st[1]
	if f21.Users != 7 || f21.Leaves != 7 || f21.Max != 1 || f21.Mean != 1 || f21.StdDev != 0 {
		t.Errorf("first2last1 = %+v", f21)
	}
	if st[2].Users != 7 {
		t.Errorf("hash2 = %+v", st[2])
	}
	empty := LayoutReport(nil, Schemes())
	if len(empty) != 4 || empty[0].Leaves != 0 || empty[0].Mean != 0 {
		t.Errorf("empty report = %+v", empty)
	}
	// Invalid names are left out rather than crashing the report.
	if st := LayoutReport([]string{"juan", "../x"}, []Scheme{First3}); st[0].Users != 1 {
		t.Errorf("invalid name counted: %+v", st[0])
	}
}

func TestWriteReport(t *testing.T) {
	st := LayoutReport([]string{"juan", "juana", "ana"}, Schemes())
	var buf bytes.Buffer
	if err := WriteReport(&buf, st); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "scheme") {
		t.Fatalf("report:\n%s", buf.String())
	}
	// Aligned: the "users" column starts at the same offset on every line.
	col := strings.Index(lines[0], "users")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("column not aligned in %q", l)
		}
	}
	if !strings.Contains(buf.String(), "first1last2") || !strings.Contains(buf.String(), "1.50") {
		t.Errorf("report:\n%s", buf.String())
	}
	if err := WriteReport(failWriter{}, st); err == nil {
		t.Error("write error not reported")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// The paper's Fig. 4 point, on realistic names: first3 crowds some leaves,
// the schemes using last characters spread better and the hash best. The
// table is logged (go test -v -run Sample) for the README.
func TestLayoutReportSample(t *testing.T) {
	names := usersample.Generate(100000, 2001)
	st := LayoutReport(names, Schemes())
	var buf bytes.Buffer
	WriteReport(&buf, st)
	t.Logf("100000 sample users:\n%s", buf.String())
	by := map[Scheme]SchemeStats{}
	for _, s := range st {
		by[s.Scheme] = s
		if s.Users != len(names) {
			t.Errorf("%s placed %d of %d users", s.Scheme, s.Users, len(names))
		}
	}
	if by[First3].Max <= by[First1Last2].Max || by[First3].Max <= by[Hash2].Max {
		t.Errorf("first3 should have the fullest leaf: %+v", st)
	}
	if by[Hash2].StdDev >= by[First3].StdDev {
		t.Errorf("hash2 should spread more evenly than first3: %+v", st)
	}
}
