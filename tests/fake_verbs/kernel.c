/* SPDX-License-Identifier: MIT */
/* Emulation of what ib_umem_get() accepts, by kernel version, from
 * /proc/self/maps: the decisions the kernel makes from the VMAs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/magic.h>

#include "fake.h"

#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000
#endif

static struct fake_env env;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void env_read(void)
{
	const char *k = getenv("FAKE_VERBS_KERNEL");
	const char *o = getenv("FAKE_VERBS_ODP");
	const char *f = getenv("FAKE_VERBS_FAIL_REG");

	env.kernel = 65;
	if (k && strcmp(k, "6.1") == 0)
		env.kernel = 61;
	else if (k && strcmp(k, "6.5") != 0)
		fprintf(stderr, "fake_verbs: FAKE_VERBS_KERNEL=%s unknown, using 6.5\n", k);
	env.odp = o && strcmp(o, "1") == 0;
	env.fail_reg = f ? strtoul(f, NULL, 10) : 0;
}

const struct fake_env *fake_env(void)
{
	pthread_once(&env_once, env_read);
	return &env;
}

size_t fake_page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static int read_all(const char *path, char **buf)
{
	size_t cap = 1 << 16, len = 0;
	char *b = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (!b || fd < 0) {
		int e = errno;

		free(b);
		if (fd >= 0)
			close(fd);
		return e;
	}
	for (;;) {
		ssize_t n;

		if (len + 4097 > cap) {
			char *nb = realloc(b, cap * 2);

			if (!nb) {
				free(b);
				close(fd);
				return ENOMEM;
			}
			b = nb;
			cap *= 2;
		}
		n = read(fd, b + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			free(b);
			close(fd);
			return e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	b[len] = '\0';
	*buf = b;
	return 0;
}

ssize_t fake_read_maps(struct fake_vma **out)
{
	char *buf = NULL, *line, *save = NULL;
	size_t n = 0, cap = 64;
	struct fake_vma *v;
	int err = read_all("/proc/self/maps", &buf);

	if (err) {
		errno = err;
		return -1;
	}
	v = malloc(cap * sizeof(*v));
	if (!v) {
		free(buf);
		errno = ENOMEM;
		return -1;
	}
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long start, end, ino;
		unsigned long long off;
		unsigned int maj, min;
		char perms[8];
		int pos = 0;

		if (sscanf(line, "%lx-%lx %7s %llx %x:%x %lu %n", &start, &end, perms, &off,
			   &maj, &min, &ino, &pos) < 7)
			continue;
		if (n == cap) {
			struct fake_vma *nv = realloc(v, 2 * cap * sizeof(*v));

			if (!nv) {
				free(v);
				free(buf);
				errno = ENOMEM;
				return -1;
			}
			v = nv;
			cap *= 2;
		}
		v[n] = (struct fake_vma){
			.start = start, .end = end,
			.r = perms[0] == 'r', .w = perms[1] == 'w', .shared = perms[3] == 's',
			.off = off, .dev = makedev(maj, min), .ino = ino,
		};
		if (pos > 0)
			snprintf(v[n].path, sizeof(v[n].path), "%s", line + pos);
		n++;
	}
	free(buf);
	*out = v;
	return (ssize_t)n;
}

/* Filesystem magic and file type of a mapped file: through map_files (works
 * for deleted files and memfds, needs CAP_SYS_ADMIN) or else its path. */
static int vma_file_info(const struct fake_vma *v, long *magic, bool *reg, bool *dax)
{
	char mf[96];
	const char *p = mf;
	char path[sizeof(v->path)];
	struct statfs sfs;
	struct statx stx;

	snprintf(mf, sizeof(mf), "/proc/self/map_files/%lx-%lx",
		 (unsigned long)v->start, (unsigned long)v->end);
	if (statfs(p, &sfs) != 0) {
		char *d;

		snprintf(path, sizeof(path), "%s", v->path);
		d = strstr(path, " (deleted)");
		if (d)
			*d = '\0';
		p = path;
		if (statfs(p, &sfs) != 0)
			return errno;
	}
	if (statx(AT_FDCWD, p, 0, STATX_TYPE, &stx) != 0)
		return errno;
	*magic = (long)sfs.f_type;
	*reg = S_ISREG(stx.stx_mode);
	*dax = (stx.stx_attributes_mask & STATX_ATTR_DAX) &&
	       (stx.stx_attributes & STATX_ATTR_DAX);
	return 0;
}

static bool no_writeback_fs(long magic)
{
	return magic == TMPFS_MAGIC || magic == HUGETLBFS_MAGIC || magic == RAMFS_MAGIC;
}

static bool writable_access(unsigned int access)
{
	return access & (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
			 IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND);
}

