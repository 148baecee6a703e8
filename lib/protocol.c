/* SPDX-License-Identifier: MIT */
/* The register/deregister protocol, once for every door: the verbs calls
 * (reg.c), the preload's IBVERBS_1.0 calls and the libfabric hook are thin
 * callers of safe_mr_register/safe_mr_deregister. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "shadow.h"

/* Holds of one registration: one per iovec that needed a shadow. */
struct holds {
	struct sm_hold **h;
	struct sm_hold *small[4];
	size_t n;
};

static void holds_abort(struct holds *hs)
{
	for (size_t i = 0; i < hs->n; i++)
		sm_hold_abort(hs->h[i]);
	hs->n = 0;
}

static int holds_acquire(struct holds *hs, const struct iovec *iov, size_t iovcnt,
			 unsigned int access, bool force)
{
	/* The engine's own flags are no access bits of the caller's. */
	access &= ~(SM_ACQUIRE_DROP_EMPTY | SM_ACQUIRE_NOTHING);
	for (size_t i = 0; i < iovcnt; i++) {
		int err;

		if (!iov[i].iov_len)
			continue;
		err = sm_hold_acquire(iov[i].iov_base, iov[i].iov_len,
				      access | SM_ACQUIRE_DROP_EMPTY, force, NULL, &hs->h[hs->n]);
		if (err) {
			holds_abort(hs);
			return err;
		}
		if (hs->h[hs->n])
			hs->n++;
	}
	return 0;
}

/* The callbacks run at their caller's depth, not the engine's: the engine
 * lock is not held, so sync points they reach (msync, fsync, munmap, exit)
 * must work, not answer EDEADLK as in a signal handler that interrupted
 * safe_mr.  reg.c passes its own depth: the verbs calls stay covered. */
static int call_reg(safe_mr_register_cb reg, void *arg, void **handle, unsigned int cb_depth)
{
	unsigned int d = sm_api_depth;
	int err;

	sm_api_depth = cb_depth;
	err = reg(arg, handle);
	sm_api_depth = d;
	return err;
}

static int call_dereg(safe_mr_deregister_cb dereg, void *arg, void *handle,
		      unsigned int cb_depth)
{
	unsigned int d = sm_api_depth;
	int err;

	sm_api_depth = cb_depth;
	err = dereg(arg, handle);
	sm_api_depth = d;
	return err;
}

