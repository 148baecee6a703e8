/* SPDX-License-Identifier: MIT */
/* libfabric's memory monitor "memhooks" must see an application munmap,
 * with or without safe_mr's preload library in front of libc.
 *
 * memhooks rewrites the entry of libc's munmap (and mmap, mremap, ...)
 * into a jump to its own handler, which invalidates the registration
 * cache of the verbs provider.  A munmap it misses leaves a stale cache
 * entry: the next fi_mr_reg of the same address hands back the MR of the
 * pages that were unmapped, and the NIC writes where nobody reads.
 *
 *   fi_memhooks NODE     (FI_PROVIDER=verbs, FI_MR_CACHE_MONITOR=memhooks;
 *                         NODE: a local address of an RDMA device)
 *
 * 1. fi_mr_reg twice on one buffer: the same fid comes back (the cache is
 *    on: the premise, else the test proves nothing).  The first stays open.
 * 2. munmap(buffer): the call under test, through the libc symbol.
 * 3. New pages at the same address by the raw mmap system call (memhooks
 *    watches MAP_FIXED mmaps too; this one it must not see).
 * 4. fi_mr_reg again: a new MR (memhooks saw the munmap and took the entry
 *    out of the cache) passes; the old fid again (stale) fails. */
#include <dlfcn.h>
#include <sys/syscall.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>

#include "util.h"

#define CHECK_FI(call) do { \
	int ret_ = (call); \
	if (ret_) \
		die("%s: %d (%s)", #call, ret_, fi_strerror(-ret_)); \
} while (0)

static struct fid_mr *reg(struct fid_domain *domain, void *buf, size_t len)
{
	struct fid_mr *mr;

	CHECK_FI(fi_mr_reg(domain, buf, len, FI_REMOTE_WRITE | FI_REMOTE_READ | FI_WRITE | FI_READ,
			   0, 0, 0, &mr, NULL));
	return mr;
}

int main(int argc, char **argv)
{
	size_t len = 16 * page_size();
	struct fi_info *hints = fi_allocinfo(), *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_mr *a, *b, *c;
	const char *monitor = getenv("FI_MR_CACHE_MONITOR");
	Dl_info where;
	void *buf, *again;

	if (argc < 2)
		die("usage: fi_memhooks NODE");
	if (!monitor || strcmp(monitor, "memhooks"))
		die("set FI_MR_CACHE_MONITOR=memhooks");
	if (!hints)
		die("fi_allocinfo");
	hints->fabric_attr->prov_name = strdup("verbs");
	hints->ep_attr->type = FI_EP_MSG;
	hints->caps = FI_MSG | FI_RMA;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
				      FI_MR_PROV_KEY;
	CHECK_FI(fi_getinfo(FI_VERSION(1, 17), argv[1], NULL, FI_SOURCE, hints, &info));
	CHECK_FI(fi_fabric(info->fabric_attr, &fabric, NULL));
	CHECK_FI(fi_domain(fabric, info, &domain, NULL));
	if (dladdr(dlsym(RTLD_DEFAULT, "munmap"), &where) && where.dli_fname)
		printf("munmap comes from %s; domain %s\n", where.dli_fname,
		       info->domain_attr->name);

	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	memset(buf, 1, len);
	a = reg(domain, buf, len);
	b = reg(domain, buf, len);
	if (a != b)
		die("premise: the second fi_mr_reg of the same buffer is a new MR: no MR cache");
	CHECK_FI(fi_close(&b->fid));

	if (munmap(buf, len))
		die("munmap: %s", strerror(errno));
	again = (void *)syscall(SYS_mmap, buf, len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (again != buf)
		die("raw mmap at %p: %s", buf, strerror(errno));
	memset(buf, 2, len);
	c = reg(domain, buf, len);
	printf("fi_mr_reg after munmap: %s MR (key %#llx, before %#llx)\n",
	       c == a ? "the cached (stale)" : "a new",
	       (unsigned long long)fi_mr_key(c), (unsigned long long)fi_mr_key(a));
	if (c == a)
		die("libfabric's memhooks did not see the application's munmap");
	CHECK_FI(fi_close(&c->fid));
	CHECK_FI(fi_close(&a->fid));
	CHECK_FI(fi_close(&domain->fid));
	CHECK_FI(fi_close(&fabric->fid));
	fi_freeinfo(info);
	fi_freeinfo(hints);
	syscall(SYS_munmap, buf, len);
	printf("ok: memhooks saw the munmap\n");
	return 0;
}
