/* SPDX-License-Identifier: MIT */
/* A registration's release under UCX's memory hooks (ucm) gives the
 * application its file mapping back at its own address, and touches no
 * other memory.  UCX 1.13's mremap hook takes four arguments: a call
 * through it with MREMAP_FIXED moves the mapping to whatever address a
 * stray register holds, over another object's memory.  MPICH installs
 * these hooks; the file mapping safe_mr moved back there received the MPI
 * library's own writes, which reached the file (tests/vm: "page 0" of
 * every window after MPI_Finalize).
 *
 *   ucm_restore bistro|reloc    (under LD_PRELOAD, on the fake libibverbs)
 *   ucm_restore drop5           (the same, with drop5_lib.c preloaded after
 *                                safe_mr instead of UCX's hooks: the stray
 *                                address is one of the ballast mappings)
 *
 * Each round maps a file MAP_SHARED between two anonymous guard regions
 * and next to ballast mappings, registers it, lets the NIC write, releases
 * it, and requires: the file mapping at the same address (maps), the NIC's
 * bytes and a later CPU store in the file, every other mapping intact; and
 * ucm's handler told that the range was unmapped (UCX's registration cache
 * must drop what it pinned there); drop5: the hook called at each release,
 * never with MREMAP_FIXED. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <ucm/api/ucm.h>

#include "verbs_util.h"

#define ROUNDS 24
#define BALLAST 8

typedef int (*nic_write_fn)(struct ibv_mr *, size_t, const void *, size_t);

/* drop5_lib.c's stray address (exported: export_dynamic), and its counts
 * of calls and of calls with MREMAP_FIXED. */
__attribute__((visibility("default"))) void *stray_target;
static atomic_int *drop5_calls, *drop5_fixed;
static void *window;
static size_t window_len;
static atomic_int window_unmapped;

static void on_unmap(ucm_event_type_t type, ucm_event_t *ev, void *arg)
{
	uintptr_t a = (uintptr_t)ev->vm_unmapped.address, w = (uintptr_t)window;

	(void)arg;
	if (type == UCM_EVENT_VM_UNMAPPED && w && a < w + window_len &&
	    a + ev->vm_unmapped.size > w)
		atomic_fetch_add(&window_unmapped, 1);
}

/* The path of the mapping holding addr ("" if anonymous or unmapped). */
static void mapped_from(const void *addr, char *path, size_t len)
{
	uintptr_t start;

	if (maps_at(addr, &start, path, len))
		path[0] = 0;
}

static void fill(void *p, size_t len, int v)
{
	memset(p, v, len);
}

static void intact(const void *p, size_t len, int v, const char *what, int round)
{
	const unsigned char *b = p;
	char from[4200];

	mapped_from(p, from, sizeof(from));
	if (from[0] && from[0] != '[')
		die("round %d: %s at %p now maps %s", round, what, p, from);
	for (size_t i = 0; i < len; i++)
		if (b[i] != (unsigned char)v)
			die("round %d: %s at %p changed at byte %zu (%#x, want %#x)", round, what,
			    p, i, b[i], v);
}

