package mailauth

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkCheck is the cost of checking one message: over the real test
// DNS server on loopback (every lookup a UDP round trip, no cache) and
// over the fixed in-memory resolver (the CPU alone), unsigned and signed
// with correo's two keys, at 4 KB and 100 KB.
func BenchmarkCheck(b *testing.B) {
	k := getKeys(b)
	dnsV := &Verifier{AuthServID: authServID, Resolver: NewResolver(startDNS(b, testZone(b)...))}
	memV := fuzzVerifier()
	for _, size := range []int{4 << 10, 100 << 10} {
		text := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", size/46)
		plain := message("ceo@example.test", "", text)
		signedTest := sign(b, plain, k.ed, k.rsa)
		signedMem := sign(b, plain, fuzzKey)
		for _, c := range []struct {
			name string
			v    *Verifier
			msg  string
		}{
			{"dns/unsigned", dnsV, plain},
			{"dns/ed25519+rsa", dnsV, signedTest},
			{"mem/unsigned", memV, plain},
			{"mem/ed25519", memV, signedMem},
		} {
			b.Run(c.name+"/"+sizeName(size), func(b *testing.B) {
				b.SetBytes(int64(len(c.msg)))
				for b.Loop() {
					res, err := c.v.Check(context.Background(), Input{ClientIP: goodIP, Helo: "mx.example.test",
						MailFrom: "bounce@example.test", Message: strings.NewReader(c.msg)})
					if err != nil || res.DMARC.Result != ResultPass {
						b.Fatalf("%v dmarc=%s", err, res.DMARC.Result)
					}
				}
			})
		}
	}
}

func sizeName(n int) string { return strconv.Itoa(n>>10) + "KB" }
