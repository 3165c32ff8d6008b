// Package nsstest loads libnss_correo.so.2 with dlopen and calls its NSS
// entry points directly, for the module's tests and benchmark. It is a
// test-only package: the cgo wrapper cannot live in a _test.go file.
//
// The module is built from src/nss with make into a temporary directory
// (gcc required), so `go test ./...` needs no earlier step; CORREO_NSS_LIB
// names an already built module instead.
package nsstest

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdlib.h>

typedef enum nss_status (*pwnam_fn)(const char *, struct passwd *, char *, size_t, int *);
typedef enum nss_status (*pwuid_fn)(uid_t, struct passwd *, char *, size_t, int *);
typedef enum nss_status (*pwent_fn)(struct passwd *, char *, size_t, int *);
typedef enum nss_status (*grnam_fn)(const char *, struct group *, char *, size_t, int *);
typedef enum nss_status (*grgid_fn)(gid_t, struct group *, char *, size_t, int *);
typedef enum nss_status (*grent_fn)(struct group *, char *, size_t, int *);
typedef enum nss_status (*set_fn)(int);
typedef enum nss_status (*end_fn)(void);

static int call_pwnam(void *f, const char *n, struct passwd *pw, char *b, size_t l, int *e) { return ((pwnam_fn)f)(n, pw, b, l, e); }
static int call_pwuid(void *f, uid_t u, struct passwd *pw, char *b, size_t l, int *e) { return ((pwuid_fn)f)(u, pw, b, l, e); }
static int call_pwent(void *f, struct passwd *pw, char *b, size_t l, int *e) { return ((pwent_fn)f)(pw, b, l, e); }
static int call_grnam(void *f, const char *n, struct group *gr, char *b, size_t l, int *e) { return ((grnam_fn)f)(n, gr, b, l, e); }
static int call_grgid(void *f, gid_t g, struct group *gr, char *b, size_t l, int *e) { return ((grgid_fn)f)(g, gr, b, l, e); }
static int call_grent(void *f, struct group *gr, char *b, size_t l, int *e) { return ((grent_fn)f)(gr, b, l, e); }
static int call_set(void *f) { return ((set_fn)f)(0); }
static int call_end(void *f) { return ((end_fn)f)(); }
static char *member(struct group *gr, int i) { return gr->gr_mem[i]; }
*/
import "C"

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"correo/internal/testutil"
)

// Status is an NSS status as the module returns it.
type Status int

const (
	TryAgain Status = C.NSS_STATUS_TRYAGAIN
	Unavail  Status = C.NSS_STATUS_UNAVAIL
	NotFound Status = C.NSS_STATUS_NOTFOUND
	Success  Status = C.NSS_STATUS_SUCCESS
)

