/* SPDX-License-Identifier: MIT */
/* The fabric wrapper: only domain creation is ours, the rest is forwarded
 * with the hooked fabric. */
#include <stdlib.h>
#include <string.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>

#include "hook.h"

struct smfi_fabric {
	struct fid_fabric fabric;	/* what the application sees */
	struct fid_fabric *inner;	/* the hooked provider's fabric */
	struct fi_ops fid_ops;
	struct fi_ops_fabric ops;
};

static struct fid_fabric *inner_of(struct fid_fabric *f)
{
	return ((struct smfi_fabric *)f)->inner;
}

static int fab_close(struct fid *fid)
{
	struct smfi_fabric *f = (struct smfi_fabric *)fid;
	int ret = fi_close(&f->inner->fid);

	if (!ret)
		free(f);
	return ret;
}

struct fid *smfi_fabric_inner(struct fid *fid)
{
	if (fid->fclass != FI_CLASS_FABRIC || !fid->ops || fid->ops->close != fab_close)
		return NULL;
	return &((struct smfi_fabric *)fid)->inner->fid;
}

static int fab_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct fid *in = smfi_fabric_inner(fid);

	return in->ops->bind(in, smfi_unwrap(bfid), flags);
}

static int fab_control(struct fid *fid, int command, void *arg)
{
	struct fid *in = smfi_fabric_inner(fid);

	return in->ops->control(in, command, arg);
}

static int fab_ops_open(struct fid *fid, const char *name, uint64_t flags, void **ops,
			void *context)
{
	struct fid *in = smfi_fabric_inner(fid);

	return in->ops->ops_open(in, name, flags, ops, context);
}

static int fab_tostr(const struct fid *fid, char *buf, size_t len)
{
	struct fid *in = &((struct smfi_fabric *)fid)->inner->fid;

	return in->ops->tostr(in, buf, len);
}

static int fab_ops_set(struct fid *fid, const char *name, uint64_t flags, void *ops,
		       void *context)
{
	struct fid *in = smfi_fabric_inner(fid);

	return in->ops->ops_set(in, name, flags, ops, context);
}

static int fab_domain(struct fid_fabric *fabric, struct fi_info *info,
		      struct fid_domain **dom, void *context)
{
	struct fid_domain *inner;
	int ret = fi_domain(inner_of(fabric), info, &inner, context);

	if (ret)
		return ret;
	ret = smfi_domain_wrap(inner, dom);
	if (ret)
		fi_close(&inner->fid);
	return ret;
}

static int fab_domain2(struct fid_fabric *fabric, struct fi_info *info,
		       struct fid_domain **dom, uint64_t flags, void *context)
{
	struct fid_domain *inner;
	int ret = inner_of(fabric)->ops->domain2(inner_of(fabric), info, &inner, flags,
						  context);

	if (ret)
		return ret;
	ret = smfi_domain_wrap(inner, dom);
	if (ret)
		fi_close(&inner->fid);
	return ret;
}

static int fab_passive_ep(struct fid_fabric *fabric, struct fi_info *info,
			  struct fid_pep **pep, void *context)
{
	return fi_passive_ep(inner_of(fabric), info, pep, context);
}

static int fab_eq_open(struct fid_fabric *fabric, struct fi_eq_attr *attr,
		       struct fid_eq **eq, void *context)
{
	return fi_eq_open(inner_of(fabric), attr, eq, context);
}

static int fab_wait_open(struct fid_fabric *fabric, struct fi_wait_attr *attr,
			 struct fid_wait **waitset)
{
	return fi_wait_open(inner_of(fabric), attr, waitset);
}

static int fab_trywait(struct fid_fabric *fabric, struct fid **fids, int count)
{
	struct fid *stack[16], **in = count <= 16 ? stack : calloc(count, sizeof(*in));
	int ret, i;

	if (!in)
		return -FI_ENOMEM;
	for (i = 0; i < count; i++)
		in[i] = smfi_unwrap(fids[i]);
	ret = fi_trywait(inner_of(fabric), in, count);
	if (in != stack)
		free(in);
	return ret;
}

int smfi_fabric_wrap(struct fid_fabric *inner, struct fid_fabric **out,
		     const struct fi_provider *hooked)
{
	const struct fi_ops *ifo = inner->fid.ops;
	const struct fi_ops_fabric *io = inner->ops;
	struct smfi_fabric *f = calloc(1, sizeof(*f));

	if (!f)
		return -FI_ENOMEM;
	f->inner = inner;

	f->fid_ops.size = sizeof(f->fid_ops);
	f->fid_ops.close = fab_close;
	f->fid_ops.bind = SMFI_HAS_OP(ifo, struct fi_ops, bind) ? fab_bind : NULL;
	f->fid_ops.control = SMFI_HAS_OP(ifo, struct fi_ops, control) ? fab_control : NULL;
	f->fid_ops.ops_open = SMFI_HAS_OP(ifo, struct fi_ops, ops_open) ? fab_ops_open : NULL;
	f->fid_ops.tostr = SMFI_HAS_OP(ifo, struct fi_ops, tostr) ? fab_tostr : NULL;
	f->fid_ops.ops_set = SMFI_HAS_OP(ifo, struct fi_ops, ops_set) ? fab_ops_set : NULL;

	f->ops.size = io->size < sizeof(f->ops) ? io->size : sizeof(f->ops);
	f->ops.domain = fab_domain;
	f->ops.passive_ep = SMFI_HAS_OP(io, struct fi_ops_fabric, passive_ep) ? fab_passive_ep : NULL;
	f->ops.eq_open = SMFI_HAS_OP(io, struct fi_ops_fabric, eq_open) ? fab_eq_open : NULL;
	f->ops.wait_open = SMFI_HAS_OP(io, struct fi_ops_fabric, wait_open) ? fab_wait_open : NULL;
	f->ops.trywait = SMFI_HAS_OP(io, struct fi_ops_fabric, trywait) ? fab_trywait : NULL;
	f->ops.domain2 = SMFI_HAS_OP(io, struct fi_ops_fabric, domain2) ? fab_domain2 : NULL;

	f->fabric.fid.fclass = FI_CLASS_FABRIC;
	f->fabric.fid.context = inner->fid.context;
	f->fabric.fid.ops = &f->fid_ops;
	f->fabric.ops = &f->ops;
	f->fabric.api_version = inner->api_version;

	smfi_info(FI_LOG_FABRIC, "hooked fabric of provider %s\n",
		  hooked && hooked->name ? hooked->name : "?");
	*out = &f->fabric;
	return 0;
}
