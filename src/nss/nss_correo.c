/*
 * libnss_correo.so.2: the Name Service Switch module that lets every
 * program on a correo host see the cluster's users (passwd) and mail
 * groups (group), with `passwd: files correo` in /etc/nsswitch.conf.
 *
 * It is a thin client of nssd, the per-host agent, over a Unix stream
 * socket (protocol: src/nssproto/PROTOCOL.md). nssd holds the cluster key,
 * the cache and the failover logic; this module only asks and copies.
 *
 * Why C and not a Go c-shared library: NSS modules are loaded into every
 * process that resolves a user. A Go runtime inside such a process hangs
 * after fork() without exec (goroutines, the GC and the network poller do
 * not survive into the child; golang/go#15538), and sshd, cron and Postfix
 * do exactly that. So the module is plain C99/gnu11 with nothing but libc.
 *
 * Rules it keeps:
 *  - Every wait is bounded by poll() against one deadline per call
 *    (CORREO_NSS_TIMEOUT_MS). nssd not running (no socket, connection
 *    refused) returns NSS_STATUS_UNAVAIL at once, so `files` still works.
 *  - A process keeps up to CONN_SLOTS connections to nssd across calls
 *    (connecting was most of a lookup's cost), each used by one thread at
 *    a time behind its own mutex; a thread that finds them all busy uses
 *    a one-shot connection. A kept connection is used only by the process
 *    that made it (pid check; the atfork handler closes the child's
 *    copies), only while its descriptor is still that socket (the
 *    application may have closed it and reused the number), and is
 *    dropped after any timeout or broken frame, so a late answer is never
 *    read as the next call's. When nssd has closed a kept connection
 *    before answering, the call is asked once more on a fresh one.
 *  - Enumeration state (getpwent/getgrent) is one page of records behind a
 *    mutex; a fork handler resets it in the child.
 *  - Every length from the socket is checked against the frame and the
 *    protocol limits before anything is copied; a malformed answer is
 *    UNAVAIL, never a crash. Too small a caller buffer is
 *    NSS_STATUS_TRYAGAIN with ERANGE so glibc retries with a larger one.
 *  - The password field is always "x": hashes never leave passwdd.
 *  - No record with uid 0 or gid 0 is ever returned (nssd refuses them
 *    too): a mail user is never root.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* secure_getenv */
#endif
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef CORREO_NSS_SOCKET
#define CORREO_NSS_SOCKET "/run/correo/nssd.sock"
#endif

/* The whole budget of one call (connect, send, receive). Constant, and
 * above nssd's own upstream bound (4 s, src/nssd DefaultUpstreamTimeout)
 * which is above passwd's 2 s failover timeout: a lookup made while
 * pwclient switches to the secondary still gets its answer, and nssd
 * always answers "unavail" before this expires. Only a wedged nssd costs
 * the full wait; a stopped one costs nothing (connect fails at once). */
#ifndef CORREO_NSS_TIMEOUT_MS
#define CORREO_NSS_TIMEOUT_MS 5000
#endif

/* Protocol constants: src/nssproto/nssproto.go. */
#define PROTO_VERSION 1
#define MAX_REQUEST 1024
#define MAX_RESPONSE 65536
#define MAX_NAME 255
#define MAX_FIELD 4096
#define MAX_MEMBERS 1024

enum { OP_GETPWNAM = 1, OP_GETPWUID, OP_GETPWENT, OP_GETGRNAM, OP_GETGRGID, OP_GETGRENT };
enum { ST_FOUND = 0, ST_NOTFOUND = 1, ST_UNAVAIL = 2, ST_TRYAGAIN = 3 };

/* An enumeration that keeps returning empty pages that promise more is
 * broken; give up after this many. */
#define MAX_EMPTY_PAGES 16

/* Built with -fvisibility=hidden; the version script nss_correo.map
 * lists the same entry points, so nothing else can leak either way. */
#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT __attribute__((visibility("default")))

/* ------------------------------------------------------------------ */
/* Decoding: a cursor over a received body. Every read checks bounds.  */

struct rd {
	const unsigned char *p;
	size_t left;
	int bad;
};

static const unsigned char *rd_take(struct rd *r, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = 1;
		return NULL;
	}
	const unsigned char *v = r->p;
	r->p += n;
	r->left -= n;
	return v;
}

static uint32_t rd_u8(struct rd *r)
{
	const unsigned char *v = rd_take(r, 1);
	return v ? v[0] : 0;
}

static uint32_t rd_u16(struct rd *r)
{
	const unsigned char *v = rd_take(r, 2);
	return v ? ((uint32_t)v[0] << 8) | v[1] : 0;
}

static uint32_t rd_u32(struct rd *r)
{
	const unsigned char *v = rd_take(r, 4);
	return v ? ((uint32_t)v[0] << 24) | ((uint32_t)v[1] << 16) | ((uint32_t)v[2] << 8) | v[3] : 0;
}

static uint64_t rd_u64(struct rd *r)
{
	uint64_t hi = rd_u32(r);
	return (hi << 32) | rd_u32(r);
}

