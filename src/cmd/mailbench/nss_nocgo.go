//go:build !cgo

package main

import "errors"

type nssLookup struct{}

func openNSS(path string, viaLibc bool) (*nssLookup, error) {
	return nil, errors.New("this mailbench was built without cgo and cannot call the NSS module: build it with CGO_ENABLED=1 (make build does)")
}

func (l *nssLookup) getpwnam(name string) error { return errors.New("no cgo") }
