/* SPDX-License-Identifier: MIT */
/* cfg_prog [register [N]]: links libsafe_mr; says "main" on stderr when
 * main starts (so a test can tell start-up messages from later ones) and
 * with "register" makes one registration (a range hold on anonymous memory:
 * no NIC needed), so that it counts as a process that registered; then N
 * registrations that fail (EFAULT: memory that is no longer mapped). */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "safe_mr.h"

int main(int argc, char **argv)
{
	fprintf(stderr, "main: safe_mr %s\n", safe_mr_version());
	if (argc > 1 && !strcmp(argv[1], "register")) {
		struct safe_mr_range *r;
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		int err;

		if (p == MAP_FAILED)
			return 1;
		err = safe_mr_range_acquire(p, 4096, 0, NULL, &r);
		if (err) {
			fprintf(stderr, "safe_mr_range_acquire: %s\n", strerror(err));
			return 1;
		}
		safe_mr_range_release(r);
		munmap(p, 4096);
		for (int i = argc > 2 ? atoi(argv[2]) : 0; i > 0; i--)
			if (!safe_mr_range_acquire(p, 4096, 0, NULL, &r)) {
				fprintf(stderr, "unmapped memory registered\n");
				return 1;
			}
	}
	return 0;
}
