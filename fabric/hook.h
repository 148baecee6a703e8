/* SPDX-License-Identifier: MIT */
/* libsafe_mr-fi.so: the FI_HOOK=safe_mr provider.  libfabric 1.17 does not
 * export its hook helpers (ofi_hook.h), so this wraps the three objects it
 * needs itself: the fabric (to see domain creation), the domain (to see
 * memory registration) and the MR (to see its close).  Everything else goes
 * straight to the hooked provider's objects. */
#ifndef SAFE_MR_FI_HOOK_H
#define SAFE_MR_FI_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/providers/fi_prov.h>

#define SMFI_EXPORT __attribute__((visibility("default")))

extern struct fi_provider smfi_prov;

/* Logging through libfabric's own logger (FI_LOG_LEVEL). */
#include <rdma/providers/fi_log.h>
#define smfi_warn(subsys, ...) FI_WARN(&smfi_prov, subsys, __VA_ARGS__)
#define smfi_info(subsys, ...) FI_INFO(&smfi_prov, subsys, __VA_ARGS__)
#define smfi_dbg(subsys, ...) FI_DBG(&smfi_prov, subsys, __VA_ARGS__)

/* params.c: define FI_SAFE_MR_* and hand set ones to the engine's env. */
void smfi_params_init(void);

/* fabric.c */
int smfi_fabric_wrap(struct fid_fabric *inner, struct fid_fabric **out,
		     const struct fi_provider *hooked);

/* domain.c */
int smfi_domain_wrap(struct fid_domain *inner, struct fid_domain **out);

/* mr.c: the fi_ops_mr of a wrapped domain. */
int smfi_mr_reg(struct fid *fid, const void *buf, size_t len, uint64_t access,
		uint64_t offset, uint64_t requested_key, uint64_t flags,
		struct fid_mr **mr, void *context);
int smfi_mr_regv(struct fid *fid, const struct iovec *iov, size_t count,
		 uint64_t access, uint64_t offset, uint64_t requested_key,
		 uint64_t flags, struct fid_mr **mr, void *context);
int smfi_mr_regattr(struct fid *fid, const struct fi_mr_attr *attr,
		    uint64_t flags, struct fid_mr **mr);
/* syncwarn.c: called after a registration that shadowed something; says
 * once that libc sync points need the preload when it is not loaded. */
void smfi_note_shadowed(void);
/* libfabric access bits -> IBV_ACCESS_* as a verbs NIC would need them. */
unsigned int smfi_access_to_ibv(uint64_t access);

/* The hooked provider's object behind one of ours, or NULL when fid is
 * not ours (each file knows its own wrapper by its close function). */
struct fid *smfi_fabric_inner(struct fid *fid);
struct fid *smfi_domain_inner(struct fid *fid);
struct fid *smfi_mr_inner(struct fid *fid);
/* unwrap.c: for calls that pass fids along (bind, trywait): ours become
 * the hooked provider's, others pass unchanged. */
struct fid *smfi_unwrap(struct fid *fid);

/* Copy a function pointer into our ops table only when the inner table
 * has it (size and non-NULL), so FI_CHECK_OP sees the same answer. */
#define SMFI_HAS_OP(ops, type, op) \
	((ops) && (ops)->size > offsetof(type, op) && (ops)->op)

#endif
