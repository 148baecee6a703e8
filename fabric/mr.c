/* SPDX-License-Identifier: MIT */
/* Memory registration through the hook: every iovec is handed to the
 * safe_mr engine BEFORE the hooked provider registers (and possibly pins)
 * it, with the fid_mr the application will see as owner, so that
 * safe_mr_fi_sync(mr) == safe_mr_sync_owner(mr).  Close writes back. */
#include <errno.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <rdma/fi_errno.h>
#include <safe_mr.h>

#include "hook.h"

struct smfi_mr {
	struct fid_mr mr;	/* what the application sees; the owner */
	struct fid_mr *inner;	/* NULL once the provider closed it */
	bool holds;		/* ranges were acquired with owner &mr */
	struct fi_ops fid_ops;
};

unsigned int smfi_access_to_ibv(uint64_t access)
{
	unsigned int ibv = 0;

	/* 0 means "any use" to several providers: assume the worst. */
	if (!access)
		access = FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
	/* FI_WRITE too: verbs (some versions) registers it LOCAL_WRITE. */
	if (access & (FI_RECV | FI_READ | FI_WRITE))
		ibv |= IBV_ACCESS_LOCAL_WRITE;
	if (access & FI_REMOTE_READ)
		ibv |= IBV_ACCESS_REMOTE_READ;
	if (access & FI_REMOTE_WRITE)	/* also the target of atomics */
		ibv |= IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
		       IBV_ACCESS_REMOTE_ATOMIC;
	return ibv;
}

static int mr_close(struct fid *fid)
{
	struct smfi_mr *m = (struct smfi_mr *)fid;
	int ret;

	if (m->inner) {
		/* Write back while still registered: on ENOSPC/EIO the MR
		 * stays usable and the data stays in the shadow. */
		if (m->holds && (ret = safe_mr_sync_owner(&m->mr, SAFE_MR_SYNC_DURABLE))) {
			smfi_warn(FI_LOG_MR, "writeback before close failed: %s\n",
				  fi_strerror(ret));
			return -ret;
		}
		ret = fi_close(&m->inner->fid);
		if (ret)
			return ret;
		m->inner = NULL;
	}
	/* Pages the NIC changed after the sync above go back now; if that
	 * fails, fi_close may be called again to retry. */
	if (m->holds && (ret = safe_mr_release_owner(&m->mr))) {
		smfi_warn(FI_LOG_MR, "writeback at close failed: %s\n", fi_strerror(ret));
		return -ret;
	}
	free(m);
	return 0;
}

struct fid *smfi_mr_inner(struct fid *fid)
{
	struct smfi_mr *m = (struct smfi_mr *)fid;

	if (fid->fclass != FI_CLASS_MR || !fid->ops || fid->ops->close != mr_close ||
	    !m->inner)
		return NULL;
	return &m->inner->fid;
}

/* Keys and descriptors can change on enable/bind (FI_MR_ENDPOINT). */
static void mr_refresh(struct smfi_mr *m)
{
	m->mr.mem_desc = m->inner->mem_desc;
	m->mr.key = m->inner->key;
}

static int mr_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct smfi_mr *m = (struct smfi_mr *)fid;
	int ret;

	if (!m->inner)
		return -FI_EOPBADSTATE;
	ret = m->inner->fid.ops->bind(&m->inner->fid, smfi_unwrap(bfid), flags);
	mr_refresh(m);
	return ret;
}

static int mr_control(struct fid *fid, int command, void *arg)
{
	struct smfi_mr *m = (struct smfi_mr *)fid;
	int ret;

	if (!m->inner)
		return -FI_EOPBADSTATE;
	ret = m->inner->fid.ops->control(&m->inner->fid, command, arg);
	mr_refresh(m);
	return ret;
}

static int mr_ops_open(struct fid *fid, const char *name, uint64_t flags, void **ops,
		       void *context)
{
	struct smfi_mr *m = (struct smfi_mr *)fid;

	if (!m->inner)
		return -FI_EOPBADSTATE;
	return m->inner->fid.ops->ops_open(&m->inner->fid, name, flags, ops, context);
}

static int mr_tostr(const struct fid *fid, char *buf, size_t len)
{
	const struct smfi_mr *m = (const struct smfi_mr *)fid;

	if (!m->inner)
		return -FI_EOPBADSTATE;
	return m->inner->fid.ops->tostr(&m->inner->fid, buf, len);
}

static int mr_ops_set(struct fid *fid, const char *name, uint64_t flags, void *ops,
		      void *context)
{
	struct smfi_mr *m = (struct smfi_mr *)fid;

	if (!m->inner)
		return -FI_EOPBADSTATE;
	return m->inner->fid.ops->ops_set(&m->inner->fid, name, flags, ops, context);
}

/* One registration, whatever the entry point. */
struct mr_call {
	enum { CALL_REG, CALL_REGV, CALL_REGATTR } kind;
	const struct iovec *iov;
	size_t count;
	uint64_t access, offset, requested_key, flags;
	void *context;
	const struct fi_mr_attr *attr;
	bool system_memory;	/* host memory that may be file-backed */
};