/* A string that may travel: at most max bytes, no NUL (it would cut the C
 * string), no ':' or newline (they would corrupt passwd lines), and when
 * nonempty is set, at least one byte. extra is one more byte to refuse
 * (',' in group members) or 0. */
struct str {
	const char *s;
	size_t n;
};

static struct str rd_str(struct rd *r, size_t max, int nonempty, char extra)
{
	struct str out = { "", 0 };
	size_t n = rd_u16(r);
	if (r->bad)
		return out;
	if (n > max || (nonempty && n == 0)) {
		r->bad = 1;
		return out;
	}
	const unsigned char *v = rd_take(r, n);
	if (!v)
		return out;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == 0 || v[i] == ':' || v[i] == '\n' || (extra && v[i] == (unsigned char)extra)) {
			r->bad = 1;
			return out;
		}
	}
	out.s = (const char *)v;
	out.n = n;
	return out;
}

struct pwrec {
	struct str name, gecos, home, shell;
	uint32_t uid, gid;
};

struct grrec {
	struct str name;
	uint32_t gid;
	uint32_t nmem;
	struct rd members; /* positioned at the first member */
	size_t members_bytes; /* sum of member lengths */
};

static int parse_pw(struct rd *r, struct pwrec *pw)
{
	pw->name = rd_str(r, MAX_NAME, 1, 0);
	pw->uid = rd_u32(r);
	pw->gid = rd_u32(r);
	pw->gecos = rd_str(r, MAX_FIELD, 0, 0);
	pw->home = rd_str(r, MAX_FIELD, 0, 0);
	pw->shell = rd_str(r, MAX_FIELD, 0, 0);
	return r->bad ? -1 : 0;
}

static int parse_gr(struct rd *r, struct grrec *gr)
{
	gr->name = rd_str(r, MAX_NAME, 1, 0);
	gr->gid = rd_u32(r);
	gr->nmem = rd_u16(r);
	if (r->bad || gr->nmem > MAX_MEMBERS)
		return -1;
	gr->members = *r;
	gr->members_bytes = 0;
	for (uint32_t i = 0; i < gr->nmem; i++) {
		struct str m = rd_str(r, MAX_NAME, 1, ',');
		gr->members_bytes += m.n;
	}
	return r->bad ? -1 : 0;
}

/* Checks a whole response body for op the way src/nssproto's
 * DecodeResponse does: 0 when well-formed. The enumeration code checks a
 * page once with it before handing out any record of it. */
