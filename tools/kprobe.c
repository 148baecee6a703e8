/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <infiniband/verbs.h>

#include "fsfacts.h"
#include "kprobe.h"

const char *smt_kernel_probe(const char *dir, char *device, size_t n)
{
	struct ibv_device **list;
	struct ibv_context *ctx = NULL;
	struct ibv_pd *pd = NULL;
	struct ibv_mr *mr;
	const char *result = NULL;
	char path[4096];
	struct statfs sfs;
	long page = sysconf(_SC_PAGESIZE);
	void *p = MAP_FAILED;
	int num = 0, fd = -1;

	snprintf(device, n, "no RDMA device");
	list = ibv_get_device_list(&num);
	if (!list || num == 0)
		goto out;
	snprintf(device, n, "%s", ibv_get_device_name(list[0]));
	if (statfs(dir, &sfs) || sm_fs_without_writeback((long)sfs.f_type)) {
		snprintf(device, n, "%s has no writeback filesystem", dir);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/.safe_mr-info.XXXXXX", dir);
	if ((fd = mkstemp(path)) < 0) {
		snprintf(device, n, "no scratch file in %s: %s", dir, strerror(errno));
		goto out;
	}
	unlink(path);
	if (ftruncate(fd, page) ||
	    (p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
		    MAP_FAILED ||
	    !(ctx = ibv_open_device(list[0])) || !(pd = ibv_alloc_pd(ctx))) {
		snprintf(device + strlen(device), n - strlen(device), ": %s", strerror(errno));
		goto out;
	}
	errno = 0;
	mr = ibv_reg_mr(pd, p, (size_t)page, IBV_ACCESS_LOCAL_WRITE);
	if (mr) {
		ibv_dereg_mr(mr);
		result = "silent-loss";
	} else if (errno == EFAULT) {
		result = "efault";
	} else {
		snprintf(device + strlen(device), n - strlen(device), ": registration: %s",
			 strerror(errno));
	}
out:
	if (pd)
		ibv_dealloc_pd(pd);
	if (ctx)
		ibv_close_device(ctx);
	if (p != MAP_FAILED)
		munmap(p, (size_t)page);
	if (fd >= 0)
		close(fd);
	if (list)
		ibv_free_device_list(list);
	return result;
}
