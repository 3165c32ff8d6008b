/* Prints the uid of a user through NSS, or "none". Installed setuid root
 * by the test to show that CORREO_NSS_SOCKET is ignored under AT_SECURE. */
#include <pwd.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	struct passwd *p = getpwnam(argv[1]);
	if (p)
		printf("%u\n", (unsigned)p->pw_uid);
	else
		printf("none\n");
	return 0;
}
