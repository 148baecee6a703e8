/* SPDX-License-Identifier: MIT */
/* The domain wrapper: memory registration is ours (mr.c); every other
 * domain call is forwarded with the hooked domain, so the objects it
 * creates (endpoints, CQs, AVs, ...) are the provider's own. */
#include <stdlib.h>
#include <strings.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_collective.h>

#include "hook.h"

/* libfabric's internal flow-control ops (ofi_util.h, not installed; the
 * layout of 1.17, whose rxm calls set_send_handler at offset 0x20).  ofi_rxm hands the core domain it
 * opened - ours - to set_send_handler, and the core provider (verbs)
 * container_of()s it: it must get the provider's own domain.  The other
 * calls take the provider's own endpoints and are used unchanged. */
#define SMFI_OPS_FLOW_CTRL "ofix_flow_ctrl_v1"
struct smfi_ops_flow_ctrl {
	size_t size;
	bool (*available)(struct fid_ep *ep);
	int (*enable)(struct fid_ep *ep, uint64_t threshold);
	void (*add_credits)(struct fid_ep *ep, uint64_t credits);
	void (*set_send_handler)(struct fid_domain *domain,
				 ssize_t (*send_handler)(struct fid_ep *ep, uint64_t credits));
};

struct smfi_domain {
	struct fid_domain domain;	/* what the application sees */
	struct fid_domain *inner;
	struct fi_ops fid_ops;
	struct fi_ops_domain ops;
	struct fi_ops_mr mr_ops;
	struct smfi_ops_flow_ctrl flow_ctrl;	/* handed out by ops_open */
	const struct smfi_ops_flow_ctrl *inner_flow_ctrl;
};

static struct fid_domain *inner_of(struct fid_domain *d)
{
	return ((struct smfi_domain *)d)->inner;
}

static int dom_close(struct fid *fid)
{
	struct smfi_domain *d = (struct smfi_domain *)fid;
	int ret = fi_close(&d->inner->fid);

	if (!ret)
		free(d);
	return ret;
}

struct fid *smfi_domain_inner(struct fid *fid)
{
	if (fid->fclass != FI_CLASS_DOMAIN || !fid->ops || fid->ops->close != dom_close)
		return NULL;
	return &((struct smfi_domain *)fid)->inner->fid;
}

static int dom_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct fid *in = smfi_domain_inner(fid);

	return in->ops->bind(in, smfi_unwrap(bfid), flags);
}

static int dom_control(struct fid *fid, int command, void *arg)
{
	struct fid *in = smfi_domain_inner(fid);

	return in->ops->control(in, command, arg);
}

static void dom_set_send_handler(struct fid_domain *domain,
				 ssize_t (*handler)(struct fid_ep *ep, uint64_t credits))
{
	struct smfi_domain *d = (struct smfi_domain *)domain;

	if (!smfi_domain_inner(&domain->fid) || !d->inner_flow_ctrl) {
		smfi_warn(FI_LOG_DOMAIN, "flow control: not a safe_mr domain\n");
		return;
	}
	d->inner_flow_ctrl->set_send_handler(d->inner, handler);
}

static int dom_ops_open(struct fid *fid, const char *name, uint64_t flags, void **ops,
			void *context)
{
	struct smfi_domain *d = (struct smfi_domain *)fid;
	struct fid *in = smfi_domain_inner(fid);
	const struct smfi_ops_flow_ctrl *io;
	int ret = in->ops->ops_open(in, name, flags, ops, context);

	if (ret || strcasecmp(name, SMFI_OPS_FLOW_CTRL) || !*ops)
		return ret;
	io = *ops;
	if (io->size < sizeof(d->flow_ctrl) || !io->set_send_handler) {
		smfi_warn(FI_LOG_DOMAIN, "unknown %s layout (size %zu)\n", name, io->size);
		return -FI_ENOSYS;	/* rxm then runs without flow control */
	}
	d->inner_flow_ctrl = io;
	d->flow_ctrl = *io;
	d->flow_ctrl.size = sizeof(d->flow_ctrl);
	d->flow_ctrl.set_send_handler = dom_set_send_handler;
	*ops = &d->flow_ctrl;
	return 0;
}

static int dom_tostr(const struct fid *fid, char *buf, size_t len)
{
	struct fid *in = &((struct smfi_domain *)fid)->inner->fid;

	return in->ops->tostr(in, buf, len);
}

static int dom_ops_set(struct fid *fid, const char *name, uint64_t flags, void *ops,
		       void *context)
{
	struct fid *in = smfi_domain_inner(fid);

	return in->ops->ops_set(in, name, flags, ops, context);
}

static int dom_av_open(struct fid_domain *d, struct fi_av_attr *attr, struct fid_av **av,
		       void *context)
{
	return inner_of(d)->ops->av_open(inner_of(d), attr, av, context);
}

static int dom_cq_open(struct fid_domain *d, struct fi_cq_attr *attr, struct fid_cq **cq,
		       void *context)
{
	return inner_of(d)->ops->cq_open(inner_of(d), attr, cq, context);
}

