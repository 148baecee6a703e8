/* SPDX-License-Identifier: MIT */
/* Which mappings a registration covers.  It runs on every registration, so
 * it uses the PROCMAP_QUERY ioctl (Linux 6.11+: one call per VMA, no text)
 * and falls back to parsing /proc/self/maps on older kernels. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/types.h>

#include "vma.h"

/* From include/uapi/linux/fs.h (6.11); Debian 12's headers predate it. */
struct sm_procmap_query {
	__u64 size;
	__u64 query_flags;
	__u64 query_addr;
	__u64 vma_start;
	__u64 vma_end;
	__u64 vma_flags;
	__u64 vma_page_size;
	__u64 vma_offset;
	__u64 inode;
	__u32 dev_major;
	__u32 dev_minor;
	__u32 vma_name_size;
	__u32 build_id_size;
	__u64 vma_name_addr;
	__u64 build_id_addr;
};
#define SM_PROCMAP_QUERY _IOWR('f', 17, struct sm_procmap_query)
#define SM_PMQ_READABLE 0x01
#define SM_PMQ_WRITABLE 0x02
#define SM_PMQ_EXECUTABLE 0x04
#define SM_PMQ_SHARED 0x08
#define SM_PMQ_COVERING_OR_NEXT 0x10

static _Atomic int maps_fd = -1;
static _Atomic int have_query = 1;	/* until the kernel says otherwise */

void sm_vma_reset(void)
{
	int fd = atomic_exchange(&maps_fd, -1);

	if (fd >= 0)
		close(fd);
}

static int get_maps_fd(void)
{
	int fd = atomic_load(&maps_fd), expected = -1;

	if (fd >= 0)
		return fd;
	fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (!atomic_compare_exchange_strong(&maps_fd, &expected, fd)) {
		close(fd);
		fd = expected;
	}
	return fd;
}

void sm_vma_free(struct sm_vma *vmas, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(vmas[i].path);
	free(vmas);
}

static int push(struct sm_vma **vmas, size_t *n, size_t *cap, const struct sm_vma *v)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct sm_vma *nv = realloc(*vmas, ncap * sizeof(*nv));

		if (!nv)
			return ENOMEM;
		*vmas = nv;
		*cap = ncap;
	}
	(*vmas)[(*n)++] = *v;
	return 0;
}

static int list_query(int fd, uintptr_t start, uintptr_t end, struct sm_vma **vmas, size_t *n)
{
	size_t cap = 0;
	uintptr_t addr = start;

	while (addr < end) {
		/* No name: only shared file mappings of files the engine does
		 * not know yet need their path (sm_vma_path). */
		struct sm_procmap_query q = {
			.size = sizeof(q),
			.query_flags = SM_PMQ_COVERING_OR_NEXT,
			.query_addr = addr,
		};
		struct sm_vma v = { 0 };

		if (ioctl(fd, SM_PROCMAP_QUERY, &q) < 0) {
			if (errno == ENOENT)
				break;
			return errno;
		}
		if (q.vma_start >= end)
			break;
		v.start = q.vma_start < start ? start : q.vma_start;
		v.end = q.vma_end > end ? end : q.vma_end;
		v.prot = ((q.vma_flags & SM_PMQ_READABLE) ? PROT_READ : 0) |
			 ((q.vma_flags & SM_PMQ_WRITABLE) ? PROT_WRITE : 0) |
			 ((q.vma_flags & SM_PMQ_EXECUTABLE) ? PROT_EXEC : 0);
		v.shared = q.vma_flags & SM_PMQ_SHARED;
		v.inode = q.inode;
		v.has_file = q.inode != 0;
		v.offset = q.vma_offset + (v.start - q.vma_start);
		v.dev_major = q.dev_major;
		v.dev_minor = q.dev_minor;
		v.path_pending = v.has_file && v.shared;
		if (push(vmas, n, &cap, &v))
			return ENOMEM;
		addr = q.vma_end;
	}
	return 0;
}

