/* Runs the module's own response decoder over cases read from stdin and
 * prints '1' (accepted) or '0' (refused) per case, so the Go test can
 * compare it with nssproto.DecodeResponse. Input, repeated: u8 op, u32
 * big-endian length, body. */
#include "nss_correo.c"

#include <stdio.h>

int main(void)
{
	unsigned char hdr[5];
	while (fread(hdr, 1, 5, stdin) == 5) {
		size_t n = ((size_t)hdr[1] << 24) | ((size_t)hdr[2] << 16) | ((size_t)hdr[3] << 8) | hdr[4];
		unsigned char *b = malloc(n ? n : 1);
		if (!b || fread(b, 1, n, stdin) != n)
			return 2;
		putchar(correo_nss_check_response(hdr[0], b, n) == 0 ? '1' : '0');
		free(b);
	}
	return 0;
}