HIDDEN int correo_nss_check_response(int op, const unsigned char *body, size_t len)
{
	struct rd r = { body, len, 0 };
	if (op < OP_GETPWNAM || op > OP_GETGRENT || len > MAX_RESPONSE)
		return -1;
	uint32_t st = rd_u8(&r);
	if (r.bad)
		return -1;
	if (st == ST_NOTFOUND || st == ST_UNAVAIL || st == ST_TRYAGAIN)
		return r.left == 0 ? 0 : -1;
	if (st != ST_FOUND)
		return -1;
	uint32_t n = 1;
	if (op == OP_GETPWENT || op == OP_GETGRENT) {
		(void)rd_u64(&r);
		n = rd_u16(&r);
	}
	int group = op == OP_GETGRNAM || op == OP_GETGRGID || op == OP_GETGRENT;
	for (uint32_t i = 0; i < n && !r.bad; i++) {
		struct pwrec pw;
		struct grrec gr;
		if (group ? parse_gr(&r, &gr) : parse_pw(&r, &pw))
			return -1;
	}
	return (r.bad || r.left != 0) ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Copying into the caller's buffer.                                   */

/* Copies s into *buf as a C string; -1 when it does not fit. */
static int put_str(char **buf, size_t *left, struct str s, char **dst)
{
	if (*left < s.n + 1)
		return -1;
	memcpy(*buf, s.s, s.n);
	(*buf)[s.n] = 0;
	*dst = *buf;
	*buf += s.n + 1;
	*left -= s.n + 1;
	return 0;
}

static const struct str password_x = { "x", 1 };

static enum nss_status fill_pw(const struct pwrec *rec, struct passwd *pw, char *buf, size_t buflen, int *errnop)
{
	char *b = buf;
	size_t left = buflen;
	if (put_str(&b, &left, rec->name, &pw->pw_name) || put_str(&b, &left, password_x, &pw->pw_passwd) ||
	    put_str(&b, &left, rec->gecos, &pw->pw_gecos) || put_str(&b, &left, rec->home, &pw->pw_dir) ||
	    put_str(&b, &left, rec->shell, &pw->pw_shell)) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	pw->pw_uid = rec->uid;
	pw->pw_gid = rec->gid;
	return NSS_STATUS_SUCCESS;
}

static enum nss_status fill_gr(const struct grrec *rec, struct group *gr, char *buf, size_t buflen, int *errnop)
{
	/* gr_mem first, aligned for char *, then the strings. */
	size_t pad = (alignof(char *) - ((uintptr_t)buf % alignof(char *))) % alignof(char *);
	size_t ptrs = ((size_t)rec->nmem + 1) * sizeof(char *);
	size_t need = pad + ptrs + rec->name.n + 1 + 2 + rec->members_bytes + rec->nmem;
	if (buflen < need) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	char **mem = (char **)(void *)(buf + pad);
	char *b = buf + pad + ptrs;
	size_t left = buflen - pad - ptrs;
	/* Cannot fail: need was computed from the same lengths. */
	put_str(&b, &left, rec->name, &gr->gr_name);
	put_str(&b, &left, password_x, &gr->gr_passwd);
	struct rd m = rec->members;
	for (uint32_t i = 0; i < rec->nmem; i++)
		put_str(&b, &left, rd_str(&m, MAX_NAME, 1, ','), &mem[i]);
	mem[rec->nmem] = NULL;
	gr->gr_mem = mem;
	gr->gr_gid = rec->gid;
	return NSS_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Transport: a few connections kept per process, every wait bounded.  */

/* Connecting costs nssd an accept and a goroutine and the caller three
 * syscalls; a kept connection costs neither. A few slots, each behind
 * its own mutex, so threads of one process resolving at once do not
 * queue behind each other; a thread that finds them all busy uses a
 * one-shot connection as before rather than wait. */
#define CONN_SLOTS 4

/* The first receive takes up to this much at once: the header and, for
 * any lookup of a real user, the whole body in one syscall. */
#define RECV_CHUNK 1024

struct conn {
	pthread_mutex_t lock;
	int fd;    /* -1: none */
	pid_t pid; /* the process that connected it */
	/* The socket's identity. An application may close our descriptor
	 * behind our back (daemons close every fd) and reuse the number;
	 * only a descriptor that is still this socket is ours to use. */
	dev_t dev;
	ino_t ino;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static struct conn conns[CONN_SLOTS] = { [0 ... CONN_SLOTS - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 } };

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Waits until fd is ready for events or the deadline passes: 0 ready,
 * -1 timed out or failed. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_us();
		if (left <= 0)
			return -1;
		struct pollfd p = { .fd = fd, .events = events };
		/* Rounded up: a poll of 0 ms would spin until the deadline. */
		int r = poll(&p, 1, (int)((left + 999) / 1000));
		if (r > 0)
			return 0; /* ready, or HUP/ERR: the next read/write reports it */
		if (r == 0 || errno != EINTR)
			return -1;
	}
}

/* The socket path: the build-time default, or CORREO_NSS_SOCKET from the
 * environment when the process is not setuid/setgid (secure_getenv
 * returns NULL under AT_SECURE: a user must not point a setuid program's
 * idea of users at a socket of their own). Only absolute paths. */
static const char *socket_path(void)
{
	const char *p = secure_getenv("CORREO_NSS_SOCKET");
	if (p && p[0] == '/' && strlen(p) < sizeof(((struct sockaddr_un *)0)->sun_path))
		return p;
	return CORREO_NSS_SOCKET;
}

static int connect_nssd(const char *path, int64_t deadline)
{
	struct sockaddr_un sa;
	size_t n = strlen(path);
	if (n >= sizeof(sa.sun_path))
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, n + 1);

	/* CLOEXEC: an exec'd program must not inherit our connection. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			/* nssd's backlog is full: it is alive but busy. Retry
			 * shortly, within the deadline. */
			int64_t left = deadline - now_us();
			if (left <= 0)
				break;
			poll(NULL, 0, left < 5000 ? (int)((left + 999) / 1000) : 5);
			continue;
		}
		if (errno == EINPROGRESS) {
			int err = 0;
			socklen_t len = sizeof(err);
			if (wait_fd(fd, POLLOUT, deadline) == 0 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
				return fd;
		}
		/* ENOENT (no socket), ECONNREFUSED (nssd gone), anything else:
		 * give up at once. */
		break;
	}
	close(fd);
	return -1;
}

/* Whether c->fd is still the socket this process made. */
static int conn_ours(const struct conn *c)
{
	struct stat st;
	return c->fd >= 0 && fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == c->dev &&
	       st.st_ino == c->ino;
}

/* Forgets c's connection; closes the descriptor only when it is still
 * our socket (otherwise the number belongs to the application now). */
static void conn_drop(struct conn *c)
{
	if (conn_ours(c))
		close(c->fd);
	c->fd = -1;
}

/* Whether c holds a connection to path that this process may use for a
 * new request: made by this process (a child that skipped the atfork
 * handler, e.g. after a raw clone, must not talk over its parent's
 * connection), still our descriptor, and idle with nothing unread (EOF
 * means nssd dropped it; unread bytes would be taken for the next
 * answer). Drops it otherwise. */
static int conn_ready(struct conn *c, const char *path)
{
	if (c->fd < 0)
		return 0;
	if (c->pid == getpid() && strcmp(c->path, path) == 0 && conn_ours(c)) {
		unsigned char b;
		ssize_t r;
		do
			r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		while (r < 0 && errno == EINTR);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
	}
	conn_drop(c);
	return 0;
}

/* Makes fd, just connected to path, c's connection: 0, or -1 when it
 * cannot be identified later (then it is used once and closed). */
static int conn_keep(struct conn *c, int fd, const char *path)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -1;
	c->fd = fd;
	c->pid = getpid();
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	strcpy(c->path, path); /* socket_path() bounds it by sun_path */
	return 0;
}

