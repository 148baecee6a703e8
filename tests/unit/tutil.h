/* SPDX-License-Identifier: MIT */
/* Helpers shared by the engine unit tests: a fake device and PD, files in a
 * fresh directory on a writeback filesystem, and views of /proc/self/maps. */
#ifndef TUTIL_H
#define TUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <infiniband/verbs.h>
#include "safe_mr.h"
#include "fake_nic.h"

#define RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)
#define RO (IBV_ACCESS_REMOTE_READ)

extern size_t ps;
extern struct ibv_context *tu_ctx;
extern struct ibv_pd *tu_pd;
extern char tu_dir[512];

/* Checked fixture: device, PD, and a fresh directory (TEST_TMPDIR or /tmp),
 * failing loudly if it is on tmpfs (never shadowed: the tests would prove
 * nothing). */
void tu_setup(void);
void tu_teardown(void);

/* A file of `len` bytes in tu_dir whose byte i is tu_byte(seed, i); path in
 * *path (may be NULL). Returns an O_RDWR descriptor. */
int tu_file(size_t len, unsigned int seed, char *path, size_t pathlen);
static inline uint8_t tu_byte(unsigned int seed, size_t i)
{
	return (uint8_t)(seed * 31u + i * 7u + i / 4096u);
}
/* Same, in another directory (e.g. /dev/shm). */
int tu_file_in(const char *dir, size_t len, unsigned int seed, char *path, size_t pathlen);
void *tu_map(int fd, size_t len, int prot, int flags, off_t off);
void *tu_map_at(void *addr, int fd, size_t len, int prot, int flags, off_t off);

/* Check that the file's bytes [off, off+len) are the given bytes / the
 * original pattern, reading through a fresh descriptor. */
void tu_assert_file(const char *path, off_t off, const void *want, size_t len);
void tu_assert_file_pattern(const char *path, off_t off, size_t len, unsigned int seed);
void tu_assert_mem_pattern(const void *p, off_t file_off, size_t len, unsigned int seed);
off_t tu_file_size(const char *path);

/* /proc/self/maps of the VMA holding addr: path ("" if anonymous), perms
 * ("rw-s"); false if nothing is mapped there. */
bool tu_maps_at(const void *addr, char *path, size_t pathlen, char perms[5]);
/* The page at addr is the engine's shadow memory (memfd:safe_mr...). */
bool tu_shadowed(const void *addr);
/* The page at addr is mapped from the file at `path` (by name). */
bool tu_mapped_from(const void *addr, const char *path);
/* Assert each page of [addr, addr+npages*ps) is shadowed (mask bit i set)
 * or not (bit clear). */
void tu_assert_shadow_mask(const void *addr, size_t npages, uint64_t mask);

struct safe_mr_stats tu_stats(void);

/* A test case with tu_setup/tu_teardown as checked fixture and a timeout. */
TCase *tu_tcase(const char *name);
/* Run the suite (fork mode unless CK_FORK=no): exit status for main. */
int tu_run(Suite *s);
/* For tests that need root and tools (loop devices, mkfs): 0 if the shell
 * command `probe` succeeds as root, else the exit code to return after
 * saying why: 77 (meson: SKIP) for a developer's run, 1 under CI, which
 * must not skip. */
int tu_require_root(const char *what, const char *probe);

#endif
