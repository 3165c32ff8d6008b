package daemon

import (
	"fmt"
	"net"
	"os"

	"github.com/coreos/go-systemd/v22/activation"

	"correo/src/cluster"
)

// passedSockets takes the sockets systemd passed (LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES) by name and clears those variables, so no child
// inherits them. activation.ListenersWithNames and PacketConns each read
// (and clear) the same variables, so only one of them could be used;
// taking the files once lets a daemon have both stream and datagram
// sockets (passwdd).
func passedSockets() map[string][]*os.File {
	return activation.FilesWithNames()
}

// Listen returns the TCP listener for one of this host's services: the
// socket systemd passed with FileDescriptorName= the service's name
// ("smtp", "submission", "lmtp", "pop3", ...), or a new one on the
// address the profile gives the service.
func (e *Env) Listen(svc cluster.Service) (net.Listener, error) {
	addr, err := e.Profile.Listen(e.Host.Name, svc)
	if err != nil {
		return nil, err
	}
	return e.Socket(string(svc), func() (net.Listener, error) { return net.Listen("tcp", addr.String()) })
}

// Socket returns the stream socket systemd passed under name, or what
// listen opens when none was passed (a Unix socket, say).
func (e *Env) Socket(name string, listen func() (net.Listener, error)) (net.Listener, error) {
	files := e.claim(name)
	if files == nil {
		ln, err := listen()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return ln, nil
	}
	if len(files) != 1 {
		closeFiles(files)
		return nil, fmt.Errorf("systemd passed %d sockets named %q; %s listens on one: give the others another FileDescriptorName=", len(files), name, e.Program)
	}
	ln, err := net.FileListener(files[0])
	files[0].Close() // FileListener made its own descriptor
	if err != nil {
		return nil, fmt.Errorf("socket %q passed by systemd: %w (it must be a listening stream socket: ListenStream= in the socket unit)", name, err)
	}
	e.Log.Info("using the socket systemd passed", "name", name, "addr", ln.Addr().String())
	return ln, nil
}

// UDP returns the datagram sockets systemd passed under name (several
// are allowed: passwdd reads each in its own goroutine), or what listen
// opens when none was passed.
func (e *Env) UDP(name string, listen func() ([]*net.UDPConn, error)) ([]*net.UDPConn, error) {
	files := e.claim(name)
	if files == nil {
		conns, err := listen()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return conns, nil
	}
	var conns []*net.UDPConn
	for i, f := range files {
		pc, err := net.FilePacketConn(f)
		f.Close()
		uc, ok := pc.(*net.UDPConn)
		if err == nil && !ok {
			pc.Close()
			err = fmt.Errorf("a %T, not a UDP socket", pc)
		}
		if err != nil {
			closeFiles(files[i+1:])
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("socket %q passed by systemd: %w (it must be a UDP socket: ListenDatagram= in the socket unit)", name, err)
		}
		conns = append(conns, uc)
	}
	e.Log.Info("using the sockets systemd passed", "name", name, "addr", conns[0].LocalAddr().String(), "count", len(conns))
	return conns, nil
}

// claim removes the files passed under name from what Run will close.
func (e *Env) claim(name string) []*os.File {
	files := e.passed[name]
	delete(e.passed, name)
	return files
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
