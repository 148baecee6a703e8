/* SPDX-License-Identifier: MIT */
/* Memory registration of the fake, and the "NIC" that DMAs into it. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"
#include "fake_nic.h"

/* verbs.h wraps these in macros; here are the real functions. */
#undef ibv_reg_mr
#undef ibv_reg_mr_iova

struct fake_mr {
	struct ibv_mr mr;		/* first: handed out as struct ibv_mr * */
	unsigned int access;
	uintptr_t first_page;
	size_t npages;
	struct fake_backing *backing;	/* NULL for ODP: it follows the mapping */
	struct fake_mr *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fake_mr *live;
static size_t nlive;
static unsigned long reg_calls;
static uint32_t next_handle;
static struct fake_nic_reg last;
static bool have_last;

static struct fake_mr *find(const struct ibv_mr *mr)
{
	for (struct fake_mr *m = live; m; m = m->next)
		if (&m->mr == mr)
			return m;
	return NULL;
}

size_t fake_mrs_on_pd(const struct ibv_pd *pd)
{
	size_t n = 0;

	pthread_mutex_lock(&lock);
	for (struct fake_mr *m = live; m; m = m->next)
		n += m->mr.pd == pd;
	pthread_mutex_unlock(&lock);
	return n;
}

static void record(void *addr, size_t length, uint64_t iova, unsigned int access, int err,
		   struct ibv_mr *mr)
{
	last = (struct fake_nic_reg){ addr, length, iova, access, err, mr };
	have_last = true;
}

/* What the kernel pins: checks, and the backing of every page (not for
 * ODP, which follows the mapping through mmu notifiers). */
static int pin(void *addr, size_t length, unsigned int access, struct fake_backing **out,
	       uintptr_t *first, size_t *npages)
{
	size_t ps = fake_page_size();
	uintptr_t s = (uintptr_t)addr & ~(ps - 1);
	uintptr_t e = ((uintptr_t)addr + length + ps - 1) & ~(ps - 1);
	struct fake_backing *b = NULL;
	int err;

	if (!length || e <= s)
		return EINVAL;
	if (access & IBV_ACCESS_ON_DEMAND) {
		if (!fake_env()->odp)
			return EINVAL;
		*out = NULL;
	} else {
		b = calloc((e - s) / ps, sizeof(*b));
		if (!b)
			return ENOMEM;
		err = fake_kernel_check(addr, length, access, b);
		if (err) {
			free(b);
			return err;
		}
		*out = b;
	}
	*first = s;
	*npages = (e - s) / ps;
	return 0;
}

FAKE_EXPORT struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
					    uint64_t iova, unsigned int access)
{
	struct fake_mr *m = NULL;
	unsigned long call;
	int err = 0;

	pthread_mutex_lock(&lock);
	call = ++reg_calls;
	pthread_mutex_unlock(&lock);

	if (fake_env()->fail_reg && call == fake_env()->fail_reg)
		err = ENOMEM;
	else if (!pd || !length)
		err = EINVAL;
	if (!err) {
		m = calloc(1, sizeof(*m));
		if (!m)
			err = ENOMEM;
	}
	if (!err)
		err = pin(addr, length, access, &m->backing, &m->first_page, &m->npages);

	pthread_mutex_lock(&lock);
	if (!err) {
		uint32_t h = ++next_handle;

		m->access = access;
		m->mr = (struct ibv_mr){
			.context = pd->context, .pd = pd, .addr = addr, .length = length,
			.handle = h, .lkey = 0x1000u + h, .rkey = 0x80000000u | h,
		};
		m->next = live;
		live = m;
		nlive++;
	}
	record(addr, length, iova, access, err, err ? NULL : &m->mr);
	pthread_mutex_unlock(&lock);
	if (err) {
		free(m);
		errno = err;
		return NULL;
	}
	return &m->mr;
}

/* As in rdma-core: both call ibv_reg_mr_iova2 through the PLT, so an
 * interposer of ibv_reg_mr_iova2 sees them. */
FAKE_EXPORT struct ibv_mr *ibv_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
					   uint64_t iova, int access)
{
	return ibv_reg_mr_iova2(pd, addr, length, iova, (unsigned int)access);
}

FAKE_EXPORT struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access)
{
	return ibv_reg_mr_iova2(pd, addr, length, (uintptr_t)addr, (unsigned int)access);
}

FAKE_EXPORT int ibv_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
			     size_t length, int access)
{
	struct fake_backing *b = NULL;
	uintptr_t first = 0;
	size_t npages = 0;
	struct fake_mr *m;
	void *naddr;
	size_t nlen;
	unsigned int nacc;
	int err;

	if ((flags & ~IBV_REREG_MR_FLAGS_SUPPORTED) ||
	    ((flags & IBV_REREG_MR_CHANGE_TRANSLATION) && (!length || !addr)) ||
	    (access && !(flags & IBV_REREG_MR_CHANGE_ACCESS)) ||
	    ((flags & IBV_REREG_MR_CHANGE_PD) && !pd)) {
		errno = EINVAL;
		return IBV_REREG_MR_ERR_INPUT;
	}
	pthread_mutex_lock(&lock);
	m = find(mr);
	if (!m) {
		pthread_mutex_unlock(&lock);
		fprintf(stderr, "fake_verbs: ibv_rereg_mr on an MR that is not registered\n");
		errno = EINVAL;
		return IBV_REREG_MR_ERR_INPUT;
	}
	naddr = (flags & IBV_REREG_MR_CHANGE_TRANSLATION) ? addr : mr->addr;
	nlen = (flags & IBV_REREG_MR_CHANGE_TRANSLATION) ? length : mr->length;
	nacc = (flags & IBV_REREG_MR_CHANGE_ACCESS) ? (unsigned int)access : m->access;
	pthread_mutex_unlock(&lock);

	/* The kernel re-pins when translation or access changes. */
	err = pin(naddr, nlen, nacc, &b, &first, &npages);

	pthread_mutex_lock(&lock);
	m = find(mr);
	if (!m && !err)
		err = EINVAL;
	if (!err) {
		free(m->backing);
		m->backing = b;
		m->first_page = first;
		m->npages = npages;
		m->access = nacc;
		mr->addr = naddr;
		mr->length = nlen;
		if (flags & IBV_REREG_MR_CHANGE_PD)
			mr->pd = pd;
	} else {
		free(b);
	}
	record(naddr, nlen, (uintptr_t)naddr, nacc, err, err ? NULL : mr);
	pthread_mutex_unlock(&lock);
	if (err) {
		errno = err;
		return IBV_REREG_MR_ERR_CMD;
	}
	return 0;
}

