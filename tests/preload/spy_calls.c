/* SPDX-License-Identifier: MIT */
/* A tracer preloaded after safe_mr (spy_lib.c) must see each msync,
 * munmap, mremap, fsync and fdatasync the application makes, exactly once,
 * while safe_mr still does its work: the file mapping is registered, so
 * every call goes through the engine's shadow path, and the data the
 * (fake) NIC wrote must be in the file after each sync point.
 *
 *   spy_calls alone    the spy without safe_mr (it works: the premise)
 *   spy_calls shadow   LD_PRELOAD=safe_mr:spy, the mapping registered */
#include <dlfcn.h>

#include "verbs_util.h"

typedef int (*nic_write_fn)(struct ibv_mr *, size_t, const void *, size_t);
static nic_write_fn nic_write;
static void (*spy_watch)(void *addr, int fd);
static unsigned (*spy_count)(const char *name);

static void nic(struct ibv_mr *mr, size_t off, const char *s)
{
	int err;

	if (!mr)
		return;
	err = nic_write(mr, off, s, strlen(s));
	if (err)
		die("fake_nic_write at %zu: %s", off, strerror(err));
}

static void expect_file(struct ibv_mr *mr, int fd, off_t off, const char *s, const char *what)
{
	if (mr)
		expect_pread(fd, off, s, what);
}

/* The object that defines `sym` for the program. */
static const char *owner(const char *sym)
{
	void *fn = dlsym(RTLD_DEFAULT, sym);
	Dl_info info;

	if (!fn || !dladdr(fn, &info) || !info.dli_fname)
		die("dladdr(%s) failed", sym);
	return info.dli_fname;
}

int main(int argc, char **argv)
{
	static const char *const calls[] = { "msync", "munmap", "mremap", "fsync", "fdatasync" };
	size_t ps = page_size(), len = PAGES * ps;
	int shadow = argc > 1 && !strcmp(argv[1], "shadow");
	struct ibv_mr *mr = NULL;
	struct ibv_pd *pd = NULL;
	char path[4096], *map, *m2, *m3;
	int fd, bad = 0;

	spy_watch = (void (*)(void *, int))dlsym(RTLD_DEFAULT, "sm_spy_watch");
	spy_count = (unsigned (*)(const char *))dlsym(RTLD_DEFAULT, "sm_spy_count");
	if (!spy_watch || !spy_count)
		die("the spy library is not loaded");
	/* safe_mr first, the spy after it: else the spy sees the calls first
	 * and the test proves nothing. */
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		const char *o = owner(calls[i]);
		const char *want = shadow ? "libsafe_mr_preload" : "sm_pl_spy";

		if (!strstr(o, want))
			die("%s comes from %s, want %s", calls[i], o, want);
	}
	nic_write = (nic_write_fn)dlsym(RTLD_DEFAULT, "fake_nic_write");
	if (!nic_write)
		die("fake_nic_write not found: not running on the fake libibverbs");

	fd = make_file(path, sizeof(path));
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	m2 = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED || m2 == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	if (shadow) {
		/* Every call below then takes the engine's shadow path. */
		pd = open_pd();
		mr = ibv_reg_mr(pd, map, len,
				IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
		if (!mr)
			die("ibv_reg_mr: %s", strerror(errno));
		expect_mapping(map, path, 0, "while registered");
	}
	spy_watch(map, fd);
	spy_watch(m2, -1);

	nic(mr, ps + 100, "NIC-msync");
	if (msync(map, len, MS_SYNC))
		die("msync: %s", strerror(errno));
	expect_file(mr, fd, ps + 100, "NIC-msync", "after msync");

	nic(mr, 2 * ps + 7, "NIC-fsync");
	if (fsync(fd))
		die("fsync: %s", strerror(errno));
	expect_file(mr, fd, 2 * ps + 7, "NIC-fsync", "after fsync");

	nic(mr, 3 * ps, "NIC-fdatasync");
	if (fdatasync(fd))
		die("fdatasync: %s", strerror(errno));
	expect_file(mr, fd, 3 * ps, "NIC-fdatasync", "after fdatasync");

	m3 = mremap(m2, ps, 2 * ps, MREMAP_MAYMOVE);
	if (m3 == MAP_FAILED)
		die("mremap: %s", strerror(errno));
	if (m3[0] != 'a' || m3[ps] != 'b')
		die("mremap: the grown mapping does not show the file");

	nic(mr, 2 * ps + 50, "NIC-munmap");
	if (munmap(map, len))
		die("munmap: %s", strerror(errno));
	expect_file(mr, fd, 2 * ps + 50, "NIC-munmap", "after munmap");

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		unsigned n = spy_count(calls[i]);

		printf("%s: the spy saw %u of 1 call\n", calls[i], n);
		bad |= n != 1;
	}
	if (mr && ibv_dereg_mr(mr))
		die("ibv_dereg_mr after munmap failed");
	if (pd) {
		struct ibv_context *ctx = pd->context;

		if (ibv_dealloc_pd(pd) || ibv_close_device(ctx))
			die("ibv_dealloc_pd/ibv_close_device failed");
	}
	munmap(m3, 2 * ps);
	close(fd);
	unlink(path);
	if (bad)
		die("the spy did not see each call exactly once");
	printf("ok: the spy saw msync, munmap, mremap, fsync, fdatasync once each%s\n",
	       shadow ? ", and safe_mr wrote the NIC's data at each" : "");
	return 0;
}
