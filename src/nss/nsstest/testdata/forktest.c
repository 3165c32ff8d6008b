/* Resolves a user through NSS, then forks (while another thread keeps
 * resolving and the parent is in the middle of an enumeration) and
 * resolves again in each child: the children must answer and exit in
 * time. This is what sshd, cron and Postfix do, and what a Go c-shared
 * NSS module cannot survive (golang/go#15538). */
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *spin(void *arg)
{
	char buf[1024];
	struct passwd pw, *r;
	while (!stop)
		getpwnam_r(arg, &pw, buf, sizeof(buf), &r);
	return NULL;
}

static int child(const char *user, uid_t uid)
{
	alarm(5);
	struct passwd *p = getpwnam(user);
	if (!p || p->pw_uid != uid)
		return 3;
	p = getpwuid(uid);
	if (!p || strcmp(p->pw_name, user) != 0)
		return 4;
	int n = 0, found = 0;
	setpwent();
	while ((p = getpwent()) != NULL) {
		n++;
		found |= strcmp(p->pw_name, user) == 0;
	}
	endpwent();
	if (!found)
		return 5;
	if (!getgrnam("correo"))
		return 6;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: forktest USER FORKS\n");
		return 2;
	}
	const char *user = argv[1];
	int forks = atoi(argv[2]);
	alarm(30);
	struct passwd *p = getpwnam(user);
	if (!p) {
		fprintf(stderr, "parent: getpwnam(%s) failed\n", user);
		return 1;
	}
	uid_t uid = p->pw_uid;
	pthread_t th;
	pthread_create(&th, NULL, spin, (void *)user);
	setpwent();
	getpwent(); /* the parent is mid-enumeration at every fork */
	for (int i = 0; i < forks; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0)
			_exit(child(user, uid));
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "child %d: %s %d\n", i, WIFEXITED(st) ? "exit" : "signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			return 1;
		}
	}
	stop = 1;
	pthread_join(th, NULL);
	endpwent();
	printf("ok %d forks\n", forks);
	return 0;
}
