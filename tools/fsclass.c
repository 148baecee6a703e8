/* SPDX-License-Identifier: MIT */
/* The engine's shadowing decision for a file, by path, from the engine's
 * own filesystem facts (lib/fsfacts.c). */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "fsclass.h"
#include "fsfacts.h"

int smt_classify(const char *path, struct smt_fsclass *c)
{
	struct statfs sfs;
	struct statx stx;
	struct stat st;
	bool writeback = true;

	memset(c, 0, sizeof(*c));
	if (stat(path, &st)) {
		int err = errno;

		c->kind = "missing";
		snprintf(c->reason, sizeof(c->reason), "%s", strerror(err));
		return err;
	}
	if (statfs(path, &sfs) == 0) {
		c->magic = (long)sfs.f_type;
		c->fs = sm_fs_name(c->magic);
		writeback = !sm_fs_without_writeback(c->magic);
	}
	if (!statx(AT_FDCWD, path, 0, 0, &stx))
		c->dax = (stx.stx_attributes_mask & STATX_ATTR_DAX) &&
			 (stx.stx_attributes & STATX_ATTR_DAX);
	c->writable = access(path, R_OK | W_OK) == 0;
	if (S_ISDIR(st.st_mode)) {
		c->kind = "directory";
		snprintf(c->reason, sizeof(c->reason), "a directory cannot be mapped");
	} else if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 5) {
		c->kind = "shmem";
		snprintf(c->reason, sizeof(c->reason), "a shared mapping of /dev/zero is "
			 "anonymous shared memory (shmem): pinning it is safe, registrations "
			 "pass through");
	} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
		c->kind = "device";
		snprintf(c->reason, sizeof(c->reason), "device mapping: left to the kernel and "
			 "its driver (VM_IO/VM_PFNMAP, GPU BARs), never shadowed");
	} else if (!S_ISREG(st.st_mode)) {
		c->kind = "other";
		snprintf(c->reason, sizeof(c->reason), "not a regular file: cannot be mapped "
			 "shared as file pages");
	} else if (!writeback) {
		c->kind = "regular";
		snprintf(c->reason, sizeof(c->reason), "%s has no writeback: pinning its pages "
			 "is safe, registrations pass through", c->fs);
	} else if (c->dax) {
		c->kind = "regular";
		c->shadowed = true;
		snprintf(c->reason, sizeof(c->reason), "fsdax file on %s: every kernel refuses "
			 "to pin it (EOPNOTSUPP); shadowed, for read-only registrations too",
			 c->fs ? c->fs : "this filesystem");
	} else {
		c->kind = "regular";
		c->shadowed = true;
		if (c->fs)
			snprintf(c->reason, sizeof(c->reason), "%s has writeback: a NIC writing "
				 "the page cache behind it loses data; shadowed", c->fs);
		else
			snprintf(c->reason, sizeof(c->reason), "filesystem 0x%lx (writeback "
				 "assumed): shadowed", c->magic);
	}
	/* Only a PROT_READ mapping: no writable registration of it is possible,
	 * and read-only ones pass through (lib/reg.c), retried shadowed only
	 * where the kernel refuses them.  fsdax files are refused everywhere. */
	if (c->shadowed && !c->writable && !c->dax) {
		c->shadowed = false;
		snprintf(c->reason, sizeof(c->reason), "you cannot open it for writing: only a "
			 "read-only mapping, whose read-only registrations pass through "
			 "(shadowed only where the kernel refuses them: PROT_READ before 6.2)");
	}
	return 0;
}