static int send_all(int fd, const unsigned char *p, size_t n, int64_t deadline)
{
	while (n > 0) {
		/* MSG_NOSIGNAL: a vanished nssd must not SIGPIPE the caller. */
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w < 0 && errno == EAGAIN) {
			if (wait_fd(fd, POLLOUT, deadline))
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

static int recv_all(int fd, unsigned char *p, size_t n, int64_t deadline)
{
	while (n > 0) {
		ssize_t r = recv(fd, p, n, 0);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
		} else if (r == 0) {
			return -1; /* closed mid-frame */
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN) {
			if (wait_fd(fd, POLLIN, deadline))
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

/* What one request/response on a connection came to. */
enum { XCH_OK, XCH_STALE, XCH_FAIL };

/* Sends a framed request on fd and receives the response body into a
 * malloc'd buffer (*body, *len; the caller frees it). XCH_STALE: the peer
 * closed before a byte of the answer (nssd drops idle connections; on a
 * reused connection that is worth one retry, every request being a
 * read). XCH_FAIL: timeout, broken frame, anything else. */
static int transact(int fd, const unsigned char *req, size_t reqlen, unsigned char **body, size_t *len,
		    int64_t deadline)
{
	if (send_all(fd, req, reqlen, deadline))
		return (errno == EPIPE || errno == ECONNRESET) ? XCH_STALE : XCH_FAIL;
	unsigned char chunk[RECV_CHUNK];
	size_t have = 0;
	/* nssd has not answered yet this early: waiting first saves a
	 * receive that could only say EAGAIN. */
	if (wait_fd(fd, POLLIN, deadline))
		return XCH_FAIL;
	while (have < 4) {
		ssize_t r = recv(fd, chunk + have, sizeof(chunk) - have, MSG_DONTWAIT);
		if (r > 0) {
			have += (size_t)r;
		} else if (r == 0) {
			return have == 0 ? XCH_STALE : XCH_FAIL;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == ECONNRESET) {
			return have == 0 ? XCH_STALE : XCH_FAIL;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
			return XCH_FAIL;
		} else if (wait_fd(fd, POLLIN, deadline)) {
			return XCH_FAIL;
		}
	}
	uint32_t n = ((uint32_t)chunk[0] << 24) | ((uint32_t)chunk[1] << 16) | ((uint32_t)chunk[2] << 8) | chunk[3];
	/* Refused before allocating anything. More than one frame's worth
	 * is as broken: the module never has two requests in flight. */
	if (n < 1 || n > MAX_RESPONSE || have - 4 > n)
		return XCH_FAIL;
	unsigned char *b = malloc(n);
	if (!b)
		return XCH_FAIL;
	memcpy(b, chunk + 4, have - 4);
	if (recv_all(fd, b + (have - 4), n - (have - 4), deadline)) {
		free(b);
		return XCH_FAIL;
	}
	*body = b;
	*len = n;
	return XCH_OK;
}

/* Sends a framed request and receives the response body into a malloc'd
 * buffer (*body, *len; the caller frees it). -1 on any failure. */
static int exchange(const unsigned char *req, size_t reqlen, unsigned char **body, size_t *len)
{
	int64_t deadline = now_us() + (int64_t)CORREO_NSS_TIMEOUT_MS * 1000;
	int saved = errno;
	int rc = -1;
	const char *path = socket_path();
	/* A thread cancelled inside poll() would leave its slot locked for
	 * good; cancellation waits until the slot is released. */
	int cancel;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	struct conn *c = NULL;
	for (int i = 0; i < CONN_SLOTS && !c; i++)
		if (pthread_mutex_trylock(&conns[i].lock) == 0)
			c = &conns[i];
	for (int attempt = 0; attempt < 2; attempt++) {
		int reused = c && conn_ready(c, path);
		int fd = reused ? c->fd : connect_nssd(path, deadline);
		if (fd < 0)
			break;
		int kept = reused || (c && conn_keep(c, fd, path) == 0);
		int x = transact(fd, req, reqlen, body, len, deadline);
		if (x == XCH_OK) {
			if (!kept)
				close(fd);
			rc = 0;
			break;
		}
		/* A timeout leaves an answer on its way, a broken frame leaves
		 * the stream out of step: either way this connection is done. */
		if (kept)
			conn_drop(c);
		else
			close(fd);
		if (!reused || x != XCH_STALE)
			break;
	}
	if (c)
		pthread_mutex_unlock(&c->lock);
	pthread_setcancelstate(cancel, NULL);
	/* The caller reports through *errnop; leave the process's errno as
	 * it was, as glibc's own modules do. */
	errno = saved;
	return rc;
}

/* Frames a request: length, version, op, payload. */
static size_t frame(unsigned char *buf, int op, const unsigned char *payload, size_t plen)
{
	uint32_t n = (uint32_t)(2 + plen);
	buf[0] = (unsigned char)(n >> 24);
	buf[1] = (unsigned char)(n >> 16);
	buf[2] = (unsigned char)(n >> 8);
	buf[3] = (unsigned char)n;
	buf[4] = PROTO_VERSION;
	buf[5] = (unsigned char)op;
	memcpy(buf + 6, payload, plen);
	return 6 + plen;
}

/* Asks nssd. On NSS_STATUS_SUCCESS, *body holds the whole body (free it)
 * and *r is positioned after the status byte of a "found" answer. Other
 * statuses are the NSS answer to return, with *errnop set. */
static enum nss_status ask(int op, const unsigned char *payload, size_t plen, unsigned char **body, struct rd *r,
			   int *errnop)
{
	unsigned char req[6 + 2 + MAX_NAME];
	size_t len = 0;
	*body = NULL;
	if (exchange(req, frame(req, op, payload, plen), body, &len)) {
		*errnop = ENOENT;
		return NSS_STATUS_UNAVAIL;
	}
	if (correo_nss_check_response(op, *body, len)) {
		free(*body);
		*body = NULL;
		*errnop = ENOENT;
		return NSS_STATUS_UNAVAIL;
	}
	r->p = *body + 1;
	r->left = len - 1;
	r->bad = 0;
	switch ((*body)[0]) {
	case ST_FOUND:
		return NSS_STATUS_SUCCESS;
	case ST_NOTFOUND:
		*errnop = ENOENT;
		free(*body);
		*body = NULL;
		return NSS_STATUS_NOTFOUND;
	case ST_TRYAGAIN:
		*errnop = EAGAIN;
		free(*body);
		*body = NULL;
		return NSS_STATUS_TRYAGAIN;
	default:
		*errnop = ENOENT;
		free(*body);
		*body = NULL;
		return NSS_STATUS_UNAVAIL;
	}
}

/* A name the protocol can carry; anything else cannot be a correo user. */
static int name_payload(const char *name, unsigned char *payload, size_t *plen)
{
	size_t n = name ? strnlen(name, MAX_NAME + 1) : 0;
	if (n == 0 || n > MAX_NAME || strpbrk(name, ":\n"))
		return -1;
	payload[0] = (unsigned char)(n >> 8);
	payload[1] = (unsigned char)n;
	memcpy(payload + 2, name, n);
	*plen = 2 + n;
	return 0;
}

static void id_payload(uint32_t id, unsigned char *p)
{
	p[0] = (unsigned char)(id >> 24);
	p[1] = (unsigned char)(id >> 16);
	p[2] = (unsigned char)(id >> 8);
	p[3] = (unsigned char)id;
}

static void cursor_payload(uint64_t c, unsigned char *p)
{
	id_payload((uint32_t)(c >> 32), p);
	id_payload((uint32_t)c, p + 4);
}

/* ------------------------------------------------------------------ */
/* The shared cache: nssd's cached answers in a file mapped read-only    */
/* (src/nssshm/nssshm.go has the layout). A hit costs no system call; a  */
/* miss, an expired or torn slot, anything odd, goes to nssd as before.  */

#define SHM_NAME "nssd.shm" /* beside the socket */
#define SHM_MAGIC "correo-nss-shm1" /* 16 bytes with its NUL */
#define SHM_HEADER 64
#define SHM_WAYS 4
#define SHM_SLOT 256
#define SHM_SLOT_HEAD 16
#define SHM_MAX_BUCKETS 8192
/* How often a process looks again for a file it could not map, and
 * checks that the file it maps is still the one at the path (a new
 * nssd may have replaced it). */
#define SHM_RECHECK_US 1000000
struct shm_map {
	const unsigned char *base;
	size_t size;
	uint32_t buckets;
	dev_t dev;
	ino_t ino;
	int64_t checked; /* now_us() of the last stat; atomic */
	struct shm_map *older; /* the mappings made before this one */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + sizeof(SHM_NAME)];
};

/* Mappings are never unmapped nor freed: a thread may be reading one. A
 * process has one in practice; another only when nssd replaced its file
 * or a test pointed CORREO_NSS_SOCKET at another nssd. shm_all lists
 * them all (they are kept, not lost). */
static struct shm_map *shm_cur; /* atomic */
static struct shm_map *shm_all; /* with shm_lock held */
/* Threads inside shm_pw, so that unloading frees the mappings only when
 * no thread can be reading one (a process exiting while another thread
 * resolves a name keeps them). */
static int shm_readers; /* atomic */
static pthread_mutex_t shm_lock = PTHREAD_MUTEX_INITIALIZER;
static char shm_failed[sizeof(((struct shm_map *)0)->path)];
static int64_t shm_retry; /* with shm_lock held */

static int shm_path(char *out, size_t n)
{
	const char *sock = socket_path();
	const char *slash = strrchr(sock, '/');
	size_t dir = (size_t)(slash - sock) + 1;
	if (dir + sizeof(SHM_NAME) > n)
		return -1;
	memcpy(out, sock, dir);
	memcpy(out + dir, SHM_NAME, sizeof(SHM_NAME));
	return 0;
}

static uint32_t ne32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Maps path into m after checking it is nssd's: a regular file nobody
 * else may write, with the layout this module reads. */
static int shm_map_file(const char *path, struct shm_map *m)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	struct stat st;
	unsigned char head[SHM_HEADER];
	int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 022) == 0 &&
		 pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head && memcmp(head, SHM_MAGIC, 16) == 0;
	uint32_t buckets = ok ? ne32(head + 16) : 0;
	ok = ok && buckets >= 1 && buckets <= SHM_MAX_BUCKETS && (buckets & (buckets - 1)) == 0 &&
	     ne32(head + 20) == SHM_WAYS && ne32(head + 24) == SHM_SLOT && ne32(head + 28) == SHM_HEADER &&
	     st.st_size == (off_t)(SHM_HEADER + 2 * (size_t)buckets * SHM_WAYS * SHM_SLOT);
	void *base = ok ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	close(fd);
	if (base == MAP_FAILED)
		return -1;
	m->base = base;
	m->size = (size_t)st.st_size;
	m->buckets = buckets;
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->checked = now_us();
	strcpy(m->path, path);
	return 0;
}

/* The mapping for the current socket path, or NULL. */
static const struct shm_map *shm_get(void)
{
	char path[sizeof(((struct shm_map *)0)->path)];
	if (shm_path(path, sizeof path))
		return NULL;
	struct shm_map *m = __atomic_load_n(&shm_cur, __ATOMIC_ACQUIRE);
	int64_t now = now_us();
	if (m && strcmp(m->path, path) == 0 && now - __atomic_load_n(&m->checked, __ATOMIC_RELAXED) < SHM_RECHECK_US)
		return m;
	pthread_mutex_lock(&shm_lock);
	m = shm_cur;
	if (m && strcmp(m->path, path) == 0) {
		struct stat st;
		if (now - m->checked < SHM_RECHECK_US ||
		    (stat(path, &st) == 0 && st.st_dev == m->dev && st.st_ino == m->ino)) {
			__atomic_store_n(&m->checked, now, __ATOMIC_RELAXED);
			pthread_mutex_unlock(&shm_lock);
			return m;
		}
	} else if (strcmp(shm_failed, path) == 0 && now < shm_retry) {
		pthread_mutex_unlock(&shm_lock);
		return NULL;
	}
	/* First use, another path, or a replaced file: map it afresh. */
	struct shm_map *nm = malloc(sizeof *nm);
	if (nm && shm_map_file(path, nm) != 0) {
		free(nm);
		nm = NULL;
	}
	if (nm) {
		nm->older = shm_all;
		shm_all = nm;
	} else {
		strcpy(shm_failed, path);
		shm_retry = now + SHM_RECHECK_US;
	}
	__atomic_store_n(&shm_cur, nm, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&shm_lock);
	return nm;
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static enum nss_status shm_pw_read(const char *name, uint32_t uid, struct passwd *pw, char *buf, size_t buflen,
				   int *errnop, int *hit);

/* Answers a getpwnam (name) or getpwuid (name NULL) from the shared
 * cache. *hit says whether it did; when not, the caller asks nssd. */
static enum nss_status shm_pw(const char *name, uint32_t uid, struct passwd *pw, char *buf, size_t buflen,
			      int *errnop, int *hit)
{
	*hit = 0;
	__atomic_fetch_add(&shm_readers, 1, __ATOMIC_SEQ_CST);
	enum nss_status st = shm_pw_read(name, uid, pw, buf, buflen, errnop, hit);
	__atomic_fetch_sub(&shm_readers, 1, __ATOMIC_SEQ_CST);
	return st;
}

static enum nss_status shm_pw_read(const char *name, uint32_t uid, struct passwd *pw, char *buf, size_t buflen,
				   int *errnop, int *hit)
{
	const struct shm_map *m = shm_get();
	if (!m)
		return NSS_STATUS_UNAVAIL;
	size_t namelen = name ? strlen(name) : 0;
	uint32_t h;
	size_t tab = 0;
	if (name) {
		h = fnv1a((const unsigned char *)name, namelen);
	} else {
		unsigned char b[4] = { uid >> 24, uid >> 16, uid >> 8, uid };
		h = fnv1a(b, 4);
		tab = 1;
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	size_t first = (size_t)(h & (m->buckets - 1)) * SHM_WAYS;
	for (size_t i = first; i < first + SHM_WAYS; i++) {
		const unsigned char *slot = m->base + SHM_HEADER + (tab * m->buckets * SHM_WAYS + i) * SHM_SLOT;
		const uint32_t *seq = (const uint32_t *)(const void *)slot;
		/* A seqlock read: the copy counts only if the sequence was even
		 * before it and unchanged after it. */
		uint32_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		alignas(8) unsigned char copy[SHM_SLOT];
		memcpy(copy, slot, SHM_SLOT);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(seq, __ATOMIC_RELAXED) != s1)
			continue;
		uint32_t len = ne32(copy + 4);
		uint64_t exp;
		memcpy(&exp, copy + 8, 8);
		if (len == 0 || len > SHM_SLOT - SHM_SLOT_HEAD || exp <= now)
			continue;
		struct rd r = { copy + SHM_SLOT_HEAD, len, 0 };
		struct pwrec rec;
		if (parse_pw(&r, &rec) || r.left != 0)
			continue;
		if (name ? (rec.name.n != namelen || memcmp(rec.name.s, name, namelen)) : rec.uid != uid)
			continue;
		if (rec.uid == 0 || rec.gid == 0)
			continue;
		*hit = 1;
		return fill_pw(&rec, pw, buf, buflen, errnop);
	}
	return NSS_STATUS_UNAVAIL;
}

/* ------------------------------------------------------------------ */
/* passwd                                                              */

static enum nss_status ask_pw(int op, const unsigned char *payload, size_t plen, const char *want_name,
			     uint32_t want_uid, struct passwd *pw, char *buf, size_t buflen, int *errnop)
{
	unsigned char *body;
	struct rd r;
	struct pwrec rec;
	enum nss_status st = ask(op, payload, plen, &body, &r, errnop);
	if (st != NSS_STATUS_SUCCESS)
		return st;
	parse_pw(&r, &rec); /* checked by correo_nss_check_response */
	/* An answer about someone else, or about root, is no answer. */
	if ((want_name && (rec.name.n != strlen(want_name) || memcmp(rec.name.s, want_name, rec.name.n))) ||
	    (!want_name && rec.uid != want_uid) || rec.uid == 0 || rec.gid == 0) {
		*errnop = ENOENT;
		st = NSS_STATUS_NOTFOUND;
	} else {
		st = fill_pw(&rec, pw, buf, buflen, errnop);
	}
	free(body);
	return st;
}

EXPORT enum nss_status _nss_correo_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t buflen, int *errnop)
{
	unsigned char payload[2 + MAX_NAME];
	size_t plen;
	if (name_payload(name, payload, &plen)) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	int hit;
	enum nss_status st = shm_pw(name, 0, pw, buf, buflen, errnop, &hit);
	if (hit)
		return st;
	return ask_pw(OP_GETPWNAM, payload, plen, name, 0, pw, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_correo_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t buflen, int *errnop)
{
	unsigned char payload[4];
	if (uid == 0) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	int hit;
	enum nss_status st = shm_pw(NULL, (uint32_t)uid, pw, buf, buflen, errnop, &hit);
	if (hit)
		return st;
	id_payload((uint32_t)uid, payload);
	return ask_pw(OP_GETPWUID, payload, 4, NULL, (uint32_t)uid, pw, buf, buflen, errnop);
}

/* ------------------------------------------------------------------ */
/* group                                                               */

static enum nss_status ask_gr(int op, const unsigned char *payload, size_t plen, const char *want_name,
			     uint32_t want_gid, struct group *gr, char *buf, size_t buflen, int *errnop)
{
	unsigned char *body;
	struct rd r;
	struct grrec rec;
	enum nss_status st = ask(op, payload, plen, &body, &r, errnop);
	if (st != NSS_STATUS_SUCCESS)
		return st;
	parse_gr(&r, &rec);
	if ((want_name && (rec.name.n != strlen(want_name) || memcmp(rec.name.s, want_name, rec.name.n))) ||
	    (!want_name && rec.gid != want_gid) || rec.gid == 0) {
		*errnop = ENOENT;
		st = NSS_STATUS_NOTFOUND;
	} else {
		st = fill_gr(&rec, gr, buf, buflen, errnop);
	}
	free(body);
	return st;
}

EXPORT enum nss_status _nss_correo_getgrnam_r(const char *name, struct group *gr, char *buf, size_t buflen, int *errnop)
{
	unsigned char payload[2 + MAX_NAME];
	size_t plen;
	if (name_payload(name, payload, &plen)) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return ask_gr(OP_GETGRNAM, payload, plen, name, 0, gr, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_correo_getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t buflen, int *errnop)
{
	unsigned char payload[4];
	if (gid == 0) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	id_payload((uint32_t)gid, payload);
	return ask_gr(OP_GETGRGID, payload, 4, NULL, (uint32_t)gid, gr, buf, buflen, errnop);
}

/* ------------------------------------------------------------------ */
/* Enumeration: one page at a time, behind a mutex.                    */

struct ent {
	pthread_mutex_t lock;
	int op;
	unsigned char *page; /* the whole body of the current page */
	struct rd pos;       /* the next record in it */
	uint32_t remaining;  /* records left in it */
	uint64_t next;       /* cursor of the page after it */
	int started;         /* a page has been fetched since set*ent */
};

static struct ent pwent = { .lock = PTHREAD_MUTEX_INITIALIZER, .op = OP_GETPWENT };
static struct ent grent = { .lock = PTHREAD_MUTEX_INITIALIZER, .op = OP_GETGRENT };

static void ent_reset(struct ent *e)
{
	free(e->page);
	e->page = NULL;
	e->remaining = 0;
	e->next = 0;
	e->started = 0;
}

/* In a forked child only the forking thread exists: a lock held by
 * another thread of the parent would never be released, and the page it
 * was replacing may be half-updated. Start the child from scratch (and
 * leak the parent's page rather than risk freeing it twice).
 *
 * The kept connections are the parent's: a child talking over them
 * would interleave its requests and answers with the parent's. Close the
 * child's copies (the parent's stay open: close() only drops this
 * process's reference, unlike shutdown()), so the child connects afresh.
 * conn_ready's pid check covers children that skip this handler. */
static void child_after_fork(void)
{
	struct ent *es[] = { &pwent, &grent };
	for (size_t i = 0; i < 2; i++) {
		pthread_mutex_init(&es[i]->lock, NULL);
		es[i]->page = NULL;
		es[i]->remaining = 0;
		es[i]->next = 0;
		es[i]->started = 0;
	}
	for (size_t i = 0; i < CONN_SLOTS; i++) {
		pthread_mutex_init(&conns[i].lock, NULL);
		conn_drop(&conns[i]);
	}
	/* The mappings are the child's too; only the lock may have been
	 * held by a thread the child does not have. */
	pthread_mutex_init(&shm_lock, NULL);
}

__attribute__((constructor)) static void correo_nss_init(void)
{
	pthread_atfork(NULL, NULL, child_after_fork);
}

/* dlclose (glibc unloads NSS modules only at exit, under valgrind's
 * freeres) should not leave sockets behind. A slot some thread still
 * holds is left alone. */
__attribute__((destructor)) static void correo_nss_fini(void)
{
	for (size_t i = 0; i < CONN_SLOTS; i++) {
		if (pthread_mutex_trylock(&conns[i].lock) != 0)
			continue;
		if (conns[i].pid == getpid())
			conn_drop(&conns[i]);
		pthread_mutex_unlock(&conns[i].lock);
	}
	/* Unloaded (dlclose, or exit): the mappings go unless a thread is
	 * reading one; a thread that comes after sees none. */
	if (pthread_mutex_trylock(&shm_lock) == 0) {
		__atomic_store_n(&shm_cur, NULL, __ATOMIC_SEQ_CST);
		while (shm_all && __atomic_load_n(&shm_readers, __ATOMIC_SEQ_CST) == 0) {
			struct shm_map *m = shm_all;
			shm_all = m->older;
			munmap((void *)m->base, m->size);
			free(m);
		}
		pthread_mutex_unlock(&shm_lock);
	}
}

/* Makes sure e has a record to hand out: SUCCESS with e->remaining > 0,
 * NOTFOUND at the end, or an error status. Called with the lock held. */
static enum nss_status ent_fill(struct ent *e, int *errnop)
{
	for (int empty = 0; e->remaining == 0; empty++) {
		if ((e->started && e->next == 0) || empty >= MAX_EMPTY_PAGES) {
			*errnop = ENOENT;
			return NSS_STATUS_NOTFOUND;
		}
		unsigned char payload[8], *body;
		struct rd r;
		cursor_payload(e->started ? e->next : 0, payload);
		enum nss_status st = ask(e->op, payload, 8, &body, &r, errnop);
		if (st != NSS_STATUS_SUCCESS)
			return st; /* state unchanged: a retry asks again */
		free(e->page);
		e->page = body;
		e->next = rd_u64(&r);
		e->remaining = rd_u16(&r);
		e->pos = r;
		e->started = 1;
	}
	return NSS_STATUS_SUCCESS;
}

static enum nss_status ent_set(struct ent *e)
{
	pthread_mutex_lock(&e->lock);
	ent_reset(e);
	pthread_mutex_unlock(&e->lock);
	return NSS_STATUS_SUCCESS;
}

EXPORT enum nss_status _nss_correo_setpwent(int stayopen)
{
	(void)stayopen;
	return ent_set(&pwent);
}

EXPORT enum nss_status _nss_correo_endpwent(void)
{
	return ent_set(&pwent);
}

EXPORT enum nss_status _nss_correo_getpwent_r(struct passwd *pw, char *buf, size_t buflen, int *errnop)
{
	pthread_mutex_lock(&pwent.lock);
	enum nss_status st;
	for (;;) {
		st = ent_fill(&pwent, errnop);
		if (st != NSS_STATUS_SUCCESS)
			break;
		struct rd save = pwent.pos;
		struct pwrec rec;
		parse_pw(&pwent.pos, &rec); /* the page was checked whole */
		if (rec.uid == 0 || rec.gid == 0) {
			pwent.remaining--;
			continue; /* never root */
		}
		st = fill_pw(&rec, pw, buf, buflen, errnop);
		if (st == NSS_STATUS_SUCCESS)
			pwent.remaining--;
		else
			pwent.pos = save; /* ERANGE: the retry gets the same entry */
		break;
	}
	pthread_mutex_unlock(&pwent.lock);
	return st;
}

EXPORT enum nss_status _nss_correo_setgrent(int stayopen)
{
	(void)stayopen;
	return ent_set(&grent);
}

EXPORT enum nss_status _nss_correo_endgrent(void)
{
	return ent_set(&grent);
}

EXPORT enum nss_status _nss_correo_getgrent_r(struct group *gr, char *buf, size_t buflen, int *errnop)
{
	pthread_mutex_lock(&grent.lock);
	enum nss_status st;
	for (;;) {
		st = ent_fill(&grent, errnop);
		if (st != NSS_STATUS_SUCCESS)
			break;
		struct rd save = grent.pos;
		struct grrec rec;
		parse_gr(&grent.pos, &rec);
		if (rec.gid == 0) {
			grent.remaining--;
			continue;
		}
		st = fill_gr(&rec, gr, buf, buflen, errnop);
		if (st == NSS_STATUS_SUCCESS)
			grent.remaining--;
		else
			grent.pos = save;
		break;
	}
	pthread_mutex_unlock(&grent.lock);
	return st;
}
