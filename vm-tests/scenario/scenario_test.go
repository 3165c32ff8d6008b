package scenario

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"correo/src/cluster"
)

// The profile a suite renders its hosts from must load to the adjusted
// settings, not to example.toml's.
func TestWriteProfileKeepsTheAdjustment(t *testing.T) {
	p, err := LoadProfile("../../hosts/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "profile.toml")
	if err := WriteProfile(p, path); err != nil {
		t.Fatal(err)
	}
	q, err := cluster.Load(path, cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatalf("the written profile does not load: %v", err)
	}
	if q.Cluster.Passwd.BcryptCost != cluster.MinBcryptCost {
		t.Errorf("bcrypt cost %d, want %d", q.Cluster.Passwd.BcryptCost, cluster.MinBcryptCost)
	}
	if want := []cluster.Duration{cluster.Duration(time.Second)}; !reflect.DeepEqual(q.Cluster.Queue.Retry, want) {
		t.Errorf("retry ladder %v, want %v", q.Cluster.Queue.Retry, want)
	}
	if !reflect.DeepEqual(q.Settings(), p.Settings()) {
		t.Errorf("the written profile's settings differ:\n%+v\nwant\n%+v", q.Settings(), p.Settings())
	}
}

// The foreign zone must parse and point its MX at Outside.
func TestExtraZonesPointAtOutside(t *testing.T) {
	for name, text := range ExtraZones() {
		zp := dns.NewZoneParser(strings.NewReader(text), dns.Fqdn(name), name+".zone")
		found := false
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			if a, isA := rr.(*dns.A); isA && a.A.String() == OutsidePrefix.Addr().String() {
				found = true
			}
		}
		if err := zp.Err(); err != nil {
			t.Fatalf("zone %s: %v", name, err)
		}
		if !found {
			t.Errorf("zone %s has no A record for %s", name, OutsidePrefix.Addr())
		}
	}
}
