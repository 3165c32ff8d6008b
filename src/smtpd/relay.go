package smtpd

// # The relay role
//
// Outgoing mail: the cluster's users submit on 587 (STARTTLS, then AUTH)
// or 465 (implicit TLS), and the cluster's own hosts hand over on the
// relay port 25 without AUTH. Every MAIL needs an authenticated user or,
// on port 25, a peer in the profile's network; anyone else gets 530 5.7.0.
//
//	AUTH PLAIN / LOGIN      passwdd's authenticate (the relay never sees
//	                        a hash), with the client's address for its
//	                        lock-out; a failure is answered after FailDelay
//	wrong password          535 5.7.8
//	locked out by passwd    454 4.7.0
//	passwd unreachable      454 4.7.0
//	MAIL FROM not the       553 5.7.1 (the user's name or an alias at a
//	user's                  cluster domain, or the null sender)
//	over the hourly limit   450 4.7.1
//
// The authenticated user goes to the log and the queue's envelope, not
// into the message's headers.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"correo/src/delivery"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

// Authenticator checks passwords: a *pwclient.Client.
type Authenticator interface {
	Authenticate(ctx context.Context, name, password, clientIP string) (pwproto.User, error)
}

// RelayConfig configures the relay role's policies.
type RelayConfig struct {
	Auth Authenticator
	// MaxMessagesPerHour per authenticated user (0: the profile's
	// [host.smtpd] max_messages_per_hour).
	MaxMessagesPerHour int
	// FailDelay is how long a failed AUTH waits before its answer, to
	// slow down password guessing (default 1 s).
	FailDelay time.Duration
}

// Relay holds the relay role's state shared by its listeners.
type Relay struct {
	s   *Server
	cfg RelayConfig

	authOK, authFailed atomic.Uint64

	mu   sync.Mutex
	sent map[string][]time.Time // per user, within the last hour
	now  func() time.Time
}

// NewRelay prepares the relay policies of s.
func NewRelay(s *Server, cfg RelayConfig) (*Relay, error) {
	if cfg.Auth == nil {
		return nil, errors.New("smtpd: the relay role needs an Authenticator (passwd client)")
	}
	if cfg.MaxMessagesPerHour <= 0 && s.cfg.Host.SMTPD != nil {
		cfg.MaxMessagesPerHour = s.cfg.Host.SMTPD.MaxMessagesPerHour
	}
	if cfg.MaxMessagesPerHour <= 0 {
		cfg.MaxMessagesPerHour = 500
	}
	if cfg.FailDelay <= 0 {
		cfg.FailDelay = time.Second
	}
	return &Relay{s: s, cfg: cfg, sent: map[string][]time.Time{}, now: time.Now}, nil
}

// AuthCounts reports successful and failed authentications so far.
func (r *Relay) AuthCounts() (ok, failed uint64) { return r.authOK.Load(), r.authFailed.Load() }

// SubmissionPolicy is the policy of 587 and 465: AUTH before MAIL.
// (go-smtp refuses AUTH before TLS with 523 5.7.10 unless the profile's
// trusted_network allows it.)
func (r *Relay) SubmissionPolicy() Policy {
	return Policy{
		MayRelay:       func(s *Session) bool { return s.User != "" },
		AuthMechanisms: r.mechanisms,
		Auth:           r.auth,
		RequireAuth:    true,
		CheckSender:    r.checkSender,
		Queued:         r.queued,
	}
}

// ClusterPolicy is the policy of the relay port 25: the cluster's own
// hosts (peers in the profile's network) relay without AUTH; anyone else
// must authenticate first.
func (r *Relay) ClusterPolicy() Policy {
	return r.port25(func(s *Session) error {
		if r.inCluster(s) {
			return nil // a cluster host relays its own mail (bounces, cron)
		}
		return reply(530, "5.7.0", "authentication required: submit on port 587")
	})
}

// MXPolicy serves the mx and relay roles on one port 25 (a host with
// both, the ports not split by the profile): unauthenticated outsiders
// deliver to local users as on any mx; cluster hosts and authenticated
// users also relay.
func (r *Relay) MXPolicy() Policy {
	return r.port25(func(*Session) error { return nil })
}

// port25 is what the relay's port-25 policies share: cluster hosts and
// authenticated users relay, an authenticated user sends as herself;
// anonymous decides whether a client that has not authenticated may send
// at all.
func (r *Relay) port25(anonymous func(s *Session) error) Policy {
	return Policy{
		MayRelay:       func(s *Session) bool { return s.User != "" || r.inCluster(s) },
		AuthMechanisms: r.mechanisms,
		Auth:           r.auth,
		CheckSender: func(s *Session, from string) error {
			if s.User == "" {
				return anonymous(s)
			}
			return r.checkSender(s, from)
		},
		Queued: r.queued,
	}
}

func (r *Relay) inCluster(s *Session) bool {
	n := r.s.cfg.Profile.NetworkPrefix()
	return n.IsValid() && s.Client.IsValid() && n.Contains(s.Client)
}

