/* The module's kept connection, seen from inside a process (the module
 * dlopened from argv[1], nssd at $CORREO_NSS_SOCKET with the users juan
 * 5001 and ana 5002). Sockets are told apart by inode, from /proc/self/fd.
 *
 *   keepconn MODULE fork     a child after fork() (atfork handler) and
 *                            after a raw fork syscall (no handler) never
 *                            talks over the parent's connection; the
 *                            parent's connection outlives the children.
 *   keepconn MODULE threads  threads resolving at once all get the
 *                            right answers; afterwards no more sockets
 *                            are open than the module keeps.
 *
 * Prints "ok" and exits 0, or says what failed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

typedef enum nss_status (*pwnam_fn)(const char *, struct passwd *, char *, size_t, int *);
typedef enum nss_status (*pwuid_fn)(uid_t, struct passwd *, char *, size_t, int *);
static pwnam_fn pwnam;
static pwuid_fn pwuid;

#define MAX_SOCKS 64

/* The inodes of this process's open sockets; returns how many. */
static int sockets(unsigned long *out)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char link[64];
		ssize_t l = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
		if (l <= 0)
			continue;
		link[l] = 0;
		unsigned long ino;
		if (sscanf(link, "socket:[%lu]", &ino) == 1 && n < MAX_SOCKS)
			out[n++] = ino;
	}
	closedir(d);
	return n;
}

static int juan_ok(void)
{
	struct passwd pw;
	char buf[1024];
	int e;
	return pwnam("juan", &pw, buf, sizeof(buf), &e) == NSS_STATUS_SUCCESS && pw.pw_uid == 5001;
}

/* In a child: the inherited copy of the parent's socket is gone once the
 * child has resolved, and the child's own is a different socket. */
static int child(unsigned long parent)
{
	unsigned long s[MAX_SOCKS];
	if (!juan_ok() || !juan_ok())
		return 10;
	int n = sockets(s);
	if (n != 1)
		return 11; /* one kept connection, the parent's copy closed */
	if (s[0] == parent)
		return 12; /* talking over the parent's connection */
	return 0;
}

static int fork_mode(void)
{
	unsigned long s[MAX_SOCKS];
	if (!juan_ok() || !juan_ok()) {
		printf("parent lookup failed\n");
		return 1;
	}
	if (sockets(s) != 1) {
		printf("parent holds %d sockets after two lookups, want 1\n", sockets(s));
		return 1;
	}
	unsigned long parent = s[0];
	const char *how[] = { "fork()", "raw fork syscall" };
	for (int i = 0; i < 2; i++) {
		/* The raw syscall runs no pthread_atfork handler: only the
		 * module's pid check stands between the child and the
		 * parent's connection. */
		pid_t pid = i == 0 ? fork() : (pid_t)syscall(SYS_fork);
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			alarm(10);
			_exit(child(parent));
		}
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("child after %s: %s %d\n", how[i], WIFEXITED(st) ? "exit" : "signal",
			       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			return 1;
		}
		/* The child's close did not end the parent's connection. */
		if (!juan_ok() || sockets(s) != 1 || s[0] != parent) {
			printf("parent's connection after the child of %s: lost\n", how[i]);
			return 1;
		}
	}
	printf("ok\n");
	return 0;
}

#define THREADS 12
#define ROUNDS 300

static void *resolver(void *arg)
{
	long t = (long)arg;
	for (int i = 0; i < ROUNDS; i++) {
		struct passwd pw;
		char buf[1024];
		int e;
		int which = (int)((t + i) % 4);
		enum nss_status st;
		/* A mix of names and uids: an answer crossing over between
		 * threads sharing a connection would show as a wrong user. */
		switch (which) {
		case 0:
			st = pwnam("juan", &pw, buf, sizeof(buf), &e);
			if (st != NSS_STATUS_SUCCESS || pw.pw_uid != 5001)
				return "juan";
			break;
		case 1:
			st = pwnam("ana", &pw, buf, sizeof(buf), &e);
			if (st != NSS_STATUS_SUCCESS || pw.pw_uid != 5002)
				return "ana";
			break;
		case 2:
			st = pwuid(5001, &pw, buf, sizeof(buf), &e);
			if (st != NSS_STATUS_SUCCESS || strcmp(pw.pw_name, "juan") != 0)
				return "5001";
			break;
		default:
			st = pwnam("nadie", &pw, buf, sizeof(buf), &e);
			if (st != NSS_STATUS_NOTFOUND)
				return "nadie";
		}
	}
	return NULL;
}

static int threads_mode(void)
{
	pthread_t th[THREADS];
	for (long i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, resolver, (void *)i);
	int bad = 0;
	for (int i = 0; i < THREADS; i++) {
		void *r;
		pthread_join(th[i], &r);
		if (r) {
			printf("thread %d: wrong answer for %s\n", i, (char *)r);
			bad = 1;
		}
	}
	unsigned long s[MAX_SOCKS];
	int n = sockets(s);
	if (n < 1 || n > 4) {
		printf("%d sockets open after the threads ended, want 1-4 (the kept ones)\n", n);
		bad = 1;
	}
	if (!bad)
		printf("ok\n");
	return bad;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: keepconn MODULE fork|threads\n");
		return 2;
	}
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 2;
	}
	pwnam = (pwnam_fn)dlsym(h, "_nss_correo_getpwnam_r");
	pwuid = (pwuid_fn)dlsym(h, "_nss_correo_getpwuid_r");
	if (!pwnam || !pwuid)
		return 2;
	alarm(60);
	if (strcmp(argv[2], "fork") == 0)
		return fork_mode();
	return threads_mode();
}
