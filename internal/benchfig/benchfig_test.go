package benchfig

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMet(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       Figure
		met, ok bool
		target  string
	}{
		{"no target", Figure{Correo: 1, Baseline: 2}, false, false, ""},
		{"ratio met", Figure{Correo: 8, Baseline: 10, RatioMin: 0.7}, true, true, "ratio ≥ 0.70"},
		{"ratio missed", Figure{Correo: 6, Baseline: 10, RatioMin: 0.7}, false, true, "ratio ≥ 0.70"},
		{"ratio without baseline", Figure{Correo: 6, RatioMin: 0.7}, false, true, "ratio ≥ 0.70"},
		{"max met", Figure{Correo: 13.2, Unit: "µs", Max: 40}, true, true, "≤ 40.0 µs"},
		{"max missed", Figure{Correo: 53, Unit: "µs", Max: 40}, false, true, "≤ 40.0 µs"},
		{"both, one missed", Figure{Correo: 9, Baseline: 10, RatioMin: 0.8, Unit: "MB/s", Min: 10}, false, true, "ratio ≥ 0.80, ≥ 10.0 MB/s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			met, ok := tc.f.Met()
			if met != tc.met || ok != tc.ok || tc.f.Target() != tc.target {
				t.Errorf("Met() = %v %v, Target() = %q; want %v %v %q", met, ok, tc.f.Target(), tc.met, tc.ok, tc.target)
			}
		})
	}
}

func TestRecordReadTable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "figures")
	t.Setenv(Env, p)
	for _, f := range []Figure{
		{Bench: "nss-bench", Figure: "getpwnam median, cached", Unit: "µs", Correo: 53, Baseline: 77000, BaselineName: "glibc files", Max: 40},
		{Bench: "lmtp-bench", Figure: "deliveries/s | 1 client", Unit: "msgs/s", Correo: 458, Baseline: 642, BaselineName: "bare", RatioMin: 0.7},
		{Bench: "nss-bench", Figure: "getpwnam median, cached", Unit: "µs", Correo: 13.2, Baseline: 77000, BaselineName: "glibc files", Max: 40},
		{Bench: "lmtp-bench", Figure: "deliveries/s | 1 client", Unit: "msgs/s", Correo: 458, Baseline: 200, BaselineName: "Dovecot"},
	} {
		if err := Record(f); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(p)
	figs, err := Read(bytes.NewReader(data))
	if err != nil || len(figs) != 4 {
		t.Fatalf("Read: %d figures, %v", len(figs), err)
	}
	var out bytes.Buffer
	Table(&out, figs)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("table (one figure against two baselines makes two rows):\n%s", out.String())
	}
	if !strings.Contains(lines[2], "13.2 µs") || !strings.Contains(lines[2], "≤ 40.0 µs ✓") || !strings.Contains(lines[2], "| 0.00017 |") {
		t.Errorf("the last value of a figure recorded twice, met: %q", lines[2])
	}
	if !strings.Contains(lines[3], `deliveries/s \| 1 client`) || !strings.Contains(lines[3], "0.71") || !strings.Contains(lines[3], "✓") {
		t.Errorf("ratio row: %q", lines[3])
	}
	if _, err := Read(strings.NewReader("{\"figure\":\"x\"}\nnot json\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("garbage line: %v", err)
	}
}

func TestRecordWithoutEnv(t *testing.T) {
	t.Setenv(Env, "")
	if err := Record(Figure{Figure: "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestRecordScale(t *testing.T) {
	p := filepath.Join(t.TempDir(), "scale")
	t.Setenv(ScaleEnv, p)
	if err := RecordScale("passwd_p50_us", 10000, 41.5); err != nil {
		t.Fatal(err)
	}
	if err := RecordScale("two words", 1, 1); err == nil {
		t.Fatal("a series with a space was accepted")
	}
	if b, _ := os.ReadFile(p); string(b) != "passwd_p50_us 10000 41.5\n" {
		t.Fatalf("scale file: %q", b)
	}
}