FAKE_EXPORT int ibv_dereg_mr(struct ibv_mr *mr)
{
	struct fake_mr **pp, *m = NULL;

	pthread_mutex_lock(&lock);
	for (pp = &live; *pp; pp = &(*pp)->next) {
		if (&(*pp)->mr == mr) {
			m = *pp;
			*pp = m->next;
			nlive--;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	if (!m) {
		fprintf(stderr, "fake_verbs: ibv_dereg_mr(%p): not a registered MR\n", (void *)mr);
		return EINVAL;
	}
	free(m->backing);
	free(m);
	return 0;
}

/* ---- the NIC ---- */

static int dma(struct ibv_mr *mr, size_t offset, size_t len, bool write, void *dst,
	       const void *src)
{
	size_t ps = fake_page_size();
	struct fake_backing *now = NULL;
	struct fake_mr *m;
	uintptr_t a, p0, p1;
	int err = 0;

	pthread_mutex_lock(&lock);
	m = find(mr);
	if (!m) {
		fprintf(stderr, "fake_nic: DMA to MR %p, which is not registered\n", (void *)mr);
		err = ENOENT;
		goto out;
	}
	if (offset > mr->length || len > mr->length - offset) {
		err = EINVAL;
		goto out;
	}
	if (write && !(m->access & (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
				    IBV_ACCESS_REMOTE_ATOMIC))) {
		err = EACCES;
		goto out;
	}
	if (!len)
		goto out;
	a = (uintptr_t)mr->addr + offset;
	p0 = a & ~(ps - 1);
	p1 = (a + len + ps - 1) & ~(ps - 1);
	if (m->backing) {
		size_t n = (p1 - p0) / ps, first = (p0 - m->first_page) / ps;

		now = calloc(n, sizeof(*now));
		if (!now) {
			err = ENOMEM;
			goto out;
		}
		err = fake_backing_now(p0, n, now);
		if (err) {
			fprintf(stderr, "fake_nic: %s of MR %p at offset %zu: pinned pages are no longer mapped\n",
				write ? "write" : "read", (void *)mr, offset);
			err = EFAULT;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			const struct fake_backing *was = &m->backing[first + i];

			if (was->dev != now[i].dev || was->ino != now[i].ino ||
			    was->off != now[i].off) {
				fprintf(stderr,
					"fake_nic: %s of MR %p: page %#lx was (dev %#lx ino %lu off %#llx) at registration, now (dev %#lx ino %lu off %#llx): the NIC would DMA into memory the process no longer sees\n",
					write ? "write" : "read", (void *)mr,
					(unsigned long)(p0 + i * ps),
					(unsigned long)was->dev, (unsigned long)was->ino,
					(unsigned long long)was->off, (unsigned long)now[i].dev,
					(unsigned long)now[i].ino, (unsigned long long)now[i].off);
				err = EFAULT;
				goto out;
			}
		}
	}
	if (write)
		memcpy((void *)a, src, len);
	else
		memcpy(dst, (const void *)a, len);
out:
	pthread_mutex_unlock(&lock);
	free(now);
	return err;
}

FAKE_EXPORT int fake_nic_write(struct ibv_mr *mr, size_t offset, const void *src, size_t len)
{
	return dma(mr, offset, len, true, NULL, src);
}

FAKE_EXPORT int fake_nic_read(struct ibv_mr *mr, size_t offset, void *dst, size_t len)
{
	return dma(mr, offset, len, false, dst, NULL);
}

FAKE_EXPORT size_t fake_nic_mr_count(void)
{
	size_t n;

	pthread_mutex_lock(&lock);
	n = nlive;
	pthread_mutex_unlock(&lock);
	return n;
}

FAKE_EXPORT unsigned long fake_nic_reg_calls(void)
{
	unsigned long n;

	pthread_mutex_lock(&lock);
	n = reg_calls;
	pthread_mutex_unlock(&lock);
	return n;
}

FAKE_EXPORT int fake_nic_last_reg(struct fake_nic_reg *out)
{
	int err = 0;

	pthread_mutex_lock(&lock);
	if (have_last)
		*out = last;
	else
		err = ENOENT;
	pthread_mutex_unlock(&lock);
	return err;
}

FAKE_EXPORT void fake_nic_reset_stats(void)
{
	pthread_mutex_lock(&lock);
	reg_calls = 0;
	have_last = false;
	pthread_mutex_unlock(&lock);
}
