/* SPDX-License-Identifier: MIT */
/* ibv_reg_mr@IBVERBS_1.0 and ibv_dereg_mr@IBVERBS_1.0: the pre-1.1 ABI,
 * whose ibv_pd/ibv_mr are libibverbs' private 1.0 structs (rdma-core
 * libibverbs/compat-1_0.c).  We never look inside them: the real 1.0 call
 * does the work, wrapped in a range hold that shadows the pages first. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <safe_mr.h>

#include "preload.h"

#define SM_PL_API __attribute__((visibility("default")))
#define SYMVER(impl, ver) __asm__(".symver " #impl ", " ver)

struct ibv_pd_1_0;
struct ibv_mr_1_0;

typedef struct ibv_mr_1_0 *(*reg_mr_1_0_fn)(struct ibv_pd_1_0 *, void *, size_t, int);
typedef int (*dereg_mr_1_0_fn)(struct ibv_mr_1_0 *);

/* The hold of each live 1.0 MR.  The 1.0 ABI is rare: a list will do. */
struct hold {
	struct hold *next;
	const struct ibv_mr_1_0 *mr;
	struct safe_mr_range *range;
};
static struct hold *holds;
static pthread_mutex_t holds_lock = PTHREAD_MUTEX_INITIALIZER;

static void *real_1_0(const char *name)
{
	void *h = sm_pl_ibverbs_handle();
	void *fn = h ? dlvsym(h, name, "IBVERBS_1.0") : NULL;

	if (!fn)
		errno = ENOSYS;
	return fn;
}

static void link_hold(struct hold *h)
{
	pthread_mutex_lock(&holds_lock);
	h->next = holds;
	holds = h;
	pthread_mutex_unlock(&holds_lock);
}

static struct hold *unlink_hold(const struct ibv_mr_1_0 *mr)
{
	struct hold *h = NULL;

	pthread_mutex_lock(&holds_lock);
	for (struct hold **p = &holds; *p; p = &(*p)->next) {
		if ((*p)->mr == mr) {
			h = *p;
			*p = h->next;
			break;
		}
	}
	pthread_mutex_unlock(&holds_lock);
	return h;
}

SM_PL_API struct ibv_mr_1_0 *sm_pl_reg_mr_1_0(struct ibv_pd_1_0 *pd, void *addr,
					      size_t length, int access)
{
	reg_mr_1_0_fn real = (reg_mr_1_0_fn)real_1_0("ibv_reg_mr");
	struct safe_mr_range *range;
	struct ibv_mr_1_0 *mr;
	struct hold *h;
	int err;

	if (!real)
		return NULL;
	h = malloc(sizeof(*h));
	if (!h)
		return NULL;
	err = safe_mr_range_acquire(addr, length, (unsigned int)access, NULL, &range);
	if (err) {
		free(h);
		errno = err;
		return NULL;
	}
	mr = real(pd, addr, length, access);
	if (!mr) {
		err = errno;
		/* Nothing was registered, so nothing changed: a no-op writeback. */
		safe_mr_range_release(range);
		free(h);
		errno = err;
		return NULL;
	}
	h->mr = mr;
	h->range = range;
	link_hold(h);
	return mr;
}
SYMVER(sm_pl_reg_mr_1_0, "ibv_reg_mr@IBVERBS_1.0");

SM_PL_API int sm_pl_dereg_mr_1_0(struct ibv_mr_1_0 *mr)
{
	dereg_mr_1_0_fn real = (dereg_mr_1_0_fn)real_1_0("ibv_dereg_mr");
	struct hold *h;
	int err;

	if (!real)
		return ENOSYS;
	h = unlink_hold(mr);
	if (!h)
		return real(mr);
	/* Like safe_mr_dereg_mr: if the data cannot reach the file, keep the
	 * MR registered and report the error. */
	err = safe_mr_range_sync(h->range, 0, 0, SAFE_MR_SYNC_DURABLE);
	if (!err)
		err = real(mr);
	if (err) {
		link_hold(h);
		return err;
	}
	/* The NIC is gone now: write back what it wrote since the sync. */
	err = safe_mr_range_release(h->range);
	free(h);
	return err;
}
SYMVER(sm_pl_dereg_mr_1_0, "ibv_dereg_mr@IBVERBS_1.0");
