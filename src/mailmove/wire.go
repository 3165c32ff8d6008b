package mailmove

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"correo/src/mailtree"
	"correo/src/pwproto"
)

// Frame kinds on the stream.
const (
	kindRequest  uint8 = 1
	kindResponse uint8 = 2
	kindProgress uint8 = 3
	kindManifest uint8 = 4 // a chunk of an encoded manifest
	kindFile     uint8 = 5 // fileHeader: one file follows
	kindData     uint8 = 6 // part of its body
	kindFileEnd  uint8 = 7 // fileEnd: its checksum
)

// Operations.
const (
	opManifest = "manifest"
	opFetch    = "fetch"
	opFreeze   = "freeze"
	opThaw     = "thaw"
	opRetire   = "retire"
	opPull     = "pull"
	opVerify   = "verify"
	opCommit   = "commit"
	opAbort    = "abort"
	opStatus   = "status"
	opUsage    = "usage"
)

const (
	// chunkSize is the largest body or manifest part per frame: big enough
	// that framing costs nothing, small enough to keep memory flat.
	chunkSize = 256 << 10
	// maxEntries bounds a manifest: a mailbox of two million files is
	// beyond any real one, and refusing more keeps a broken peer from
	// exhausting memory.
	maxEntries = 2 << 20
	// fetchBatch is how many files one fetch request names.
	fetchBatch = 512
)

// Request is one operation.
type Request struct {
	Op   string `json:"op"`
	User string `json:"user"`
	// From is the source host (pull, verify); To the target (freeze,
	// retire), recorded in the marker for whoever finds it.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Files are the files to send (fetch).
	Files []mailtree.Entry `json:"files,omitempty"`
	// RateLimit caps a pull, and the fetches it makes, in bytes per
	// second (0: none). The source paces its reads and sends: pacing the
	// receiver instead would let the socket buffers take megabytes at
	// full speed from the source's disk.
	RateLimit int64 `json:"rate_limit,omitempty"`
	// Users are the mailboxes whose usage is asked (usage).
	Users []string `json:"users,omitempty"`
}

// maxUsageUsers bounds one usage request.
const maxUsageUsers = 5000

// Usage is a storage host's mail: each asked user's bytes
// (mailbox.Usage) and the size of the data_dir's file system.
type Usage struct {
	Capacity int64            `json:"capacity"`
	Free     int64            `json:"free"`
	Bytes    map[string]int64 `json:"bytes"`
}

// Response ends every operation.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Code is CodeBusy when another operation holds the user's mailbox on
	// that host: worth retrying shortly.
	Code string `json:"code,omitempty"`
	// Pass is what a pull or verify did.
	Pass *Pass `json:"pass,omitempty"`
	// Status answers status.
	Status *Status `json:"status,omitempty"`
	Usage  *Usage  `json:"usage,omitempty"`
}

// Pass is what one pull copied, or what a verify compared.
type Pass struct {
	Files   int64         `json:"files"`   // files copied (pull) or compared (verify)
	Bytes   int64         `json:"bytes"`   // their bytes
	Removed int64         `json:"removed"` // entries removed from the stage
	Total   int64         `json:"total"`   // bytes of the whole mailbox
	Took    time.Duration `json:"took"`
}

// Progress is sent during a pull, a few times a second.
type Progress struct {
	Files      int64 `json:"files"`
	Bytes      int64 `json:"bytes"`
	TotalFiles int64 `json:"total_files"`
	TotalBytes int64 `json:"total_bytes"`
}

// Status is what a host holds of a user's mailbox.
type Status struct {
	// Live: the user's Maildir exists here.
	Live bool `json:"live"`
	// Marker is the MovingMarker's text when the Maildir is frozen
	// ("frozen ..." or "moved ..."), else "".
	Marker string `json:"marker,omitempty"`
	// Stage: a copy being received exists here.
	Stage bool `json:"stage"`
}

type fileHeader struct {
	Entry   mailtree.Entry `json:"entry"`
	Missing bool           `json:"missing,omitempty"` // vanished since the scan: skip it
}

type fileEnd struct {
	Sum []byte `json:"sum"`
}

// sendJSON and recvJSON frame one JSON value.
func sendJSON(st *pwproto.Stream, kind uint8, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.Send(kind, b)
}

// CodeBusy: another operation on the user's mailbox is in progress.
const CodeBusy = "busy"

// RemoteError is an operation the other side refused or failed.
type RemoteError struct {
	Op, Msg, Code string
}

func (e *RemoteError) Error() string { return e.Op + ": " + e.Msg }

// IsBusy reports whether err says another operation holds the mailbox.
func IsBusy(err error) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Code == CodeBusy
}

// IsRemote reports whether err came from the other side's Response.
func IsRemote(err error) bool {
	var re *RemoteError
	return errors.As(err, &re)
}

func decode(payload []byte, v any, what string) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("malformed %s frame: %w", what, err)
	}
	return nil
}
