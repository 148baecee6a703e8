/* SPDX-License-Identifier: MIT */
/* An unmodified verbs program: maps a file MAP_SHARED, registers it
 * writable, lets the (fake) NIC write into it, and expects the data in the
 * file after each libc/verbs sync point: msync, fsync, fdatasync,
 * ibv_dereg_mr, munmap.
 *
 *   reg_file efault   registration must fail with EFAULT (no safe_mr: the
 *                     premise, a >= 6.5 kernel refuses the pin)
 *   reg_file ok       everything must work (run under LD_PRELOAD) */
#include <dlfcn.h>

#include "verbs_util.h"

typedef int (*nic_write_fn)(struct ibv_mr *, size_t, const void *, size_t);
static nic_write_fn nic_write;

static void nic(struct ibv_mr *mr, size_t off, const char *s)
{
	int err = nic_write(mr, off, s, strlen(s));

	if (err)
		die("fake_nic_write at %zu: %s", off, strerror(err));
	if (memcmp((char *)mr->addr + off, s, strlen(s)))
		die("the CPU does not see what the NIC wrote at %zu", off);
}

int main(int argc, char **argv)
{
	size_t ps = page_size(), len = PAGES * ps;
	int expect_ok = argc > 1 && !strcmp(argv[1], "ok");
	char path[4096];
	struct ibv_mr *mr;
	struct ibv_pd *pd;
	char *map;
	int fd;

	/* The NIC helper of the test double, looked up like any plugin would. */
	nic_write = (nic_write_fn)dlsym(RTLD_DEFAULT, "fake_nic_write");
	if (!nic_write)
		die("fake_nic_write not found: not running on the fake libibverbs");
	pd = open_pd();
	fd = make_file(path, sizeof(path));
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap: %s", strerror(errno));

	mr = ibv_reg_mr(pd, map, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!expect_ok) {
		if (mr)
			die("registration of a MAP_SHARED file mapping succeeded without safe_mr");
		if (errno != EFAULT)
			die("registration failed with %s, want EFAULT", strerror(errno));
		printf("ok: without safe_mr ibv_reg_mr fails with EFAULT\n");
		munmap(map, len);
		close(fd);
		unlink(path);
		close_pd(pd);
		return 0;
	}
	if (!mr)
		die("ibv_reg_mr: %s", strerror(errno));
	expect_mapping(map, path, 0, "while registered");

	nic(mr, ps + 100, "NIC-msync");
	if (msync(map, len, MS_SYNC))
		die("msync: %s", strerror(errno));
	expect_pread(fd, ps + 100, "NIC-msync", "after msync");
	expect_direct(path, ps + 100, "NIC-msync", "after msync");

	nic(mr, 2 * ps + 7, "NIC-fsync");
	if (fsync(fd))
		die("fsync: %s", strerror(errno));
	expect_pread(fd, 2 * ps + 7, "NIC-fsync", "after fsync");
	expect_direct(path, 2 * ps + 7, "NIC-fsync", "after fsync");

	nic(mr, 3 * ps, "NIC-fdatasync");
	if (fdatasync(fd))
		die("fdatasync: %s", strerror(errno));
	expect_pread(fd, 3 * ps, "NIC-fdatasync", "after fdatasync");

	nic(mr, 10, "NIC-dereg");
	if (ibv_dereg_mr(mr))
		die("ibv_dereg_mr failed");
	expect_pread(fd, 10, "NIC-dereg", "after ibv_dereg_mr");
	expect_direct(path, 10, "NIC-dereg", "after ibv_dereg_mr");
	expect_mapping(map, path, 1, "after ibv_dereg_mr");
	/* The restored mapping is the file: a CPU store reaches it. */
	memcpy(map + ps + 200, "CPU-store", 9);
	if (msync(map, len, MS_SYNC))
		die("msync after dereg: %s", strerror(errno));
	expect_pread(fd, ps + 200, "CPU-store", "CPU store after dereg");

	/* munmap of a registered range writes it back too. */
	mr = ibv_reg_mr(pd, map, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr)
		die("second ibv_reg_mr: %s", strerror(errno));
	nic(mr, 2 * ps + 50, "NIC-munmap");
	if (munmap(map, len))
		die("munmap: %s", strerror(errno));
	expect_pread(fd, 2 * ps + 50, "NIC-munmap", "after munmap");
	if (ibv_dereg_mr(mr))
		die("ibv_dereg_mr after munmap failed");

	close(fd);
	unlink(path);
	close_pd(pd);
	printf("ok: msync, fsync, fdatasync, ibv_dereg_mr and munmap wrote the NIC's data to the file\n");
	return 0;
}
