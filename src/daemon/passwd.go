package daemon

import (
	"correo/src/keyfile"
	"correo/src/pwclient"
)

// Passwd loads the cluster key and opens a client of the profile's passwd
// servers: what every daemon but passwdd itself needs. The caller closes
// the client; the ring is returned for what else the key seals (login
// tickets).
func (e *Env) Passwd() (*pwclient.Client, *keyfile.Ring, error) {
	ring, err := keyfile.Load(e.Profile.Cluster.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	c, err := pwclient.FromProfile(e.Profile, ring, e.Log.Slog())
	if err != nil {
		return nil, nil, err
	}
	return c, ring, nil
}