int main(int argc, char **argv)
{
	size_t ps = page_size();
	nic_write_fn nic_write = (nic_write_fn)dlsym(RTLD_DEFAULT, "fake_nic_write");
	ucm_mmap_hook_mode_t want;
	struct ibv_pd *pd;
	bool drop5;
	int seen = 0;

	if (argc < 2)
		die("usage: ucm_restore bistro|reloc|drop5");
	drop5 = !strcmp(argv[1], "drop5");
	want = !strcmp(argv[1], "reloc") ? UCM_MMAP_HOOK_RELOC : UCM_MMAP_HOOK_BISTRO;
	if (!drop5 && ucm_global_opts.mmap_hook_mode != want)
		die("ucm hook mode is %d, want %s: is UCX_MEM_MMAP_HOOK_MODE set?",
		    (int)ucm_global_opts.mmap_hook_mode, argv[1]);
	if (!nic_write)
		die("fake_nic_write not found: not running on the fake libibverbs");
	if (!dlsym(RTLD_DEFAULT, "safe_mr_reg_mr"))
		die("safe_mr is not loaded: run under LD_PRELOAD");
	if (drop5) {
		drop5_calls = dlsym(RTLD_DEFAULT, "drop5_calls");
		drop5_fixed = dlsym(RTLD_DEFAULT, "drop5_fixed_calls");
		if (!drop5_calls || !drop5_fixed)
			die("drop5: preload drop5_lib after safe_mr");
	}
	if (!drop5 && ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, 0, on_unmap, NULL) != UCS_OK)
		die("ucm_set_event_handler refused: UCX's hooks are not installed");
	pd = open_pd();
	window_len = PAGES * ps;
	for (int r = 0; r < ROUNDS; r++) {
		char path[4096], from[4200], got[16];
		void *ballast[BALLAST];
		unsigned char *lo, *hi, *map;
		struct ibv_mr *mr;
		int fd, before;

		/* Memory that a stray MREMAP_FIXED would land on: recently
		 * mapped anonymous regions of the window's size, in the free
		 * space the next mapping comes from. */
		for (int b = 0; b < BALLAST; b++) {
			ballast[b] = mmap(NULL, window_len, PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (ballast[b] == MAP_FAILED)
				die("mmap: %s", strerror(errno));
			fill(ballast[b], window_len, 0x40 + b);
		}
		lo = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		fd = make_file(path, sizeof(path));
		map = mmap(NULL, window_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		hi = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (lo == MAP_FAILED || map == MAP_FAILED || hi == MAP_FAILED)
			die("mmap: %s", strerror(errno));
		stray_target = ballast[BALLAST - 1];
		fill(lo, ps, 0x11);
		fill(hi, ps, 0x22);
		window = map;
		mr = ibv_reg_mr(pd, map, window_len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
		if (!mr)
			die("round %d: ibv_reg_mr: %s", r, strerror(errno));
		if (nic_write(mr, 0, "nic-page0", 9) || nic_write(mr, 2 * ps + 7, "nic-page2", 9))
			die("round %d: fake_nic_write failed", r);
		before = drop5 ? atomic_load(drop5_calls) : atomic_load(&window_unmapped);
		if (ibv_dereg_mr(mr))
			die("round %d: ibv_dereg_mr: %s", r, strerror(errno));
		if ((drop5 ? atomic_load(drop5_calls) : atomic_load(&window_unmapped)) > before)
			seen++;
		if (drop5 && atomic_load(drop5_fixed)) {
			die("round %d: a four-argument mremap hook got MREMAP_FIXED (%d times)", r,
			    atomic_load(drop5_fixed));
		}
		mapped_from(map, from, sizeof(from));
		if (strcmp(from, path))
			die("round %d: after the release %p maps '%s', not the file %s", r, (void *)map,
			    from, path);
		memcpy(map + ps + 3, "cpu-after", 9);
		if (msync(map, window_len, MS_SYNC))
			die("msync: %s", strerror(errno));
		if (pread(fd, got, 9, 0) != 9 || memcmp(got, "nic-page0", 9) ||
		    pread(fd, got, 9, (off_t)(2 * ps + 7)) != 9 || memcmp(got, "nic-page2", 9))
			die("round %d: the NIC's bytes are not in the file", r);
		if (pread(fd, got, 9, (off_t)(ps + 3)) != 9 || memcmp(got, "cpu-after", 9))
			die("round %d: a store through the mapping after the release did not "
			    "reach the file", r);
		intact(lo, ps, 0x11, "the guard below", r);
		intact(hi, ps, 0x22, "the guard above", r);
		for (int b = 0; b < BALLAST; b++)
			intact(ballast[b], window_len, 0x40 + b, "a ballast mapping", r);
		window = NULL;
		stray_target = NULL;
		munmap(map, window_len);
		munmap(lo, ps);
		munmap(hi, ps);
		/* Leave every other ballast mapped: holes and neighbours vary. */
		for (int b = 0; b < BALLAST; b += 2)
			munmap(ballast[b], window_len);
		close(fd);
		unlink(path);
	}
	close_pd(pd);
	printf("%d rounds: the file mapping back in place, the NIC's bytes and later stores "
	       "in the file, other memory intact; the hooks heard of the release in %d (mode %s)\n",
	       ROUNDS, seen, argv[1]);
	if (seen != ROUNDS)
		die("%s did not hear of every release (%d of %d)",
		    drop5 ? "the four-argument hook" : "UCX's hooks", seen, ROUNDS);
	printf("ok\n");
	return 0;
}