/* The checks of one VMA: those of mm/gup.c check_vma_flags() and the
 * FOLL_LONGTERM file-backed rules, per kernel version. */
static int check_vma(const struct fake_vma *v, unsigned int access)
{
	bool w = writable_access(access);
	long magic = 0;
	bool reg = false, dax = false;

	if (!v->r && !v->w)
		return EFAULT;			/* PROT_NONE */
	if (w && !v->w)
		return EFAULT;
	if (v->ino == 0)
		return 0;			/* anonymous */
	if (!strncmp(v->path, "/memfd:", 7) && strstr(v->path, " (deleted)"))
		return 0;			/* memfd: shmem or hugetlbfs */
	if (vma_file_info(v, &magic, &reg, &dax) != 0)
		return EAGAIN;			/* changed under us: look again */
	if (dax)
		return EOPNOTSUPP;
	if (!v->shared || !reg || no_writeback_fs(magic))
		return 0;
	if (w && fake_env()->kernel >= 65)
		return EFAULT;
	if (!w && !v->w && fake_env()->kernel == 61)
		return EFAULT;			/* 6.1: FOLL_FORCE on a PROT_READ shared file */
	return 0;
}

static void vma_backing(const struct fake_vma *v, uintptr_t page, struct fake_backing *b)
{
	if (v->ino == 0) {
		*b = (struct fake_backing){0};
		return;
	}
	b->dev = v->dev;
	b->ino = v->ino;
	b->off = v->off + (page - v->start);
}

/* Walk the VMAs covering [start, end): fn per VMA, EFAULT on a hole. */
static int walk_once(uintptr_t start, uintptr_t end, unsigned int access, bool check,
		     struct fake_backing *backing)
{
	struct fake_vma *v;
	ssize_t n = fake_read_maps(&v);
	uintptr_t cur = start;
	size_t ps = fake_page_size();
	int err = 0;

	if (n < 0)
		return errno;
	for (ssize_t i = 0; i < n && cur < end && !err; i++) {
		if (v[i].end <= cur)
			continue;
		if (v[i].start > cur) {
			err = EFAULT;		/* hole */
			if (check && getenv("FAKE_VERBS_DEBUG"))
				fprintf(stderr, "fake_verbs: refuse [%#lx,%#lx): hole at %#lx\n",
					(unsigned long)start, (unsigned long)end, (unsigned long)cur);
			break;
		}
		if (check) {
			err = check_vma(&v[i], access);
			if (err && getenv("FAKE_VERBS_DEBUG"))
				fprintf(stderr, "fake_verbs: refuse [%#lx,%#lx) access %#x: %s on VMA %#lx-%#lx %c%c%c dev %#lx ino %lu %s\n",
					(unsigned long)start, (unsigned long)end, access, strerror(err),
					(unsigned long)v[i].start, (unsigned long)v[i].end,
					v[i].r ? 'r' : '-', v[i].w ? 'w' : '-', v[i].shared ? 's' : 'p',
					(unsigned long)v[i].dev, (unsigned long)v[i].ino, v[i].path);
		}
		for (; !err && cur < v[i].end && cur < end; cur += ps)
			if (backing)
				vma_backing(&v[i], cur, &backing[(cur - start) / ps]);
	}
	if (!err && cur < end)
		err = EFAULT;
	free(v);
	return err;
}

/* The kernel decides under mmap_lock; we read /proc/self/maps in pieces
 * and stat files afterwards, so a concurrent mmap in another thread can
 * fake a hole or a vanished file: decide only on a result seen twice in a
 * row (an unstable answer is retried, then reported). */
static int walk(uintptr_t start, uintptr_t end, unsigned int access, bool check,
		struct fake_backing *backing)
{
	int err = EAGAIN, prev = -1;

	for (int i = 0; i < 20; i++) {
		err = walk_once(start, end, access, check, backing);
		if (err == 0 || (err != EAGAIN && err == prev))
			return err;
		prev = err;
		sched_yield();
	}
	if (err == EAGAIN) {
		fprintf(stderr, "fake_verbs: cannot identify the files mapped in [%#lx,%#lx)\n",
			(unsigned long)start, (unsigned long)end);
		err = EFAULT;
	}
	return err;
}

int fake_kernel_check(void *addr, size_t length, unsigned int access,
		      struct fake_backing *backing)
{
	size_t ps = fake_page_size();
	uintptr_t start = (uintptr_t)addr & ~(ps - 1);
	uintptr_t end = ((uintptr_t)addr + length + ps - 1) & ~(ps - 1);

	if (end <= start)
		return EINVAL;			/* zero length or wraps */
	return walk(start, end, access, true, backing);
}

int fake_backing_now(uintptr_t page, size_t n, struct fake_backing *backing)
{
	return walk(page, page + n * fake_page_size(), 0, false, backing);
}
