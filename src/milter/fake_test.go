package milter

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake is a milter written against the wire format, scripted per test:
// it answers "continue" to every command that wants an answer, and at
// the command At does what Do says. It records what it was sent.
type fake struct {
	// Version, Actions and Protocol are its option negotiation answer
	// (defaults: 6, every action, no protocol flags).
	Version, Actions, Protocol uint32
	// Optneg, when set, is sent raw instead of the negotiation answer.
	Optneg []byte
	// At is the command (cmdConnect ... cmdEOB) where Do happens;
	// 0 means the end of message.
	At byte
	// Do: "answer" writes Answer (default: "a" at the end of message,
	// "c" elsewhere), "silent" never answers, "close" closes the
	// connection.
	Do     string
	Answer []byte
	// AfterChunks delays Do in the body until that many chunks came.
	AfterChunks int

	ln   net.Listener
	addr string

	mu     sync.Mutex
	idle   *sync.Cond // signalled when a conversation ends
	rec    record
	conns  int
	active int // conversations being served
}

// record is what one conversation carried.
type record struct {
	connect  string // hostname, family, port, address
	helo     string
	mail     []string
	rcpts    []string
	headers  [][2]string
	body     []byte
	chunks   []int
	macros   map[string]string
	cmds     string // every command code, in order
	sawData  bool
	finished bool // QUIT received
}

func pkt(code byte, data ...string) []byte {
	var ds [][]byte
	for _, d := range data {
		ds = append(ds, []byte(d))
	}
	return appendPacket(nil, code, ds...)
}

// hdrPkt is SMFIR_ADDHEADER / INSHEADER / CHGHEADER.
func hdrPkt(code byte, idx uint32, name, value string) []byte {
	var d []byte
	if code != respAddHeader {
		d = binary.BigEndian.AppendUint32(d, idx)
	}
	d = cstr(cstr(d, name), value)
	return appendPacket(nil, code, d)
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func startFake(t *testing.T, f *fake) *fake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln, f.addr = ln, "tcp:"+ln.Addr().String()
	f.idle = sync.NewCond(&f.mu)
	if f.Version == 0 {
		f.Version = 6
	}
	if f.Actions == 0 {
		f.Actions = 0x1ff
	}
	if f.At == 0 {
		f.At = cmdEOB
	}
	if f.Do == "" {
		f.Do = "answer"
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			f.mu.Lock()
			f.active++
			f.mu.Unlock()
			go func() {
				defer wg.Done()
				defer func() {
					f.mu.Lock()
					f.active--
					f.idle.Broadcast()
					f.mu.Unlock()
				}()
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	return f
}

// record is what the last conversation carried, once every
// conversation has ended.
func (f *fake) record() record {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.active > 0 {
		f.idle.Wait()
	}
	return f.rec
}

// connections counts the conversations so far, once they have ended.
func (f *fake) connections() int {
	f.record()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func (f *fake) serve(c net.Conn) {
	f.mu.Lock()
	f.conns++
	f.rec = record{macros: map[string]string{}}
	f.mu.Unlock()
	// A test never waits on a fake for long.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	var buf []byte
	var p packet
	var err error
	for {
		p, buf, err = readPacket(r, buf)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.note(p)
		f.mu.Unlock()
		switch p.code {
		case cmdOptneg:
			if f.Optneg != nil {
				c.Write(f.Optneg)
				continue
			}
			var d [12]byte
			binary.BigEndian.PutUint32(d[0:], f.Version)
			binary.BigEndian.PutUint32(d[4:], f.Actions)
			binary.BigEndian.PutUint32(d[8:], f.Protocol)
			c.Write(appendPacket(nil, respOptneg, d[:]))
			continue
		case cmdMacro, cmdAbort:
			continue
		case cmdQuit:
			f.mu.Lock()
			f.rec.finished = true
			f.mu.Unlock()
			return
		}
		at := p.code == f.At
		if at && p.code == cmdBody {
			f.mu.Lock()
			at = len(f.rec.chunks) > f.AfterChunks
			f.mu.Unlock()
		}
		if at {
			switch f.Do {
			case "silent":
				io.Copy(io.Discard, r) // until the client gives up
				return
			case "close":
				return
			}
			ans := f.Answer
			if ans == nil {
				ans = pkt(respContinue)
				if p.code == cmdEOB {
					ans = pkt(respAccept)
				}
			}
			c.Write(ans)
			continue
		}
		if f.noReply(p.code) {
			continue
		}
		if p.code == cmdEOB {
			c.Write(pkt(respAccept))
		} else {
			c.Write(pkt(respContinue))
		}
	}
}

// noReply: the negotiated protocol says this command gets no answer.
func (f *fake) noReply(code byte) bool {
	flag := map[byte]uint32{cmdConnect: protoNRConn, cmdHelo: protoNRHelo, cmdMail: protoNRMail,
		cmdRcpt: protoNRRcpt, cmdData: protoNRData, cmdHeader: protoNRHeader, cmdEOH: protoNREOH,
		cmdBody: protoNRBody}[code]
	return f.Protocol&flag != 0
}

func (f *fake) note(p packet) {
	rec := &f.rec
	rec.cmds += string(p.code)
	strs := func(b []byte) []string {
		return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	}
	switch p.code {
	case cmdConnect:
		host, rest, _ := cstring(p.data)
		rec.connect = host
		if len(rest) > 0 {
			rec.connect += " " + string(rest[0])
			if rest[0] == '4' || rest[0] == '6' {
				rec.connect += " " + strconv.Itoa(int(binary.BigEndian.Uint16(rest[1:]))) + " " + untilNUL(rest[3:])
			}
		}
	case cmdHelo:
		rec.helo = untilNUL(p.data)
	case cmdMail:
		rec.mail = strs(p.data)
	case cmdRcpt:
		rec.rcpts = append(rec.rcpts, strs(p.data)...)
	case cmdData:
		rec.sawData = true
	case cmdHeader:
		name, rest, _ := cstring(p.data)
		rec.headers = append(rec.headers, [2]string{name, untilNUL(rest)})
	case cmdBody:
		rec.body = append(rec.body, p.data...)
		rec.chunks = append(rec.chunks, len(p.data))
	case cmdMacro:
		kv := strs(p.data[1:])
		for i := 0; i+1 < len(kv); i += 2 {
			rec.macros[kv[i]] = kv[i+1]
		}
	}
}
