// Package hosts embeds the dev profile so every correo program has a
// working default without a -profile flag. The TOML files in this folder
// are the source of truth; this file only makes dev.toml available to Go.
package hosts

import _ "embed"

// Dev is hosts/dev.toml, the default profile.
//
//go:embed dev.toml
var Dev []byte

// DevName is how the embedded profile is named in error messages.
const DevName = "hosts/dev.toml (embedded)"
