package main

import (
	"testing"

	"correo/internal/clustertest"
)

// The tests build correo's programs once for the whole package; Main
// removes them when the tests end.
func TestMain(m *testing.M) { clustertest.Main(m) }