static int acquire_all(struct smfi_mr *m, const struct mr_call *c, unsigned int ibv)
{
	size_t shadowed = 0;
	int ret;

	for (size_t i = 0; i < c->count; i++) {
		struct safe_mr_range *r;

		if (!c->iov[i].iov_len)
			continue;
		m->holds = true;
		ret = safe_mr_range_acquire(c->iov[i].iov_base, c->iov[i].iov_len, ibv,
					    &m->mr, &r);
		if (ret) {
			smfi_warn(FI_LOG_MR, "safe_mr_range_acquire(%p, %zu): %s\n",
				  c->iov[i].iov_base, c->iov[i].iov_len, fi_strerror(ret));
			safe_mr_release_owner(&m->mr);
			m->holds = false;
			return -ret;
		}
		shadowed += safe_mr_range_shadowed(r);
	}
	if (shadowed) {
		smfi_dbg(FI_LOG_MR, "mr %p: %zu bytes shadowed in %zu iovecs\n",
			 (void *)&m->mr, shadowed, c->count);
		smfi_note_shadowed();
	}
	return 0;
}

static int inner_register(struct fid_domain *dom, const struct mr_call *c,
			  struct fid_mr **inner)
{
	switch (c->kind) {
	case CALL_REG:
		return dom->mr->reg(&dom->fid, c->iov[0].iov_base, c->iov[0].iov_len,
				    c->access, c->offset, c->requested_key, c->flags, inner,
				    c->context);
	case CALL_REGV:
		return dom->mr->regv(&dom->fid, c->iov, c->count, c->access, c->offset,
				     c->requested_key, c->flags, inner, c->context);
	default:
		return dom->mr->regattr(&dom->fid, c->attr, c->flags, inner);
	}
}

static int mr_register(struct fid *dfid, const struct mr_call *c, struct fid_mr **out)
{
	struct fid *ifid = smfi_domain_inner(dfid);
	struct fid_domain *dom = (struct fid_domain *)ifid;
	unsigned int ibv = smfi_access_to_ibv(c->access);
	struct smfi_mr *m;
	int ret;

	if (!dom)
		return -FI_EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -FI_ENOMEM;

	if (c->system_memory && (ret = acquire_all(m, c, ibv)))
		goto fail;
	ret = inner_register(dom, c, &m->inner);
	/* A NIC that pins even read-only buffers writable (or a kernel that
	 * refuses read-only pins of file pages) fails with EFAULT: shadow
	 * everything file-backed and try once more. */
	if ((ret == -FI_EFAULT || ret == -FI_EOPNOTSUPP) && c->system_memory &&
	    !(ibv & IBV_ACCESS_LOCAL_WRITE)) {
		smfi_info(FI_LOG_MR, "registration refused (%s), retrying shadowed\n",
			  fi_strerror(-ret));
		if (m->holds)
			safe_mr_release_owner(&m->mr);
		m->holds = false;
		if ((ret = acquire_all(m, c, ibv | IBV_ACCESS_LOCAL_WRITE)))
			goto fail;
		ret = inner_register(dom, c, &m->inner);
	}
	if (ret)
		goto fail;

	m->fid_ops.size = sizeof(m->fid_ops);
	m->fid_ops.close = mr_close;
	m->fid_ops.bind = mr_bind;
	m->fid_ops.control = mr_control;
	m->fid_ops.ops_open = mr_ops_open;
	m->fid_ops.tostr = mr_tostr;
	m->fid_ops.ops_set = mr_ops_set;
	m->mr.fid.fclass = FI_CLASS_MR;
	m->mr.fid.context = c->kind == CALL_REGATTR ? c->attr->context : c->context;
	m->mr.fid.ops = &m->fid_ops;
	mr_refresh(m);
	*out = &m->mr;
	return 0;
fail:
	/* Nothing was registered, so nothing can have changed the shadow. */
	if (m->holds)
		safe_mr_release_owner(&m->mr);
	free(m);
	return ret;
}

/* Device memory and dma-bufs are never file pages. */
static bool is_system(uint64_t flags)
{
#ifdef FI_MR_DMABUF
	if (flags & FI_MR_DMABUF)
		return false;
#endif
	return !(flags & FI_HMEM_DEVICE_ONLY);
}

int smfi_mr_reg(struct fid *fid, const void *buf, size_t len, uint64_t access,
		uint64_t offset, uint64_t requested_key, uint64_t flags,
		struct fid_mr **mr, void *context)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct mr_call c = {
		.kind = CALL_REG, .iov = &iov, .count = 1, .access = access,
		.offset = offset, .requested_key = requested_key, .flags = flags,
		.context = context, .system_memory = is_system(flags),
	};

	return mr_register(fid, &c, mr);
}

int smfi_mr_regv(struct fid *fid, const struct iovec *iov, size_t count,
		 uint64_t access, uint64_t offset, uint64_t requested_key,
		 uint64_t flags, struct fid_mr **mr, void *context)
{
	struct mr_call c = {
		.kind = CALL_REGV, .iov = iov, .count = iov ? count : 0, .access = access,
		.offset = offset, .requested_key = requested_key, .flags = flags,
		.context = context, .system_memory = is_system(flags),
	};

	return mr_register(fid, &c, mr);
}

int smfi_mr_regattr(struct fid *fid, const struct fi_mr_attr *attr, uint64_t flags,
		    struct fid_mr **mr)
{
	struct mr_call c = {
		.kind = CALL_REGATTR, .flags = flags, .attr = attr,
	};

	if (!attr)
		return -FI_EINVAL;
	c.iov = attr->mr_iov;
	c.count = attr->mr_iov ? attr->iov_count : 0;
	c.access = attr->access;
	c.system_memory = attr->iface == FI_HMEM_SYSTEM && is_system(flags);
	return mr_register(fid, &c, mr);
}
