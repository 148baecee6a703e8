/* SPDX-License-Identifier: MIT */
/* The engine's shadowing decision for a file, by path.  Duplicates the
 * filesystem list of lib/file.c (fs_without_writeback, is_dax): change both
 * together. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "fsclass.h"

#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000
#endif
#ifndef SECRETMEM_MAGIC
#define SECRETMEM_MAGIC 0x5345434d
#endif
#ifndef DMA_BUF_MAGIC
#define DMA_BUF_MAGIC 0x444d4142
#endif
#ifndef ANON_INODE_FS_MAGIC
#define ANON_INODE_FS_MAGIC 0x09041934
#endif

static const struct {
	long magic;
	const char *name;
	bool writeback;		/* false: pinning its pages is safe, no shadow */
} fs_table[] = {
	{ TMPFS_MAGIC, "tmpfs", false },
	{ HUGETLBFS_MAGIC, "hugetlbfs", false },
	{ RAMFS_MAGIC, "ramfs", false },
	{ SYSFS_MAGIC, "sysfs", false },
	{ PROC_SUPER_MAGIC, "proc", false },
	{ DEBUGFS_MAGIC, "debugfs", false },
	{ SECRETMEM_MAGIC, "secretmem", false },
	{ DMA_BUF_MAGIC, "dmabuf", false },
	{ ANON_INODE_FS_MAGIC, "anon_inodefs", false },
	{ EXT4_SUPER_MAGIC, "ext2/3/4", true },
	{ XFS_SUPER_MAGIC, "xfs", true },
	{ BTRFS_SUPER_MAGIC, "btrfs", true },
	{ NFS_SUPER_MAGIC, "nfs", true },
	{ 0x65735546, "fuse", true },
	{ OVERLAYFS_SUPER_MAGIC, "overlayfs", true },
	{ 0x01021997, "9p", true },
	{ F2FS_SUPER_MAGIC, "f2fs", true },
	{ 0x2fc12fc1, "zfs", true },
	{ 0x0bd00bd0, "lustre", true },
	{ 0x47504653, "gpfs", true },
	{ 0xff534d42, "cifs", true },
	{ 0xfe534d42, "smb2", true },
	{ CEPH_SUPER_MAGIC, "ceph", true },
	{ 0xca451a4e, "bcachefs", true },
	{ 0x5346544e, "ntfs", true },
	{ MSDOS_SUPER_MAGIC, "vfat", true },
	{ 0x2011bab0, "exfat", true },
};

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
		for (size_t i = 0; i < sizeof(fs_table) / sizeof(fs_table[0]); i++)
			if ((unsigned long)fs_table[i].magic == (unsigned long)sfs.f_type) {
				c->fs = fs_table[i].name;
				writeback = fs_table[i].writeback;
			}
	}
	if (!statx(AT_FDCWD, path, 0, 0, &stx))
		c->dax = (stx.stx_attributes_mask & STATX_ATTR_DAX) &&
			 (stx.stx_attributes & STATX_ATTR_DAX);
	c->writable = access(path, R_OK | W_OK) == 0;
	if (S_ISDIR(st.st_mode)) {
		c->kind = "directory";
		snprintf(c->reason, sizeof(c->reason), "a directory cannot be mapped");
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
	if (c->shadowed && !c->writable)
		snprintf(c->reason + strlen(c->reason), sizeof(c->reason) - strlen(c->reason),
			 " (you cannot open it for writing: only a read-only mapping)");
	return 0;
}
