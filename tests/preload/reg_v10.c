/* SPDX-License-Identifier: MIT */
/* A binary bound to the IBVERBS_1.0 ABI (as built against libibverbs
 * before 1.1): its references are ibv_reg_mr@IBVERBS_1.0 and
 * ibv_dereg_mr@IBVERBS_1.0, taking libibverbs' 1.0 structs.
 *
 *   reg_v10 efault   the 1.0 registration must fail with EFAULT (no safe_mr)
 *   reg_v10 ok       under LD_PRELOAD both must reach the interposer and the
 *                    NIC's writes the file
 *   reg_v10 ro-efault / ro-ok
 *                    a read-only registration of a PROT_READ shared file
 *                    mapping, on a kernel that refuses to pin it (6.1:
 *                    FOLL_FORCE): EFAULT without safe_mr, shadowed and
 *                    registered with it (the protocol's read-only retry) */
#include <dlfcn.h>
#include <infiniband/verbs.h>

#include "fake10/compat_1_0.h"
#include "util.h"

struct ibv_mr_1_0 *ibv_reg_mr_v10(struct ibv_pd_1_0 *pd, void *addr, size_t length,
				  int access);
int ibv_dereg_mr_v10(struct ibv_mr_1_0 *mr);
__asm__(".symver ibv_reg_mr_v10, ibv_reg_mr@IBVERBS_1.0");
__asm__(".symver ibv_dereg_mr_v10, ibv_dereg_mr@IBVERBS_1.0");

typedef int (*nic_write_fn)(struct ibv_mr *, size_t, const void *, size_t);

static void bound_to_preload(const char *name, void *fn)
{
	Dl_info info;

	if (!dladdr(fn, &info) || !info.dli_fname || !strstr(info.dli_fname, "safe_mr_preload"))
		die("%s is bound to %s, not the interposer", name,
		    info.dli_fname ? info.dli_fname : "?");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int ro = !strncmp(mode, "ro-", 3);
	int expect_ok = !strcmp(mode, ro ? "ro-ok" : "ok");
	size_t ps = page_size(), len = PAGES * ps;
	nic_write_fn nic_write = (nic_write_fn)dlsym(RTLD_DEFAULT, "fake_nic_write");
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_pd_1_0 pd10 = { 0 };
	struct ibv_context *ctx;
	struct ibv_mr_1_0 *mr;
	char path[4096];
	char *map;
	int fd, err;

	if (!nic_write || !list || !list[0])
		die("not running on the fake libibverbs");
	ctx = ibv_open_device(list[0]);
	ibv_free_device_list(list);
	if (!ctx || !(pd10.real_pd = ibv_alloc_pd(ctx)))
		die("open device / alloc pd: %s", strerror(errno));
	if (expect_ok) {
		bound_to_preload("ibv_reg_mr@IBVERBS_1.0", (void *)ibv_reg_mr_v10);
		bound_to_preload("ibv_dereg_mr@IBVERBS_1.0", (void *)ibv_dereg_mr_v10);
	}
	fd = make_file(path, sizeof(path));
	map = mmap(NULL, len, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	if (ro) {
		mr = ibv_reg_mr_v10(&pd10, map, len, IBV_ACCESS_REMOTE_READ);
		if (!expect_ok) {
			if (mr || errno != EFAULT)
				die("read-only 1.0 registration: %s, want EFAULT",
				    mr ? "succeeded" : strerror(errno));
			printf("ok: without safe_mr the read-only 1.0 registration fails with EFAULT\n");
			goto out;
		}
		if (!mr)
			die("read-only ibv_reg_mr@IBVERBS_1.0: %s", strerror(errno));
		expect_mapping(map, path, 0, "while registered read-only");
		if (ibv_dereg_mr_v10(mr))
			die("ibv_dereg_mr@IBVERBS_1.0 failed");
		expect_mapping(map, path, 1, "after the read-only ibv_dereg_mr@IBVERBS_1.0");
		printf("ok: read-only ibv_reg_mr@IBVERBS_1.0 of a PROT_READ mapping shadowed and registered\n");
		goto out;
	}

	mr = ibv_reg_mr_v10(&pd10, map, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!expect_ok) {
		if (mr)
			die("1.0 registration of a file mapping succeeded without safe_mr");
		if (errno != EFAULT)
			die("1.0 registration failed with %s, want EFAULT", strerror(errno));
		printf("ok: without safe_mr ibv_reg_mr@IBVERBS_1.0 fails with EFAULT\n");
		goto out;
	}
	if (!mr)
		die("ibv_reg_mr@IBVERBS_1.0: %s", strerror(errno));
	expect_mapping(map, path, 0, "while registered");
	err = nic_write(mr->real_mr, ps + 1, "NIC-v10-msync", 13);
	if (err)
		die("fake_nic_write: %s", strerror(err));
	if (msync(map, len, MS_SYNC))
		die("msync: %s", strerror(errno));
	expect_pread(fd, ps + 1, "NIC-v10-msync", "after msync");
	err = nic_write(mr->real_mr, 3 * ps + 2, "NIC-v10-dereg", 13);
	if (err)
		die("fake_nic_write: %s", strerror(err));
	if (ibv_dereg_mr_v10(mr))
		die("ibv_dereg_mr@IBVERBS_1.0 failed");
	expect_pread(fd, 3 * ps + 2, "NIC-v10-dereg", "after ibv_dereg_mr@IBVERBS_1.0");
	expect_direct(path, 3 * ps + 2, "NIC-v10-dereg", "after ibv_dereg_mr@IBVERBS_1.0");
	expect_mapping(map, path, 1, "after ibv_dereg_mr@IBVERBS_1.0");
	printf("ok: ibv_reg_mr/ibv_dereg_mr@IBVERBS_1.0 reached the interposer and the file\n");
out:
	munmap(map, len);
	close(fd);
	unlink(path);
	if (ibv_dealloc_pd(pd10.real_pd) || ibv_close_device(ctx))
		die("ibv_dealloc_pd/ibv_close_device failed");
	return 0;
}