int sm_vma_path(struct sm_vma *v)
{
	char name[4096];
	struct sm_procmap_query q = {
		.size = sizeof(q),
		.query_addr = v->start,
		.vma_name_size = sizeof(name),
		.vma_name_addr = (uintptr_t)name,
	};
	int fd;

	if (!v->path_pending)
		return 0;
	v->path_pending = false;
	fd = get_maps_fd();
	if (fd < 0)
		return errno ? errno : EIO;
	if (ioctl(fd, SM_PROCMAP_QUERY, &q) < 0)
		return errno;
	/* Another mapping there now: no name (open_backing then tries
	 * map_files, which checks the inode itself). */
	if (q.inode != v->inode || q.dev_major != v->dev_major || q.dev_minor != v->dev_minor ||
	    !q.vma_name_size)
		return 0;
	v->path = strdup(name);
	return v->path ? 0 : ENOMEM;
}

/* "start-end perms offset maj:min inode   path" */
static int parse_line(char *line, struct sm_vma *v)
{
	unsigned long long start, end, off, ino;
	char perms[8];
	int pos = 0;

	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &off,
		   &v->dev_major, &v->dev_minor, &ino, &pos) < 7)
		return -1;
	v->start = start;
	v->end = end;
	v->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	v->shared = perms[3] == 's';
	v->offset = off;
	v->inode = ino;
	v->has_file = ino != 0;
	v->path = NULL;
	v->path_pending = false;
	if (v->has_file && pos > 0 && line[pos] == '/')
		v->path = line + pos;	/* caller copies */
	return 0;
}

static int list_parse(int fd, uintptr_t start, uintptr_t end, struct sm_vma **vmas, size_t *n)
{
	size_t cap = 0, have = 0;
	off_t off = 0;
	char buf[16384];
	bool done = false;

	while (!done) {
		ssize_t r = pread(fd, buf + have, sizeof(buf) - 1 - have, off);
		char *line, *nl;

		if (r < 0)
			return errno;
		off += r;
		have += (size_t)r;
		buf[have] = '\0';
		if (r == 0)
			done = true;
		line = buf;
		while ((nl = strchr(line, '\n')) || (done && *line)) {
			struct sm_vma v;

			if (nl)
				*nl = '\0';
			if (parse_line(line, &v) == 0) {
				if (v.start >= end) {
					done = true;
					break;
				}
				if (v.end > start) {
					v.offset += (v.start < start ? start - v.start : 0);
					v.start = v.start < start ? start : v.start;
					v.end = v.end > end ? end : v.end;
					if (v.path && !(v.path = strdup(v.path)))
						return ENOMEM;
					if (push(vmas, n, &cap, &v)) {
						free(v.path);
						return ENOMEM;
					}
				}
			}
			if (!nl) {
				line += strlen(line);
				break;
			}
			line = nl + 1;
		}
		have = strlen(line);
		if (have == sizeof(buf) - 1)
			have = 0;	/* absurdly long line: drop it */
		memmove(buf, line, have);
	}
	return 0;
}

int sm_vma_list(uintptr_t start, uintptr_t end, struct sm_vma **vmas, size_t *n)
{
	int fd = get_maps_fd();
	int err;

	*vmas = NULL;
	*n = 0;
	if (fd < 0)
		return errno ? errno : EIO;
	if (atomic_load(&have_query)) {
		err = list_query(fd, start, end, vmas, n);
		if (err != ENOTTY && err != EINVAL)
			goto out;
		atomic_store(&have_query, 0);
		sm_vma_free(*vmas, *n);
		*vmas = NULL;
		*n = 0;
	}
	err = list_parse(fd, start, end, vmas, n);
out:
	if (err) {
		sm_vma_free(*vmas, *n);
		*vmas = NULL;
		*n = 0;
	}
	return err;
}