static int dom_endpoint(struct fid_domain *d, struct fi_info *info, struct fid_ep **ep,
			void *context)
{
	return inner_of(d)->ops->endpoint(inner_of(d), info, ep, context);
}

static int dom_scalable_ep(struct fid_domain *d, struct fi_info *info, struct fid_ep **sep,
			   void *context)
{
	return inner_of(d)->ops->scalable_ep(inner_of(d), info, sep, context);
}

static int dom_cntr_open(struct fid_domain *d, struct fi_cntr_attr *attr,
			 struct fid_cntr **cntr, void *context)
{
	return inner_of(d)->ops->cntr_open(inner_of(d), attr, cntr, context);
}

static int dom_poll_open(struct fid_domain *d, struct fi_poll_attr *attr,
			 struct fid_poll **pollset)
{
	return inner_of(d)->ops->poll_open(inner_of(d), attr, pollset);
}

static int dom_stx_ctx(struct fid_domain *d, struct fi_tx_attr *attr, struct fid_stx **stx,
		       void *context)
{
	return inner_of(d)->ops->stx_ctx(inner_of(d), attr, stx, context);
}

static int dom_srx_ctx(struct fid_domain *d, struct fi_rx_attr *attr, struct fid_ep **rx_ep,
		       void *context)
{
	return inner_of(d)->ops->srx_ctx(inner_of(d), attr, rx_ep, context);
}

static int dom_query_atomic(struct fid_domain *d, enum fi_datatype datatype, enum fi_op op,
			    struct fi_atomic_attr *attr, uint64_t flags)
{
	return inner_of(d)->ops->query_atomic(inner_of(d), datatype, op, attr, flags);
}

static int dom_query_collective(struct fid_domain *d, enum fi_collective_op coll,
				struct fi_collective_attr *attr, uint64_t flags)
{
	return inner_of(d)->ops->query_collective(inner_of(d), coll, attr, flags);
}

static int dom_endpoint2(struct fid_domain *d, struct fi_info *info, struct fid_ep **ep,
			 uint64_t flags, void *context)
{
	return inner_of(d)->ops->endpoint2(inner_of(d), info, ep, flags, context);
}

int smfi_domain_wrap(struct fid_domain *inner, struct fid_domain **out)
{
	const struct fi_ops *ifo = inner->fid.ops;
	const struct fi_ops_domain *io = inner->ops;
	const struct fi_ops_mr *imr = inner->mr;
	struct smfi_domain *d = calloc(1, sizeof(*d));

	if (!d)
		return -FI_ENOMEM;
	d->inner = inner;

	d->fid_ops.size = sizeof(d->fid_ops);
	d->fid_ops.close = dom_close;
	d->fid_ops.bind = SMFI_HAS_OP(ifo, struct fi_ops, bind) ? dom_bind : NULL;
	d->fid_ops.control = SMFI_HAS_OP(ifo, struct fi_ops, control) ? dom_control : NULL;
	d->fid_ops.ops_open = SMFI_HAS_OP(ifo, struct fi_ops, ops_open) ? dom_ops_open : NULL;
	d->fid_ops.tostr = SMFI_HAS_OP(ifo, struct fi_ops, tostr) ? dom_tostr : NULL;
	d->fid_ops.ops_set = SMFI_HAS_OP(ifo, struct fi_ops, ops_set) ? dom_ops_set : NULL;

#define DOM_OP(op) d->ops.op = SMFI_HAS_OP(io, struct fi_ops_domain, op) ? dom_##op : NULL
	d->ops.size = io->size < sizeof(d->ops) ? io->size : sizeof(d->ops);
	DOM_OP(av_open);
	DOM_OP(cq_open);
	DOM_OP(endpoint);
	DOM_OP(scalable_ep);
	DOM_OP(cntr_open);
	DOM_OP(poll_open);
	DOM_OP(stx_ctx);
	DOM_OP(srx_ctx);
	DOM_OP(query_atomic);
	DOM_OP(query_collective);
	DOM_OP(endpoint2);
#undef DOM_OP

	d->mr_ops.size = imr && imr->size < sizeof(d->mr_ops) ? imr->size : sizeof(d->mr_ops);
	d->mr_ops.reg = SMFI_HAS_OP(imr, struct fi_ops_mr, reg) ? smfi_mr_reg : NULL;
	d->mr_ops.regv = SMFI_HAS_OP(imr, struct fi_ops_mr, regv) ? smfi_mr_regv : NULL;
	d->mr_ops.regattr = SMFI_HAS_OP(imr, struct fi_ops_mr, regattr) ? smfi_mr_regattr : NULL;

	d->domain.fid.fclass = FI_CLASS_DOMAIN;
	d->domain.fid.context = inner->fid.context;
	d->domain.fid.ops = &d->fid_ops;
	d->domain.ops = &d->ops;
	d->domain.mr = imr ? &d->mr_ops : NULL;
	*out = &d->domain;
	return 0;
}
