/* SPDX-License-Identifier: MIT */
/* Backing files of shadowed mappings, their classification, and the shadow
 * arena.  Called with the engine lock held. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "file.h"
#include "fsfacts.h"
#include "guard.h"

static struct sm_file *files;	/* all of them (fork child) */
static struct sm_hmap by_id;	/* and by (dev, ino) */

static inline uint64_t id_key(dev_t dev, ino_t ino)
{
	return sm_mix64((uint64_t)dev) ^ (uint64_t)ino;
}

static inline struct sm_file *file_of(struct sm_hnode *x)
{
	return x ? (struct sm_file *)((char *)x - offsetof(struct sm_file, hnode)) : NULL;
}

struct sm_file *sm_file_lookup(dev_t dev, ino_t ino)
{
	for (struct sm_hnode *x = sm_hmap_first(&by_id, id_key(dev, ino)); x; x = sm_hmap_next(x)) {
		struct sm_file *f = file_of(x);

		if (f->dev == dev && f->ino == ino)
			return f;
	}
	return NULL;
}

int sm_file_known_reentered(dev_t dev, ino_t ino)
{
	int busy;
	struct sm_hnode *x = sm_hmap_first_reentered(&by_id, id_key(dev, ino), &busy);

	if (busy)
		return -1;
	for (; x; x = sm_hmap_next(x))
		if (file_of(x)->dev == dev && file_of(x)->ino == ino)
			return 1;
	return 0;
}

void sm_file_put(struct sm_file *f)
{
	if (--f->refs)
		return;
	sm_guard_file_gone(f);
	sm_hmap_remove(&by_id, &f->hnode);
	if (f->prev)
		f->prev->next = f->next;
	else
		files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	close(f->fd);
	free(f);
}

