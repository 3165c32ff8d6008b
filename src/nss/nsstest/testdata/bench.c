/* getpwnam latency through glibc's NSS, whatever nsswitch.conf says.
 * Reads user names (one per line) from a file, resolves each once with
 * getpwnam and prints: LABEL COUNT MEDIAN_US P99_US MAX_US. With -w, every
 * name is resolved once before the timed pass (a warm nssd cache). */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int warm = argc > 1 && strcmp(argv[1], "-w") == 0;
	if (argc != 3 + warm) {
		fprintf(stderr, "usage: bench [-w] LABEL NAMES\n");
		return 2;
	}
	const char *label = argv[1 + warm];
	FILE *f = fopen(argv[2 + warm], "r");
	if (!f) {
		perror(argv[2 + warm]);
		return 2;
	}
	size_t cap = 1024, n = 0;
	char **names = malloc(cap * sizeof(*names));
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (n == cap)
			names = realloc(names, (cap *= 2) * sizeof(*names));
		names[n++] = strdup(line);
	}
	fclose(f);
	if (warm)
		for (size_t i = 0; i < n; i++)
			getpwnam(names[i]);
	double *us = malloc(n * sizeof(*us));
	for (size_t i = 0; i < n; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		struct passwd *p = getpwnam(names[i]);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (!p || strcmp(p->pw_name, names[i]) != 0) {
			fprintf(stderr, "%s: getpwnam(%s) failed\n", label, names[i]);
			return 1;
		}
		us[i] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
	}
	qsort(us, n, sizeof(*us), cmp);
	printf("%s %zu %.1f %.1f %.1f\n", label, n, us[n / 2], us[(n * 99) / 100], us[n - 1]);
	return 0;
}