func (s Status) String() string {
	switch s {
	case TryAgain:
		return "TRYAGAIN"
	case Unavail:
		return "UNAVAIL"
	case NotFound:
		return "NOTFOUND"
	case Success:
		return "SUCCESS"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// Errno values the tests compare with.
const (
	ENOENT = int(C.ENOENT)
	ERANGE = int(C.ERANGE)
	EAGAIN = int(C.EAGAIN)
)

// Passwd is a struct passwd copied out of the module's buffer.
type Passwd struct {
	Name, Passwd   string
	UID, GID       uint32
	Gecos, Dir, Sh string
}

// Group is a struct group copied out.
type Group struct {
	Name, Passwd string
	GID          uint32
	Members      []string
}

// Entry points, in the order of nss_correo.map.
var Entries = []string{
	"_nss_correo_getpwnam_r", "_nss_correo_getpwuid_r", "_nss_correo_setpwent", "_nss_correo_getpwent_r",
	"_nss_correo_endpwent", "_nss_correo_getgrnam_r", "_nss_correo_getgrgid_r", "_nss_correo_setgrent",
	"_nss_correo_getgrent_r", "_nss_correo_endgrent",
}

// Module is a dlopened libnss_correo.so.2.
type Module struct {
	Path string
	h    unsafe.Pointer
	fn   map[string]unsafe.Pointer
}

// Open dlopens the module at path and resolves every entry point.
func Open(path string) (*Module, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	h := C.dlopen(cp, C.RTLD_NOW|C.RTLD_LOCAL)
	if h == nil {
		return nil, fmt.Errorf("dlopen %s: %s", path, C.GoString(C.dlerror()))
	}
	m := &Module{Path: path, h: h, fn: map[string]unsafe.Pointer{}}
	for _, name := range Entries {
		cn := C.CString(name)
		f := C.dlsym(h, cn)
		C.free(unsafe.Pointer(cn))
		if f == nil {
			return nil, fmt.Errorf("%s does not export %s", path, name)
		}
		m.fn[name] = f
	}
	return m, nil
}

// Symbol reports whether the module resolves name through dlsym.
func (m *Module) Symbol(name string) bool {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return C.dlsym(m.h, cn) != nil
}

// call holds the C-side memory of one call: the struct and the buffer
// (C memory, so the struct's pointers into it obey cgo's rules).
type call struct {
	buf   *C.char
	n     C.size_t
	errno C.int
}

func newCall(buflen int) *call {
	c := &call{n: C.size_t(buflen)}
	c.buf = (*C.char)(C.malloc(C.size_t(max(buflen, 1))))
	return c
}

func (c *call) free() { C.free(unsafe.Pointer(c.buf)) }

func pwOut(pw *C.struct_passwd) Passwd {
	return Passwd{Name: C.GoString(pw.pw_name), Passwd: C.GoString(pw.pw_passwd), UID: uint32(pw.pw_uid),
		GID: uint32(pw.pw_gid), Gecos: C.GoString(pw.pw_gecos), Dir: C.GoString(pw.pw_dir), Sh: C.GoString(pw.pw_shell)}
}

func grOut(gr *C.struct_group) Group {
	g := Group{Name: C.GoString(gr.gr_name), Passwd: C.GoString(gr.gr_passwd), GID: uint32(gr.gr_gid)}
	for i := 0; ; i++ {
		m := C.member(gr, C.int(i))
		if m == nil {
			break
		}
		g.Members = append(g.Members, C.GoString(m))
	}
	return g
}

// Getpwnam calls _nss_correo_getpwnam_r with a buffer of buflen bytes.
func (m *Module) Getpwnam(name string, buflen int) (Passwd, Status, int) {
	c := newCall(buflen)
	defer c.free()
	pw := (*C.struct_passwd)(C.calloc(1, C.sizeof_struct_passwd))
	defer C.free(unsafe.Pointer(pw))
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	st := Status(C.call_pwnam(m.fn["_nss_correo_getpwnam_r"], cn, pw, c.buf, c.n, &c.errno))
	if st != Success {
		return Passwd{}, st, int(c.errno)
	}
	return pwOut(pw), st, 0
}

// Getpwuid calls _nss_correo_getpwuid_r.
func (m *Module) Getpwuid(uid uint32, buflen int) (Passwd, Status, int) {
	c := newCall(buflen)
	defer c.free()
	pw := (*C.struct_passwd)(C.calloc(1, C.sizeof_struct_passwd))
	defer C.free(unsafe.Pointer(pw))
	st := Status(C.call_pwuid(m.fn["_nss_correo_getpwuid_r"], C.uid_t(uid), pw, c.buf, c.n, &c.errno))
	if st != Success {
		return Passwd{}, st, int(c.errno)
	}
	return pwOut(pw), st, 0
}

// Setpwent, Endpwent, Setgrent and Endgrent call the module's.
func (m *Module) Setpwent() Status { return Status(C.call_set(m.fn["_nss_correo_setpwent"])) }
func (m *Module) Endpwent() Status { return Status(C.call_end(m.fn["_nss_correo_endpwent"])) }
func (m *Module) Setgrent() Status { return Status(C.call_set(m.fn["_nss_correo_setgrent"])) }
func (m *Module) Endgrent() Status { return Status(C.call_end(m.fn["_nss_correo_endgrent"])) }

// Getpwent calls _nss_correo_getpwent_r.
func (m *Module) Getpwent(buflen int) (Passwd, Status, int) {
	c := newCall(buflen)
	defer c.free()
	pw := (*C.struct_passwd)(C.calloc(1, C.sizeof_struct_passwd))
	defer C.free(unsafe.Pointer(pw))
	st := Status(C.call_pwent(m.fn["_nss_correo_getpwent_r"], pw, c.buf, c.n, &c.errno))
	if st != Success {
		return Passwd{}, st, int(c.errno)
	}
	return pwOut(pw), st, 0
}

// Getgrnam calls _nss_correo_getgrnam_r.
func (m *Module) Getgrnam(name string, buflen int) (Group, Status, int) {
	c := newCall(buflen)
	defer c.free()
	gr := (*C.struct_group)(C.calloc(1, C.sizeof_struct_group))
	defer C.free(unsafe.Pointer(gr))
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	st := Status(C.call_grnam(m.fn["_nss_correo_getgrnam_r"], cn, gr, c.buf, c.n, &c.errno))
	if st != Success {
		return Group{}, st, int(c.errno)
	}
	return grOut(gr), st, 0
}

// Getgrgid calls _nss_correo_getgrgid_r.
func (m *Module) Getgrgid(gid uint32, buflen int) (Group, Status, int) {
	c := newCall(buflen)
	defer c.free()
	gr := (*C.struct_group)(C.calloc(1, C.sizeof_struct_group))
	defer C.free(unsafe.Pointer(gr))
	st := Status(C.call_grgid(m.fn["_nss_correo_getgrgid_r"], C.gid_t(gid), gr, c.buf, c.n, &c.errno))
	if st != Success {
		return Group{}, st, int(c.errno)
	}
	return grOut(gr), st, 0
}

// Getgrent calls _nss_correo_getgrent_r.
func (m *Module) Getgrent(buflen int) (Group, Status, int) {
	c := newCall(buflen)
	defer c.free()
	gr := (*C.struct_group)(C.calloc(1, C.sizeof_struct_group))
	defer C.free(unsafe.Pointer(gr))
	st := Status(C.call_grent(m.fn["_nss_correo_getgrent_r"], gr, c.buf, c.n, &c.errno))
	if st != Success {
		return Group{}, st, int(c.errno)
	}
	return grOut(gr), st, 0
}

// SrcDir is src/nss, found from this file's location so tests and
// benchmarks work from any working directory.
func SrcDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// Cleanup removes what Build made (a TestMain calls it).
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Build returns the path of a freshly built libnss_correo.so.2 (once per
// process), or $CORREO_NSS_LIB when set.
func Build() (string, error) {
	if p := os.Getenv("CORREO_NSS_LIB"); p != "" {
		return p, nil
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "correo-nss-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		out, err := exec.Command("make", "-s", "-C", SrcDir(), "OUT="+dir).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building the NSS module (make -C %s; needs gcc): %v\n%s", SrcDir(), err, out)
			return
		}
		buildPath = filepath.Join(dir, "libnss_correo.so.2")
	})
	return buildPath, buildErr
}

// NeedLib is Build for a test: the module's path, or a failed test. Without
// CORREO_NSS_LIB the module is built here, so a missing make or gcc skips
// the test, or fails it under CORREO_STRICT (testutil.NeedCommand).
func NeedLib(t testing.TB) string {
	t.Helper()
	if os.Getenv("CORREO_NSS_LIB") == "" {
		testutil.NeedCommand(t, "make")
		testutil.NeedCommand(t, "gcc")
	}
	p, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// CompileC compiles a C test program from src/nss/nsstest/testdata into
// dir and returns the binary's path. extra are further gcc arguments.
func CompileC(dir, name string, extra ...string) (string, error) {
	src := filepath.Join(SrcDir(), "nsstest", "testdata", name+".c")
	bin := filepath.Join(dir, name)
	args := append([]string{"-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-o", bin, src}, extra...)
	out, err := exec.Command("gcc", append(args, "-ldl", "-lpthread")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("gcc %s: %v\n%s", name, err, out)
	}
	return bin, nil
}
