/* SPDX-License-Identifier: MIT */
/* What a Slurm task got: whether safe_mr's preload is mapped into it (as the
 * loader put it there, from /proc/self/maps), and the variables the plugin
 * sets.  Built twice: dynamic, and static (which no preload can reach). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	char line[4096];
	const char *pl = getenv("LD_PRELOAD"), *g = getenv("SAFE_MR_GUARDIAN");
	FILE *f = fopen("/proc/self/maps", "r");
	int loaded = 0;

	if (!f) {
		perror("/proc/self/maps");
		return 2;
	}
	while (fgets(line, sizeof(line), f))
		loaded |= strstr(line, "/libsafe_mr_preload.so") != NULL;
	fclose(f);
	printf("probe pid=%d preload=%s LD_PRELOAD=%s SAFE_MR_GUARDIAN=%s\n", (int)getpid(),
	       loaded ? "loaded" : "absent", pl ? pl : "(unset)", g ? g : "(unset)");
	return 0;
}
