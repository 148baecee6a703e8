/* SPDX-License-Identifier: MIT */
/* Memory registration through the hook: every iovec is handed to the
 * safe_mr engine BEFORE the hooked provider registers (and possibly pins)
 * it, with the fid_mr the application will see as owner, so that
 * safe_mr_fi_sync(mr) == safe_mr_sync_owner(mr).  Close writes back.  Both
 * follow safe_mr's one protocol: safe_mr_register/safe_mr_deregister. */
#include <errno.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <rdma/fi_errno.h>
#include <safe_mr.h>

#include "hook.h"

struct smfi_mr {
	struct fid_mr mr;	/* what the application sees; the owner */
	struct fid_mr *inner;	/* NULL once the provider closed it */
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

static int inner_close(void *arg, void *handle)
{
	struct smfi_mr *m = arg;
	int ret;

	(void)handle;
	ret = fi_close(&m->inner->fid);
	if (ret)
		return ret < 0 ? -ret : ret;
	m->inner = NULL;
	return 0;
}

/* safe_mr's deregistration protocol: write back while still registered
 * (on ENOSPC/EIO the MR stays usable, the data stays in the shadow, and
 * fi_close may be called again), close the provider's MR, then write back
 * what the NIC wrote since (on failure: pending, written or reported at the
 * file's next sync point, like safe_mr_dereg_mr). */
static int mr_close(struct fid *fid)
{
	struct smfi_mr *m = (struct smfi_mr *)fid;
	int ret;

	if (m->inner) {
		ret = safe_mr_deregister(&m->mr, inner_close, m);
		if (ret) {
			smfi_warn(FI_LOG_MR, "close: %s\n", fi_strerror(ret));
			return -ret;
		}
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

struct inner_call {
	struct fid_domain *dom;
	const struct mr_call *c;
	struct smfi_mr *m;
};

static int inner_register_cb(void *arg, void **handle)
{
	struct inner_call *ic = arg;
	int ret = inner_register(ic->dom, ic->c, &ic->m->inner);

	if (ret)
		return ret < 0 ? -ret : ret;
	*handle = &ic->m->mr;
	return 0;
}

/* safe_mr's registration protocol (safe_mr_register): every iovec of host
 * memory is shadowed as it needs before the provider pins it, with the
 * fid_mr the application sees as the handle, and the read-only retry. */
static int mr_register(struct fid *dfid, const struct mr_call *c, struct fid_mr **out)
{
	struct fid *ifid = smfi_domain_inner(dfid);
	struct inner_call ic = { (struct fid_domain *)ifid, c, NULL };
	size_t shadowed = 0;
	void *handle;
	int ret;

	if (!ic.dom)
		return -FI_EINVAL;
	ic.m = calloc(1, sizeof(*ic.m));
	if (!ic.m)
		return -FI_ENOMEM;
	ret = safe_mr_register(c->iov, c->system_memory ? c->count : 0,
			       smfi_access_to_ibv(c->access), inner_register_cb, &ic, &handle,
			       &shadowed);
	if (ret) {
		smfi_dbg(FI_LOG_MR, "registration: %s\n", fi_strerror(ret));
		free(ic.m);
		return -ret;
	}
	if (shadowed) {
		smfi_dbg(FI_LOG_MR, "mr %p: %zu bytes shadowed in %zu iovecs\n",
			 handle, shadowed, c->count);
		smfi_note_shadowed();
	}
	struct smfi_mr *m = ic.m;
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
