/* SPDX-License-Identifier: MIT */
#ifndef SM_PL_EARLY_H
#define SM_PL_EARLY_H

#include "util.h"

/* If set, told the addresses and descriptor early_exercise uses (a spy's
 * sm_spy_watch), before it uses them. */
static void (*early_watch)(void *addr, int fd);

/* msync, mremap, munmap, fsync, fdatasync on a small file mapping, each
 * result checked; exits on failure. */
static inline void early_exercise(const char *who)
{
	size_t ps = page_size();
	char path[4096];
	char *map, *grown;
	int fd = make_file(path, sizeof(path));

	map = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("%s: mmap: %s", who, strerror(errno));
	if (early_watch)
		early_watch(map, fd);
	map[0] = 'E';
	if (msync(map, ps, MS_SYNC))
		die("%s: msync: %s", who, strerror(errno));
	grown = mremap(map, ps, 2 * ps, MREMAP_MAYMOVE);
	if (grown == MAP_FAILED)
		die("%s: mremap: %s", who, strerror(errno));
	if (early_watch)
		early_watch(grown, -1);
	if (grown[0] != 'E')
		die("%s: mremap lost the data", who);
	if (munmap(grown, 2 * ps))
		die("%s: munmap: %s", who, strerror(errno));
	if (fsync(fd) || fdatasync(fd))
		die("%s: fsync/fdatasync: %s", who, strerror(errno));
	expect_pread(fd, 0, "E", who);
	if (msync((void *)1, ps, MS_SYNC) == 0 || errno != EINVAL)
		die("%s: msync of an unaligned address did not fail with EINVAL", who);
	close(fd);
	unlink(path);
}

#endif
