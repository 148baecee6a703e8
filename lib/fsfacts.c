/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <linux/magic.h>
#include <stddef.h>
#include <sys/stat.h>

#include "fsfacts.h"

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


bool sm_fs_without_writeback(long magic)
{
	for (size_t i = 0; i < sizeof(fs_table) / sizeof(fs_table[0]); i++)
		if ((unsigned long)fs_table[i].magic == (unsigned long)magic)
			return !fs_table[i].writeback;
	return false;	/* unknown: assume writeback, shadow */
}

const char *sm_fs_name(long magic)
{
	for (size_t i = 0; i < sizeof(fs_table) / sizeof(fs_table[0]); i++)
		if ((unsigned long)fs_table[i].magic == (unsigned long)magic)
			return fs_table[i].name;
	return NULL;
}

bool sm_fd_is_dax(int fd)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, 0, &stx))
		return false;
	return (stx.stx_attributes_mask & STATX_ATTR_DAX) && (stx.stx_attributes & STATX_ATTR_DAX);
}