void sm_file_renew(struct sm_file *f)
{
	char path[64];
	struct stat st;
	int fl = fcntl(f->fd, F_GETFL), nfd;

	if (fl < 0)
		return;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", f->fd);
	nfd = open(path, (fl & (O_ACCMODE | O_DIRECT | O_SYNC | O_DSYNC)) | O_CLOEXEC);
	if (nfd < 0)
		return;
	if (fstat(nfd, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino)
		dup3(nfd, f->fd, O_CLOEXEC);
	close(nfd);
}

/* Is fd the file the VMA maps?  Same inode number and device.  stat and
 * /proc/self/maps may name the device differently (btrfs subvolumes report
 * their own anonymous device in stat): then a page of fd is mapped and the
 * kernel's own description of that mapping is compared with the VMA's. */
static bool proven_same(int fd, const struct stat *st, const struct sm_vma *v)
{
	struct sm_vma *m;
	size_t n;
	bool same = false;
	void *p;

	if (st->st_ino != v->inode)
		return false;
	if (st->st_dev == makedev(v->dev_major, v->dev_minor))
		return true;
	p = sm_sys_mmap(NULL, sm_page_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return false;
	if (sm_vma_list((uintptr_t)p, (uintptr_t)p + sm_page_size, &m, &n) == 0) {
		same = n == 1 && m[0].inode == v->inode && m[0].dev_major == v->dev_major &&
		       m[0].dev_minor == v->dev_minor;
		sm_vma_free(m, n);
	}
	sm_sys_munmap(p, sm_page_size);
	return same;
}

/* Open the file behind a mapping.  /proc/self/maps gives a path; it must
 * still name the same file (another filesystem mounted over the directory,
 * a chroot or a rename may put another file there).  For unlinked or hidden
 * files, /proc/self/map_files works where we may read it (CAP_SYS_ADMIN or
 * CAP_CHECKPOINT_RESTORE).  EACCES: could not open; ESTALE: the path names
 * another file and the mapping's own could not be reached. */
static int open_backing(const struct sm_vma *v, bool write, int *out)
{
	int flags = (write ? O_RDWR : O_RDONLY) | O_CLOEXEC;
	char alt[64];
	const char *cands[2];
	int ncand = 0, err = EACCES;

	if (v->path && !strstr(v->path, " (deleted)"))
		cands[ncand++] = v->path;
	snprintf(alt, sizeof(alt), "/proc/self/map_files/%lx-%lx",
		 (unsigned long)v->start, (unsigned long)v->end);
	cands[ncand++] = alt;
	for (int i = 0; i < ncand; i++) {
		struct stat st;
		int fd = open(cands[i], flags);

		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
			if (proven_same(fd, &st, v)) {
				*out = fd;
				return 0;
			}
			sm_warn("%s is not the file mapped at %#lx (device or inode differ)",
				cands[i], (unsigned long)v->start);
			err = ESTALE;
		}
		close(fd);
	}
	return err;
}

/* sm_file_classify for a file the engine does not hold open yet. */
static int classify_new(const struct sm_vma *v, bool write, enum sm_backing *kind,
			struct sm_file **file)
{
	struct statfs sfs;
	struct stat st;
	struct sm_file *f;
	int fd, err;

	/* Names the kernel gives shmem and SysV segments: tmpfs, never shadowed. */
	if (v->path && (!strncmp(v->path, "/memfd:", 7) || !strncmp(v->path, "/dev/zero", 9) ||
			!strncmp(v->path, "/SYSV", 5) || !strncmp(v->path, "/dev/shm/", 9)))
		return 0;
	err = open_backing(v, write, &fd);
	if (err) {
		/* Cannot tell what it is: a device or special file we may not
		 * open is left to the kernel; a regular file we cannot reopen
		 * is an error (we could not write it back). */
		if (v->path && !strncmp(v->path, "/dev/", 5))
			return 0;
		sm_error("cannot reopen %s (inode %llu) to shadow it: %s", v->path ? v->path : "?",
			 (unsigned long long)v->inode, strerror(err));
		return err;
	}
	if (fstatfs(fd, &sfs) || fstat(fd, &st)) {
		err = errno;
		close(fd);
		return err;
	}
	if (sm_fs_without_writeback((long)sfs.f_type)) {
		close(fd);
		return 0;
	}
	f = sm_file_lookup(st.st_dev, st.st_ino);
	if (f) {
		if (write && !f->writable) {
			/* Upgrade: keep the new, writable descriptor. */
			close(f->fd);
			f->fd = fd;
			f->writable = true;
		} else {
			close(fd);
		}
	} else {
		f = calloc(1, sizeof(*f));
		if (!f) {
			close(fd);
			return ENOMEM;
		}
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->fd = fd;
		f->writable = write;
		f->dax = sm_fd_is_dax(fd);
		f->fs_magic = (long)sfs.f_type;
		f->eof_seen = st.st_size;
		f->next = files;
		if (files)
			files->prev = f;
		files = f;
		sm_hmap_insert(&by_id, &f->hnode, id_key(f->dev, f->ino));
	}
	f->refs++;
	*kind = SM_BACK_FILE;
	*file = f;
	return 0;
}

int sm_file_classify(const struct sm_vma *v, bool write, enum sm_backing *kind,
		     struct sm_file **file)
{
	struct sm_vma w;
	struct sm_file *f;
	int err;

	*kind = SM_BACK_NONE;
	*file = NULL;
	if (!v->has_file || !v->shared)
		return 0;
	if (sm_arena_is(v)) {
		*kind = SM_BACK_ARENA;
		return 0;
	}
	/* A file we hold open already, on the VMA's own device and inode: what
	 * open_backing would prove (our descriptor pins the inode, so its
	 * number is not reused), without its name, reopening, stat and
	 * statfs: most of a registration's fixed cost.  (Only files with
	 * writeback are held: never shmem.) */
	f = sm_file_lookup(makedev(v->dev_major, v->dev_minor), v->inode);
	if (f && (f->writable || !write)) {
		f->refs++;
		*kind = SM_BACK_FILE;
		*file = f;
		return 0;
	}
	if (!v->path_pending)
		return classify_new(v, write, kind, file);
	w = *v;
	if (sm_vma_path(&w) == ENOMEM)
		return ENOMEM;
	err = classify_new(&w, write, kind, file);
	free(w.path);
	return err;
}

void sm_file_reset(void)
{
	/* The parent's files: close our copies of the descriptors. */
	while (files) {
		struct sm_file *f = files;

		files = f->next;
		close(f->fd);
		free(f);
	}
	sm_hmap_reset(&by_id);
}

/* ---- arena ---- */


static int arena = -1;
static dev_t arena_dev;
static ino_t arena_ino;
static off_t arena_end;		/* bump pointer */
static off_t arena_size;	/* ftruncate'd size */
/* The engine's own view of the arena: one mapping of all of it, in a
 * window of address space reserved once, so that a chunk costs no mapping
 * (and no VMA) of its own.  [0, view_mapped) of the arena is mapped. */
static uint8_t *view;
static size_t view_size;
static off_t view_mapped;
#define VIEW_MAX ((size_t)64 << 30)

static int arena_open(void)
{
	struct stat st;

	if (arena >= 0)
		return 0;
	arena = memfd_create("safe_mr-shadow", MFD_CLOEXEC);
	if (arena < 0)
		return errno;
	if (fstat(arena, &st)) {
		int err = errno;

		close(arena);
		arena = -1;
		return err;
	}
	arena_dev = st.st_dev;
	arena_ino = st.st_ino;
	/* Address space only (no memory, no commit charge); where even that
	 * is refused (RLIMIT_AS), every chunk maps its own view. */
	for (size_t sz = VIEW_MAX; sz >= ((size_t)1 << 30) && !view; sz /= 4) {
		void *p = sm_sys_mmap(NULL, sz, PROT_NONE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p != MAP_FAILED) {
			view = p;
			view_size = sz;
		}
	}
	return 0;
}

/* Map [view_mapped, size) of the arena into the window. */
static void view_grow(off_t size)
{
	void *p;

	if (!view || size <= view_mapped || (size_t)size > view_size)
		return;
	p = sm_sys_mmap(view + view_mapped, (size_t)(size - view_mapped), PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_FIXED, arena, view_mapped);
	if (p != MAP_FAILED)
		view_mapped = size;
}

uint8_t *sm_arena_view(off_t off, size_t len)
{
	return off + (off_t)len <= view_mapped ? view + off : NULL;
}

int sm_arena_fd(void)
{
	return arena;
}

bool sm_arena_is(const struct sm_vma *v)
{
	return arena >= 0 && v->inode == arena_ino &&
	       makedev(v->dev_major, v->dev_minor) == arena_dev;
}

int sm_arena_alloc(size_t len, off_t *off)
{
	int err = arena_open();

	if (err)
		return err;
	if (sm_afree_take(len, off))
		return 0;
	if (arena_end + (off_t)len > arena_size) {
		off_t want = arena_end + (off_t)len, lim = sm_fsize_limit();

		want = want < arena_size * 2 ? arena_size * 2 : want;
		if (want > lim && arena_end + (off_t)len <= lim)
			want = lim;	/* doubling would pass RLIMIT_FSIZE */
		err = sm_ftruncate_own(arena, want);
		if (err)
			return err;
		arena_size = want;
		view_grow(want);
	}
	*off = arena_end;
	arena_end += (off_t)len;
	return 0;
}

void sm_arena_discard(off_t off, size_t len)
{
	if (len && fallocate(arena, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)len))
		sm_debug("punching the shadow arena: %s", strerror(errno));
}

void sm_arena_free(off_t off, size_t len)
{
	sm_arena_discard(off, len);
	sm_afree_put(off, len, &arena_end);
}

void sm_arena_reset(void)
{
	/* A forked child must not allocate in (or punch!) the parent's arena. */
	if (arena >= 0)
		close(arena);
	arena = -1;
	arena_end = arena_size = 0;
	if (view)
		sm_sys_munmap(view, view_size);
	view = NULL;
	view_size = 0;
	view_mapped = 0;
	sm_afree_reset();
}
