/* SPDX-License-Identifier: MIT */
/* The NCCL way: no link-time libibverbs; dlopen("libibverbs.so.1") and
 * every verb through that handle (dlsym, or dlvsym for a given version).
 *
 *   reg_dlopen efault|ok reg_mr|iova2
 * reg_mr: ibv_reg_mr@IBVERBS_1.1 by dlvsym; iova2: ibv_reg_mr_iova2@IBVERBS_1.8.
 * efault: registration must fail with EFAULT (no safe_mr); ok: the NIC's
 * writes must reach the file (run under LD_PRELOAD), twice, with a dlclose
 * and a fresh dlopen in between. */
#include <dlfcn.h>
#include <infiniband/verbs.h>

#include "util.h"

struct verbs {
	struct ibv_device **(*get_device_list)(int *);
	void (*free_device_list)(struct ibv_device **);
	struct ibv_context *(*open_device)(struct ibv_device *);
	int (*close_device)(struct ibv_context *);
	struct ibv_pd *(*alloc_pd)(struct ibv_context *);
	int (*dealloc_pd)(struct ibv_pd *);
	struct ibv_mr *(*reg_mr)(struct ibv_pd *, void *, size_t, int);
	struct ibv_mr *(*reg_mr_iova2)(struct ibv_pd *, void *, size_t, uint64_t, unsigned int);
	int (*dereg_mr)(struct ibv_mr *);
	int (*nic_write)(struct ibv_mr *, size_t, const void *, size_t);
};

static void *sym(void *h, const char *name, const char *version)
{
	void *p = version ? dlvsym(h, name, version) : dlsym(h, name);

	if (!p)
		die("%s%s%s: %s", name, version ? "@" : "", version ? version : "", dlerror());
	return p;
}

static void *load(struct verbs *v)
{
	void *h = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);

	if (!h)
		die("dlopen libibverbs.so.1: %s", dlerror());
	v->get_device_list = sym(h, "ibv_get_device_list", NULL);
	v->free_device_list = sym(h, "ibv_free_device_list", NULL);
	v->open_device = sym(h, "ibv_open_device", NULL);
	v->close_device = sym(h, "ibv_close_device", NULL);
	v->alloc_pd = sym(h, "ibv_alloc_pd", NULL);
	v->dealloc_pd = sym(h, "ibv_dealloc_pd", NULL);
	v->reg_mr = sym(h, "ibv_reg_mr", "IBVERBS_1.1");
	v->reg_mr_iova2 = sym(h, "ibv_reg_mr_iova2", "IBVERBS_1.8");
	v->dereg_mr = sym(h, "ibv_dereg_mr", NULL);
	v->nic_write = sym(h, "fake_nic_write", NULL);
	return h;
}

/* Where a function pointer lives: which object the handle gave us. */
static const char *object_of(void *fn)
{
	Dl_info info;

	return dladdr(fn, &info) && info.dli_fname ? info.dli_fname : "?";
}

static int round_trip(struct verbs *v, int iova2, int expect_ok, int round)
{
	size_t ps = page_size(), len = PAGES * ps;
	int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
	struct ibv_device **list = v->get_device_list(NULL);
	struct ibv_context *ctx;
	char path[4096], msg[32];
	struct ibv_mr *mr;
	struct ibv_pd *pd;
	char *map;
	int fd, err;

	if (!list || !list[0])
		die("no verbs device (is the fake libibverbs on LD_LIBRARY_PATH?)");
	ctx = v->open_device(list[0]);
	v->free_device_list(list);
	if (!ctx || !(pd = v->alloc_pd(ctx)))
		die("open device / alloc pd: %s", strerror(errno));
	fd = make_file(path, sizeof(path));
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap: %s", strerror(errno));

	mr = iova2 ? v->reg_mr_iova2(pd, map + 8, len - 8, (uintptr_t)map + 8, access)
		   : v->reg_mr(pd, map + 8, len - 8, access);
	if (!expect_ok) {
		if (mr)
			die("registration of a file mapping succeeded without safe_mr");
		if (errno != EFAULT)
			die("registration failed with %s, want EFAULT", strerror(errno));
		goto out;
	}
	if (!mr)
		die("%s: %s", iova2 ? "ibv_reg_mr_iova2" : "ibv_reg_mr", strerror(errno));

	snprintf(msg, sizeof(msg), "NIC-%d-msync", round);
	err = v->nic_write(mr, ps, msg, strlen(msg));
	if (err)
		die("fake_nic_write: %s", strerror(err));
	if (msync(map, len, MS_SYNC))
		die("msync: %s", strerror(errno));
	expect_pread(fd, ps + 8, msg, "after msync");
	expect_direct(path, ps + 8, msg, "after msync");

	snprintf(msg, sizeof(msg), "NIC-%d-dereg", round);
	err = v->nic_write(mr, 3 * ps, msg, strlen(msg));
	if (err)
		die("fake_nic_write: %s", strerror(err));
	if (v->dereg_mr(mr))
		die("ibv_dereg_mr failed");
	expect_pread(fd, 3 * ps + 8, msg, "after ibv_dereg_mr");
	expect_mapping(map, path, 1, "after ibv_dereg_mr");
out:
	munmap(map, len);
	close(fd);
	unlink(path);
	if (v->dealloc_pd(pd) || v->close_device(ctx))
		die("ibv_dealloc_pd/ibv_close_device failed");
	return 0;
}

int main(int argc, char **argv)
{
	int expect_ok = argc > 1 && !strcmp(argv[1], "ok");
	int iova2 = argc > 2 && !strcmp(argv[2], "iova2");
	struct verbs v;
	void *h;

	h = load(&v);
	if (expect_ok && !strstr(object_of((void *)v.reg_mr), "safe_mr_preload"))
		die("dlvsym(ibv_reg_mr@IBVERBS_1.1) came from %s, not the interposer",
		    object_of((void *)v.reg_mr));
	round_trip(&v, iova2, expect_ok, 1);
	if (!expect_ok) {
		printf("ok: without safe_mr the dlopen'ed %s fails with EFAULT\n",
		       iova2 ? "ibv_reg_mr_iova2" : "ibv_reg_mr");
		dlclose(h);
		return 0;
	}
	/* The handle we got must be safe to close, and a new one must work. */
	if (dlclose(h))
		die("dlclose: %s", dlerror());
	h = load(&v);
	round_trip(&v, iova2, expect_ok, 2);
	if (dlclose(h))
		die("dlclose: %s", dlerror());
	printf("ok: %s through a dlopen'ed libibverbs reached the file (reg from %s)\n",
	       iova2 ? "ibv_reg_mr_iova2@IBVERBS_1.8" : "ibv_reg_mr@IBVERBS_1.1",
	       object_of((void *)v.reg_mr));
	return 0;
}
