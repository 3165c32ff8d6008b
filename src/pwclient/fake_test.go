package pwclient

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"correo/src/keyfile"
	"correo/src/pwproto"
)

// fakeServer is a passwdd stand-in on loopback built on pwproto, whose
// behaviour a test can switch at any time.
type fakeServer struct {
	t      testing.TB
	conn   *net.UDPConn
	codec  *pwproto.Codec
	forger *pwproto.Codec // a different cluster key under the same id
	filter *pwproto.ReplayFilter
	role   pwproto.Role

	mode     atomic.Int32
	delay    atomic.Int64 // answer after this long
	received atomic.Int64
	ops      [8]atomic.Int64 // requests received per op
	answered atomic.Int64
	seen     sync.Map // request id → copies received
	wg       sync.WaitGroup
}

const (
	modeNormal   = iota
	modeSilent   // read and drop everything
	modeJunk     // answer only with junk: wrong ids, garbage, forged key
	modeJunkThen // junk first, then the real answer
	modeTempFail // answer every request StatusTempFail
	modeDropOnce // drop the first copy of each request: only a retransmission is answered
)

func testKey(id uint8, salt byte) keyfile.Key {
	k := keyfile.Key{ID: id}
	for i := range k.Secret {
		k.Secret[i] = byte(i) ^ salt
	}
	return k
}

func testRing() *keyfile.Ring { return &keyfile.Ring{Keys: []keyfile.Key{testKey(1, 0x5a)}} }

func newFake(t testing.TB, role pwproto.Role) *fakeServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return startFake(t, conn, role)
}

func startFake(t testing.TB, conn *net.UDPConn, role pwproto.Role) *fakeServer {
	codec, err := pwproto.NewCodec(testRing())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadBuffer(4 << 20) // 1000 requests arrive in one burst
	forger, _ := pwproto.NewCodec(&keyfile.Ring{Keys: []keyfile.Key{testKey(1, 0x77)}})
	f := &fakeServer{t: t, conn: conn, codec: codec, forger: forger, filter: pwproto.NewReplayFilter(), role: role}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.stop)
	return f
}

func (f *fakeServer) addr() netip.AddrPort { return f.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *fakeServer) stop() {
	f.conn.Close()
	f.wg.Wait()
}

// restart closes the socket (the port answers ICMP unreachable) and, when
// asked, opens it again on the same port.
func (f *fakeServer) restartOn(t testing.TB) *fakeServer {
	addr := f.addr()
	f.stop()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	return startFake(t, conn, f.role)
}

var users = map[string]pwproto.User{
	"juan": {Name: "juan", UID: 1001, GID: 100, Gecos: "Juan", Shell: "/bin/false", Home: "/var/mail/j/u/a/juan",
		Storage: "store1", Quota: 1 << 20, Aliases: []string{"jperez"}},
	"ana": {Name: "ana", UID: 1002, GID: 100, Home: "/var/mail/a/n/a/ana", Storage: "store2", State: pwproto.StateMoving},
}

func (f *fakeServer) serve() {
	defer f.wg.Done()
	buf := make([]byte, 2048)
	var req pwproto.Request
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		f.received.Add(1)
		now := time.Now()
		if err := f.codec.OpenRequestTo(&req, buf[:n], now); err != nil {
			f.t.Errorf("fake server: %v", err)
			continue
		}
		if !f.filter.Admit(&req, now) {
			f.t.Errorf("fake server: replayed request id %d (a retransmission must have a new nonce)", req.ID)
			continue
		}
		f.ops[req.Op&7].Add(1)
		copies, _ := f.seen.LoadOrStore(req.ID, new(atomic.Int32))
		nth := copies.(*atomic.Int32).Add(1)
		mode := f.mode.Load()
		if mode == modeSilent || mode == modeDropOnce && nth == 1 {
			continue
		}
		resp := f.answer(&req, mode)
		out, err := f.codec.SealResponse(nil, &resp, now)
		if err != nil {
			f.t.Errorf("fake server: seal: %v", err)
			continue
		}
		if mode == modeJunk || mode == modeJunkThen {
			f.sendJunk(from, resp)
			if mode == modeJunk {
				continue
			}
		}
		delay := time.Duration(f.delay.Load())
		if delay == 0 {
			if _, err := f.conn.WriteToUDPAddrPort(out, from); err == nil {
				f.answered.Add(1)
			}
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			time.Sleep(delay)
			if _, err := f.conn.WriteToUDPAddrPort(out, from); err == nil {
				f.answered.Add(1)
			}
		}()
	}
}

func (f *fakeServer) sendJunk(to netip.AddrPort, resp pwproto.Response) {
	wrong := resp
	wrong.ID++ // a response for no pending request
	b, _ := f.codec.SealResponse(nil, &wrong, time.Now())
	f.conn.WriteToUDPAddrPort(b, to)
	forged, _ := f.forger.SealResponse(nil, &resp, time.Now()) // right id, wrong key
	f.conn.WriteToUDPAddrPort(forged, to)
	f.conn.WriteToUDPAddrPort([]byte("garbage that is not a datagram at all, long enough to be looked at"), to)
	big := make([]byte, pwproto.MaxDatagram+1)
	copy(big, b)
	f.conn.WriteToUDPAddrPort(big, to)
}

func (f *fakeServer) answer(req *pwproto.Request, mode int32) pwproto.Response {
	resp := req.Reply(pwproto.StatusNotFound)
	if mode == modeTempFail {
		resp.Status = pwproto.StatusTempFail
		return resp
	}
	found := func(u pwproto.User, ok bool) {
		if ok {
			resp.Status, resp.User = pwproto.StatusOK, u
		}
	}
	switch req.Op {
	case pwproto.OpLookupName:
		u, ok := users[req.Name]
		found(u, ok)
	case pwproto.OpLookupUID:
		for _, u := range users {
			if u.UID == req.UID {
				found(u, true)
			}
		}
	case pwproto.OpLookupAddr:
		if req.Address == "jperez@correo.test" || req.Address == "juan@correo.test" {
			found(users["juan"], true)
		}
	case pwproto.OpAuth:
		switch {
		case req.Name == "locked":
			resp.Status = pwproto.StatusLockedOut
		case req.Name == "juan" && req.Password == "pw" && req.Client == "192.0.2.7":
			found(users["juan"], true)
		case req.Name == "nobody":
			resp.Status = pwproto.StatusNotFound
		default:
			resp.Status = pwproto.StatusDenied
		}
	case pwproto.OpEnumerate:
		// Users sorted by uid; the cursor is the next uid.
		all := []pwproto.User{users["juan"], users["ana"]}
		var page []pwproto.User
		for _, u := range all {
			if uint64(u.UID) >= req.Cursor && len(page) < int(req.Max) {
				page = append(page, u)
			}
		}
		resp.Status, resp.Users = pwproto.StatusOK, page
		if n := len(page); n > 0 && page[n-1].UID != all[len(all)-1].UID {
			resp.Next = uint64(page[n-1].UID) + 1
		}
	case pwproto.OpPing:
		resp.Status = pwproto.StatusOK
		resp.Ping = pwproto.PingInfo{Role: f.role, Epoch: 1, Seq: 42, Users: uint64(len(users))}
	default:
		panic(fmt.Sprint("op ", req.Op))
	}
	return resp
}
