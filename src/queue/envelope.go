package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"correo/src/delivery"
)

// Route says which Deliverer a recipient goes through.
type Route string

const (
	// RouteLocal: a mailbox of this cluster (LMTP to its storage host).
	RouteLocal Route = "local"
	// RouteRemote: another domain (the relay role's MX client).
	RouteRemote Route = "remote"
)

// State is a recipient's progress.
type State string

const (
	Pending   State = "pending"   // not delivered yet: will be tried (again)
	Delivered State = "delivered" // the next hop answered 250
	Failed    State = "failed"    // permanent failure or lifetime expired: bounced
)

// Recipient is one envelope recipient and its state.
type Recipient struct {
	Addr  string `json:"addr"`
	Route Route  `json:"route"`
	State State  `json:"state"`
	// The last reply for this recipient (zero before the first attempt).
	Code     int       `json:"code,omitempty"`
	Enhanced string    `json:"enhanced,omitempty"`
	Text     string    `json:"text,omitempty"`
	Host     string    `json:"host,omitempty"`
	Updated  time.Time `json:"updated,omitzero"`
	// Expired is set when the recipient failed because the lifetime ran
	// out (the last reply was temporary).
	Expired bool `json:"expired,omitempty"`
	// Bounced is set once the DSN for a failure is queued (or was not
	// due: null sender).
	Bounced bool `json:"bounced,omitempty"`
	// Storage is the storage host the receiving smtpd's lookup found: the
	// first attempt goes there without asking passwd again
	// (delivery.Envelope.Hosts).
	Storage string `json:"storage,omitempty"`
}

// Envelope is a queued message's envelope and delivery state: the JSON
// of q/ID.env.
type Envelope struct {
	Version int    `json:"v"`
	ID      string `json:"id"`
	// From is the reverse path; "" is the null sender (bounces).
	From    string    `json:"from"`
	Created time.Time `json:"created"`
	Trace   string    `json:"trace"`
	// Client and Helo say where the message came from; User is the
	// authenticated submitter (relay role). For logs and DSNs.
	Client   string      `json:"client,omitempty"`
	Helo     string      `json:"helo,omitempty"`
	User     string      `json:"user,omitempty"`
	Size     int64       `json:"size"`
	Attempts int         `json:"attempts"`
	Next     time.Time   `json:"next,omitzero"`
	Rcpts    []Recipient `json:"rcpts"`
}

// envelopeVersion is the format version written; Decode refuses others.
const envelopeVersion = 1

// MaxRecipients bounds an envelope; far above any profile's limit.
const MaxRecipients = 10000

// maxEnvelopeBytes bounds an envelope file Decode reads.
const maxEnvelopeBytes = 4 << 20

// Pending lists the indexes of recipients still to deliver.
func (e *Envelope) Pending() []int {
	var out []int
	for i, r := range e.Rcpts {
		if r.State == Pending {
			out = append(out, i)
		}
	}
	return out
}

// Done reports whether no recipient is pending.
func (e *Envelope) Done() bool { return len(e.Pending()) == 0 }

// Encode writes the envelope as JSON.
func (e *Envelope) Encode() ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(e) // for programs: correoctl queue show prints it for people
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Decode parses and validates an envelope file. It never trusts the file:
// an envelope is read back by a later process, possibly after a crash or
// an operator's edit, and its addresses go on the wire.
func Decode(data []byte) (*Envelope, error) {
	if len(data) > maxEnvelopeBytes {
		return nil, fmt.Errorf("envelope is %d bytes, more than %d", len(data), maxEnvelopeBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Envelope
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("envelope: data after the JSON object")
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

func (e *Envelope) validate() error {
	if e.Version != envelopeVersion {
		return fmt.Errorf("envelope: version %d, this program reads %d", e.Version, envelopeVersion)
	}
	if !ValidID(e.ID) {
		return fmt.Errorf("envelope: bad id %q", e.ID)
	}
	if err := delivery.CheckPath(e.From, true); err != nil {
		return fmt.Errorf("envelope %s: sender: %v", e.ID, err)
	}
	if e.Trace == "" || len(e.Trace) > 64 || !printable(e.Trace) {
		return fmt.Errorf("envelope %s: bad trace id %q", e.ID, e.Trace)
	}
	if e.Size < 0 || e.Attempts < 0 {
		return fmt.Errorf("envelope %s: negative size or attempts", e.ID)
	}
	if len(e.Rcpts) == 0 || len(e.Rcpts) > MaxRecipients {
		return fmt.Errorf("envelope %s: %d recipients (1-%d)", e.ID, len(e.Rcpts), MaxRecipients)
	}
	for i, r := range e.Rcpts {
		if err := delivery.CheckPath(r.Addr, false); err != nil {
			return fmt.Errorf("envelope %s: recipient %d: %v", e.ID, i, err)
		}
		switch r.Route {
		case RouteLocal, RouteRemote:
		default:
			return fmt.Errorf("envelope %s: recipient %d: unknown route %q", e.ID, i, r.Route)
		}
		switch r.State {
		case Pending, Delivered, Failed:
		default:
			return fmt.Errorf("envelope %s: recipient %d: unknown state %q", e.ID, i, r.State)
		}
		if r.Code < 0 || r.Code > 599 {
			return fmt.Errorf("envelope %s: recipient %d: reply code %d", e.ID, i, r.Code)
		}
		if len(r.Storage) > 255 || !printable(r.Storage) {
			return fmt.Errorf("envelope %s: recipient %d: storage host not printable ASCII", e.ID, i)
		}
	}
	for _, s := range []string{e.Client, e.Helo, e.User} {
		if len(s) > 255 || !printable(s) {
			return fmt.Errorf("envelope %s: client, helo or user not printable ASCII", e.ID)
		}
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

var idCounter atomic.Uint32

func init() {
	var b [4]byte
	if _, err := io.ReadFull(randReader, b[:]); err == nil {
		idCounter.Store(uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]))
	}
}

// NewID returns a fresh queue id: 13 hex digits of microseconds since 1970
// and 7 of a counter, so ids sort by arrival and two messages of the same
// microsecond still differ.
func NewID() string {
	us := time.Now().UnixMicro()
	n := idCounter.Add(1) & 0xfffffff
	return fmt.Sprintf("%013x%07x", us, n)
}

// ValidID reports whether s has the form NewID produces: safe in a path.
func ValidID(s string) bool {
	if len(s) != 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// IDTime is when the message with id arrived (from the id itself).
func IDTime(id string) time.Time {
	us, err := strconv.ParseInt(id[:13], 16, 64)
	if err != nil || !ValidID(id) {
		return time.Time{}
	}
	return time.UnixMicro(us)
}
