// Package keyfile reads and writes the cluster key file: the secret that
// seals every passwd datagram. The file holds a small key ring so keys can
// be rotated without a flag day: the first key seals, every key listed
// opens.
//
// Format, one key per line, '#' comments and blank lines ignored:
//
//	key <id> <base64 of 32 random bytes>
//
// where <id> is 1-255 (it travels in every datagram as one byte).
package keyfile

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// KeySize is the length of every key: 256 bits, for AES-256-GCM or
// ChaCha20-Poly1305.
const KeySize = 32

// Key is one entry of the ring.
type Key struct {
	ID     uint8
	Secret [KeySize]byte
}

// Ring is a parsed key file: Keys[0] seals, all of them open.
type Ring struct {
	Keys []Key
}

// Current is the key new datagrams are sealed with.
func (r *Ring) Current() Key { return r.Keys[0] }

// Lookup finds the key with the given id.
func (r *Ring) Lookup(id uint8) (Key, bool) {
	for _, k := range r.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// CheckMode refuses a key file that others can read or its group can
// write (see Load).
func CheckMode(path string, perm fs.FileMode) error {
	if perm&0o027 != 0 {
		return fmt.Errorf("cluster key file %s is writable by its group or open to others (mode %04o): run chmod 640 %s (or 600)", path, perm, path)
	}
	return nil
}

// Load reads a key file, refusing one that others can read or the group
// can write: a leaked cluster key lets anyone forge password answers. The
// group may read it: on a host, every correo daemon runs as its own
// account, and they share the key through one group (0640 root:correo-key).
func Load(path string) (*Ring, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cluster key file: %w", err)
	}
	if err := CheckMode(path, st.Mode().Perm()); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster key file: %w", err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("cluster key file %s: %w", path, err)
	}
	return r, nil
}

// Parse reads the key file format.
func Parse(data []byte) (*Ring, error) {
	r := &Ring{}
	seen := map[uint8]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || t[0] == '#' {
			continue
		}
		f := strings.Fields(t)
		if len(f) != 3 || f[0] != "key" {
			return nil, fmt.Errorf("line %d: expected `key <id> <base64 secret>`", line)
		}
		id, err := strconv.ParseUint(f[1], 10, 8)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("line %d: key id %q must be a number from 1 to 255", line, f[1])
		}
		if seen[uint8(id)] {
			return nil, fmt.Errorf("line %d: key id %d appears twice", line, id)
		}
		seen[uint8(id)] = true
		secret, err := base64.StdEncoding.DecodeString(f[2])
		if err != nil || len(secret) != KeySize {
			return nil, fmt.Errorf("line %d: key %d must be %d bytes in base64 (generate one with correoctl key new)", line, id, KeySize)
		}
		k := Key{ID: uint8(id)}
		copy(k.Secret[:], secret)
		r.Keys = append(r.Keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(r.Keys) == 0 {
		return nil, errors.New("no keys: expected at least one line `key <id> <base64 secret>`")
	}
	return r, nil
}

// Format renders a ring in the file format.
func Format(r *Ring) []byte {
	var b bytes.Buffer
	b.WriteString("# correo cluster key ring: the first key seals, all keys open. Keep mode 0600.\n")
	for _, k := range r.Keys {
		fmt.Fprintf(&b, "key %d %s\n", k.ID, base64.StdEncoding.EncodeToString(k.Secret[:]))
	}
	return b.Bytes()
}

// NewKey draws a fresh random key with the given id.
func NewKey(id uint8) (Key, error) {
	if id == 0 {
		return Key{}, errors.New("key id 0 is reserved")
	}
	k := Key{ID: id}
	_, err := rand.Read(k.Secret[:])
	return k, err
}

// Create writes a new one-key ring at path with mode 0600 and fails if the
// file exists, so an existing cluster key is never overwritten by accident.
func Create(path string) (*Ring, error) {
	k, err := NewKey(1)
	if err != nil {
		return nil, err
	}
	r := &Ring{Keys: []Key{k}}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("cluster key file %s already exists; not overwriting it", path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(Format(r)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return r, f.Close()
}