func (r *Relay) mechanisms(*Session) []string { return []string{sasl.Plain, sasl.Login} }

func (r *Relay) auth(s *Session, mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return r.fail(s, user, "authorization identity differs from the user")
			}
			return r.verify(s, user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{verify: func(user, pass string) error { return r.verify(s, user, pass) }}, nil
	}
	return nil, reply(504, "5.5.4", "mechanism %s not supported: use PLAIN or LOGIN", quote(mech))
}

// verify asks passwd; on success the session's user is set.
func (r *Relay) verify(s *Session, user, pass string) error {
	name := user
	// "ana@example.com" is a common way to type "ana".
	if at := strings.LastIndexByte(name, '@'); at > 0 && r.s.cfg.Profile.IsLocalDomain(name[at+1:]) {
		name = name[:at]
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.s.cfg.Limits.LookupTimeout)
	defer cancel()
	u, err := r.cfg.Auth.Authenticate(ctx, name, pass, s.Client.String())
	switch {
	case err == nil && u.State == pwproto.StateDisabled:
		return r.fail(s, user, "account disabled")
	case err == nil:
		s.SetUser(u.Name)
		r.authOK.Add(1)
		r.s.log.Info("authenticated", "user", u.Name, "client", s.Client.String(), "listener", s.Listener, "tls", s.TLS)
		return nil
	case errors.Is(err, pwclient.ErrDenied):
		return r.fail(s, user, "wrong user or password")
	case errors.Is(err, pwclient.ErrLockedOut):
		r.authFailed.Add(1)
		r.s.log.Warn("authentication refused: locked out", "user", quote(user), "client", s.Client.String())
		return reply(454, "4.7.0", "too many failed logins, try again later")
	default:
		r.s.log.Warn("authentication deferred: passwd unavailable", "user", quote(user), "client", s.Client.String(), "err", err)
		return reply(454, "4.7.0", "temporary authentication failure, try again later")
	}
}

// fail answers a refused login after the delay, and counts it.
func (r *Relay) fail(s *Session, user, why string) error {
	n := r.authFailed.Add(1)
	r.s.log.Info("authentication failed", "user", quote(user), "client", s.Client.String(), "listener", s.Listener,
		"why", why, "failures", n)
	time.Sleep(r.cfg.FailDelay)
	return reply(535, "5.7.8", "authentication failed")
}

// checkSender allows the null sender and the user's own addresses: the
// name or an alias at a cluster domain, which passwd resolves to the same
// user as for incoming mail. It also applies the hourly limit.
func (r *Relay) checkSender(s *Session, from string) error {
	if s.User == "" {
		return reply(530, "5.7.0", "authentication required")
	}
	if from != "" {
		loc, err := delivery.ParseLocal(r.s.cfg.Profile, from)
		if err != nil {
			return reply(553, "5.7.1", "sender %s is not yours: use one of your addresses at this provider", quote(from))
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.s.cfg.Limits.LookupTimeout)
		u, err := r.s.cfg.Users.LookupAddr(ctx, loc.Key())
		cancel()
		switch {
		case err == nil && u.Name == s.User:
		case err == nil, errors.Is(err, pwclient.ErrNotFound):
			r.s.log.Info("sender refused", "user", s.User, "from", quote(from), "client", s.Client.String())
			return reply(553, "5.7.1", "sender %s is not yours: use one of your addresses at this provider", quote(from))
		default:
			return reply(451, "4.4.3", "user directory unavailable, try again later")
		}
	}
	if n := r.recent(s.User); n >= r.cfg.MaxMessagesPerHour {
		r.s.log.Warn("hourly message limit reached", "user", s.User, "limit", r.cfg.MaxMessagesPerHour, "client", s.Client.String())
		return reply(450, "4.7.1", "you sent %d messages in the last hour, the limit here: try again later", n)
	}
	return nil
}

// recent counts the user's messages of the last hour, dropping older ones.
func (r *Relay) recent(user string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := r.now().Add(-time.Hour)
	l := r.sent[user]
	i := 0
	for i < len(l) && l[i].Before(cut) {
		i++
	}
	l = l[i:]
	if len(l) == 0 {
		delete(r.sent, user)
	} else {
		r.sent[user] = l
	}
	return len(l)
}

// queued counts a message of an authenticated user once it is queued.
func (r *Relay) queued(s *Session) {
	if s.User == "" {
		return
	}
	r.mu.Lock()
	r.sent[s.User] = append(r.sent[s.User], r.now())
	r.mu.Unlock()
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): two prompts, then the check. go-sasl has
// only the client side.
type loginServer struct {
	verify func(user, pass string) error
	user   string
	step   int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		// AUTH LOGIN <base64 user>: the initial response is the user.
		fallthrough
	case 1:
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		if err := l.verify(l.user, string(resp)); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	return nil, false, fmt.Errorf("unexpected LOGIN step")
}