/* Shadow, register; on failure nothing stays shadowed. */
static int attempt(struct holds *hs, const struct iovec *iov, size_t iovcnt,
		   unsigned int access, bool force, safe_mr_register_cb reg, void *arg,
		   void **handle, unsigned int cb_depth)
{
	int err = holds_acquire(hs, iov, iovcnt, access, force);

	if (err)
		return err;
	*handle = NULL;
	err = call_reg(reg, arg, handle, cb_depth);
	if (err) {
		/* Nothing was registered, so nothing changed the shadows. */
		holds_abort(hs);
		return err;
	}
	return 0;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct sm_seg *x = a, *y = b;

	if (x->c != y->c)
		return (uintptr_t)x->c < (uintptr_t)y->c ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* Bytes the holds shadow, pages that several iovecs share counted once. */
static size_t holds_bytes(const struct holds *hs)
{
	struct sm_seg *all;
	size_t n = 0, k = 0, pages = 0, sum = 0;

	for (size_t i = 0; i < hs->n; i++) {
		n += hs->h[i]->nseg;
		sum += sm_hold_shadowed(hs->h[i]);
	}
	if (hs->n < 2 || !(all = malloc(n * sizeof(*all))))
		return sum;	/* one hold: no overlap (no memory: an upper bound) */
	for (size_t i = 0; i < hs->n; i++)
		for (size_t j = 0; j < hs->h[i]->nseg; j++)
			all[k++] = hs->h[i]->seg[j];
	qsort(all, n, sizeof(*all), seg_cmp);
	for (size_t i = 0; i < n;) {
		size_t end = all[i].first + all[i].count, j = i + 1;

		while (j < n && all[j].c == all[i].c && all[j].first <= end) {
			if (all[j].first + all[j].count > end)
				end = all[j].first + all[j].count;
			j++;
		}
		pages += end - all[i].first;
		i = j;
	}
	free(all);
	return pages * sm_page_size;
}

int sm_register(const struct iovec *iov, size_t iovcnt, unsigned int access,
		safe_mr_register_cb reg, void *arg, void **handle, size_t *shadowed,
		unsigned int cb_depth)
{
	struct holds hs = { .h = NULL };
	size_t bytes = 0;
	int err;

	if (shadowed)
		*shadowed = 0;
	if (!reg || !handle || (iovcnt && !iov))
		return EINVAL;
	*handle = NULL;
	sm_init();
	if (sm_cfg.mode == SM_MODE_OFF || !iovcnt) {
		err = call_reg(reg, arg, handle, cb_depth);
		return err < 0 ? EINVAL : err;
	}
	hs.h = iovcnt <= 4 ? hs.small : calloc(iovcnt, sizeof(*hs.h));
	if (!hs.h)
		return ENOMEM;
	err = attempt(&hs, iov, iovcnt, access, false, reg, arg, handle, cb_depth);
	/* Read-only: file pages are pinned as they are, unless the kernel
	 * refuses that (fsdax; on 6.1 read-only shared mappings; NICs that pin
	 * everything writable): then shadow every file page, once more. */
	if ((err == EFAULT || err == EOPNOTSUPP) && !(access & SM_WRITE_ACCESS)) {
		sm_debug("read-only registration refused (%s): retrying with a shadow",
			 strerror(err));
		err = attempt(&hs, iov, iovcnt, access, true, reg, arg, handle, cb_depth);
	}
	if (err < 0)
		err = EINVAL;	/* a callback broke the contract: never "success" */
	if (!err) {
		if (!*handle && hs.n)
			sm_error("registration callback returned no handle: its shadows "
				 "are written back at sync points and exit only");
		bytes = holds_bytes(&hs);
		/* Also without a handle: registered. */
		for (size_t i = 0; i < hs.n; i++)
			sm_hold_set_owner(hs.h[i], *handle);
	}
	if (bytes)
		SM_STAT_ADD(shadowed, 1);
	if (hs.h != hs.small)
		free(hs.h);
	if (shadowed)
		*shadowed = bytes;
	return err;
}

SM_EXPORT int safe_mr_register(const struct iovec *iov, size_t iovcnt, unsigned int access,
			       safe_mr_register_cb reg, void *arg, void **handle,
			       size_t *shadowed)
{
	unsigned int d = sm_api_depth;
	int r;

	sm_api_depth++;
	sm_init();
	SM_STAT_ADD(registrations, 1);
	r = sm_register(iov, iovcnt, access, reg, arg, handle, shadowed, d);
	if (r)
		SM_STAT_ADD(reg_failed, 1);
	sm_api_depth--;
	return r;
}

static int deregister_body(void *handle, safe_mr_deregister_cb dereg, void *arg,
			   unsigned int cb_depth)
{
	char token;	/* the registration's holds while dereg runs */
	bool moved = false;
	int err;

	if (!handle || !dereg)
		return EINVAL;
	/* Write back first: on failure the registration stays and the data
	 * stays in the shadow; the caller sees the errno and may retry.  Then
	 * its holds leave the handle: dereg frees it, and a registration on
	 * another thread may get the same address back before the release
	 * below, which must not take that registration's holds. */
	if (atomic_load(&sm_nchunks)) {
		sm_lock_take();
		err = sm_sync_owner_locked(handle, 0, 0, SM_WB_DURABLE);
		if (!err && sm_owner_first(handle)) {
			sm_owner_move(handle, &token);
			moved = true;
		}
		sm_lock_drop();
		if (err)
			return err;
	}
	err = call_dereg(dereg, arg, handle, cb_depth);
	if (err) {
		if (moved) {
			sm_lock_take();
			sm_owner_move(&token, handle);
			sm_lock_drop();
		}
		return err < 0 ? EINVAL : err;
	}
	/* The NIC is done.  Anything it wrote since the sync above is written
	 * by the release; if that fails the pages stay pending (logged) and
	 * are retried, or reported, at the next sync point of the file. */
	if (moved && safe_mr_release_owner(&token))
		sm_error("data written between sync and deregistration is pending");
	return 0;
}

SM_EXPORT int safe_mr_deregister(void *handle, safe_mr_deregister_cb dereg, void *arg)
{
	unsigned int d = sm_api_depth;
	int r;

	sm_api_depth++;
	r = deregister_body(handle, dereg, arg, d);
	sm_api_depth--;
	return r;
}
