/* Calls every entry point of the module (dlopened from argv[1]) many
 * times: hits, misses, too-small buffers, whole enumerations, groups,
 * and nssd unreachable. Run under valgrind by the test: any invalid read
 * or write, or memory lost per call, fails it. Expects the users juan
 * (5001) and ana and the groups correo (5000) and correo-staff (5001)
 * from the in-process nssd at $CORREO_NSS_SOCKET. */
#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum nss_status (*pwnam_fn)(const char *, struct passwd *, char *, size_t, int *);
typedef enum nss_status (*pwuid_fn)(uid_t, struct passwd *, char *, size_t, int *);
typedef enum nss_status (*pwent_fn)(struct passwd *, char *, size_t, int *);
typedef enum nss_status (*grnam_fn)(const char *, struct group *, char *, size_t, int *);
typedef enum nss_status (*grgid_fn)(gid_t, struct group *, char *, size_t, int *);
typedef enum nss_status (*grent_fn)(struct group *, char *, size_t, int *);
typedef enum nss_status (*set_fn)(int);
typedef enum nss_status (*end_fn)(void);

static int failures;

#define EXPECT(cond, ...)                                     \
	do {                                                  \
		if (!(cond)) {                                \
			failures++;                           \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);         \
			fputc('\n', stderr);                  \
		}                                             \
	} while (0)

static void *sym(void *h, const char *name)
{
	void *f = dlsym(h, name);
	if (!f) {
		fprintf(stderr, "missing %s\n", name);
		exit(2);
	}
	return f;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: exercise MODULE ROUNDS\n");
		return 2;
	}
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 2;
	}
	pwnam_fn pwnam = (pwnam_fn)sym(h, "_nss_correo_getpwnam_r");
	pwuid_fn pwuid = (pwuid_fn)sym(h, "_nss_correo_getpwuid_r");
	pwent_fn pwent = (pwent_fn)sym(h, "_nss_correo_getpwent_r");
	set_fn setpw = (set_fn)sym(h, "_nss_correo_setpwent");
	end_fn endpw = (end_fn)sym(h, "_nss_correo_endpwent");
	grnam_fn grnam = (grnam_fn)sym(h, "_nss_correo_getgrnam_r");
	grgid_fn grgid = (grgid_fn)sym(h, "_nss_correo_getgrgid_r");
	grent_fn grent = (grent_fn)sym(h, "_nss_correo_getgrent_r");
	set_fn setgr = (set_fn)sym(h, "_nss_correo_setgrent");
	end_fn endgr = (end_fn)sym(h, "_nss_correo_endgrent");

	int rounds = atoi(argv[2]);
	const char *sock = getenv("CORREO_NSS_SOCKET");
	struct passwd pw;
	struct group gr;
	int e;
	for (int r = 0; r < rounds; r++) {
		/* Exact-size heap buffers so any overrun is seen by memcheck. */
		for (size_t n = 0; n < 80; n += 7) {
			char *buf = malloc(n ? n : 1);
			enum nss_status st = pwnam("juan", &pw, buf, n, &e);
			EXPECT(st == NSS_STATUS_SUCCESS || (st == NSS_STATUS_TRYAGAIN && e == ERANGE), "juan with %zu: %d", n, st);
			if (st == NSS_STATUS_SUCCESS)
				EXPECT(strcmp(pw.pw_name, "juan") == 0 && strcmp(pw.pw_passwd, "x") == 0 && pw.pw_uid == 5001,
				       "juan fields");
			st = grgid(5001, &gr, buf, n, &e);
			EXPECT(st == NSS_STATUS_SUCCESS || (st == NSS_STATUS_TRYAGAIN && e == ERANGE), "grgid with %zu: %d", n, st);
			if (st == NSS_STATUS_SUCCESS)
				EXPECT(gr.gr_mem[0] && strcmp(gr.gr_mem[0], "juan") == 0 && gr.gr_mem[2] == NULL, "members");
			free(buf);
		}
		char buf[1024];
		EXPECT(pwuid(5002, &pw, buf, sizeof(buf), &e) == NSS_STATUS_SUCCESS && strcmp(pw.pw_name, "ana") == 0, "uid 5002");
		EXPECT(pwnam("nadie", &pw, buf, sizeof(buf), &e) == NSS_STATUS_NOTFOUND, "nadie");
		EXPECT(grnam("correo", &gr, buf, sizeof(buf), &e) == NSS_STATUS_SUCCESS && gr.gr_gid == 5000, "correo");

		int n = 0;
		setpw(0);
		for (;;) {
			char small[24];
			enum nss_status st = pwent(&pw, small, sizeof(small), &e);
			if (st == NSS_STATUS_TRYAGAIN && e == ERANGE)
				st = pwent(&pw, buf, sizeof(buf), &e);
			if (st != NSS_STATUS_SUCCESS)
				break;
			n++;
		}
		/* Half the rounds stop early without endpwent: setpwent must free. */
		if (r % 2)
			endpw();
		EXPECT(n >= 2, "enumerated %d users", n);
		n = 0;
		setgr(0);
		while (grent(&gr, buf, sizeof(buf), &e) == NSS_STATUS_SUCCESS)
			n++;
		endgr();
		EXPECT(n == 2, "enumerated %d groups", n);

		/* nssd unreachable. */
		setenv("CORREO_NSS_SOCKET", "/nonexistent/nssd.sock", 1);
		EXPECT(pwnam("juan", &pw, buf, sizeof(buf), &e) == NSS_STATUS_UNAVAIL, "unavail");
		setpw(0);
		EXPECT(pwent(&pw, buf, sizeof(buf), &e) == NSS_STATUS_UNAVAIL, "unavail ent");
		if (sock)
			setenv("CORREO_NSS_SOCKET", sock, 1);
	}
	endpw();
	dlclose(h);
	printf("%d rounds, %d failures\n", rounds, failures);
	return failures ? 1 : 0;
}
