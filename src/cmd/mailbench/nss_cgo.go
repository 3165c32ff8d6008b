//go:build cgo

package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stdlib.h>

typedef enum nss_status (*pwnam_fn)(const char *, struct passwd *, char *, size_t, int *);

// One lookup through the module's own entry point, as glibc would call
// it, with the struct and buffer on the C stack.
static int module_pwnam(void *f, const char *name) {
	struct passwd pw;
	char buf[4096];
	int err = 0;
	return ((pwnam_fn)f)(name, &pw, buf, sizeof buf, &err);
}

// One lookup through glibc: whatever nsswitch.conf says.
static int libc_pwnam(const char *name) {
	struct passwd pw, *res = 0;
	char buf[4096];
	int rc = getpwnam_r(name, &pw, buf, sizeof buf, &res);
	if (rc != 0) return -1;
	return res ? 1 : 0;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// The NSS module is called in-process through cgo, as src/nss/nsstest
// does: a dlopened libnss_correo.so.2's _nss_correo_getpwnam_r (the
// module and nssd, nothing else), or glibc's getpwnam_r (nsswitch.conf's
// whole chain). A helper process per lookup would measure fork and exec.
type nssLookup struct {
	fn   unsafe.Pointer // nil: through libc
	path string
}

func openNSS(path string, viaLibc bool) (*nssLookup, error) {
	if viaLibc {
		return &nssLookup{}, nil
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	h := C.dlopen(cp, C.RTLD_NOW|C.RTLD_LOCAL)
	if h == nil {
		return nil, fmt.Errorf("loading the NSS module %s: %s (build it with make nss, or give --nss-lib bin/libnss_correo.so.2)", path, C.GoString(C.dlerror()))
	}
	sym := C.CString("_nss_correo_getpwnam_r")
	defer C.free(unsafe.Pointer(sym))
	f := C.dlsym(h, sym)
	if f == nil {
		return nil, fmt.Errorf("%s does not export _nss_correo_getpwnam_r: not correo's NSS module?", path)
	}
	return &nssLookup{fn: f, path: path}, nil
}

func (l *nssLookup) getpwnam(name string) error {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	if l.fn == nil {
		switch C.libc_pwnam(cn) {
		case 1:
			return nil
		case 0:
			return nssError("NOTFOUND")
		}
		return nssError("UNAVAIL")
	}
	switch st := C.module_pwnam(l.fn, cn); st {
	case C.NSS_STATUS_SUCCESS:
		return nil
	case C.NSS_STATUS_NOTFOUND:
		return nssError("NOTFOUND")
	case C.NSS_STATUS_TRYAGAIN:
		return nssError("TRYAGAIN")
	case C.NSS_STATUS_UNAVAIL:
		return nssError("UNAVAIL")
	default:
		return nssError(fmt.Sprintf("status%d", int(st)))
	}
}
