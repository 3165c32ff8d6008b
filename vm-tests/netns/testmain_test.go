package netns

import (
	"os"
	"testing"

	"correo/internal/clustertest"
	"correo/src/nss/nsstest"
)

// The tests build correo's programs once for the whole package; Run
// removes them when the tests end. The shared cluster outlives every
// test, so it is torn down here, and the NSS module its hosts use with it.
func TestMain(m *testing.M) {
	code := clustertest.Run(m)
	dropShared()
	nsstest.Cleanup()
	os.Exit(code)
}
