/* SPDX-License-Identifier: MIT */
/* Compiled as C and as C++ against the installed header (header.sh): the
 * header's version macros match the project version and the library, and
 * the layout of the public structures is the same in both languages. */
#include <safe_mr.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
#define LANG "C++"
#else
#define LANG "C"
#endif

int main(int argc, char **argv)
{
	struct safe_mr_stats st;
	char hdr[32];

	if (argc != 2) {
		fprintf(stderr, "usage: %s PROJECT_VERSION\n", argv[0]);
		return 2;
	}
	snprintf(hdr, sizeof(hdr), "%d.%d.%d", SAFE_MR_VERSION_MAJOR, SAFE_MR_VERSION_MINOR,
		 SAFE_MR_VERSION_PATCH);
	if (strcmp(hdr, argv[1]) || strcmp(SAFE_MR_VERSION_STRING, argv[1]) ||
	    strcmp(safe_mr_version(), argv[1]) ||
	    SAFE_MR_VERSION != SAFE_MR_VERSION_CODE(SAFE_MR_VERSION_MAJOR, SAFE_MR_VERSION_MINOR,
						    SAFE_MR_VERSION_PATCH)) {
		fprintf(stderr, "%s: header %s (%s, code %#x), library %s, project %s\n", LANG, hdr,
			SAFE_MR_VERSION_STRING, (unsigned)SAFE_MR_VERSION, safe_mr_version(), argv[1]);
		return 1;
	}
	if (safe_mr_stats(&st) != 0) {
		fprintf(stderr, "%s: safe_mr_stats failed\n", LANG);
		return 1;
	}
	/* One line to compare between the languages. */
	printf("layout: off_t %zu region %zu %zu %zu stats %zu %zu\n", sizeof(off_t),
	       sizeof(struct safe_mr_file_region), offsetof(struct safe_mr_file_region, offset),
	       offsetof(struct safe_mr_file_region, fd), sizeof(struct safe_mr_stats),
	       offsetof(struct safe_mr_stats, writeback_engine));
	return 0;
}
