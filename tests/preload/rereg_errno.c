/* SPDX-License-Identifier: MIT */
/* ibv_rereg_mr's convention (libibverbs): a negative ibv_rereg_mr_err_code
 * and errno set.  Under the preload a failed rereg must look the same.
 * (The preload once returned the errno itself, positive, errno unset.) */
#include "verbs_util.h"

int main(void)
{
	size_t ps = page_size();
	struct ibv_pd *pd = open_pd();
	struct ibv_mr *mr;
	char *buf, *hole;
	int rc;

	buf = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	hole = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || hole == MAP_FAILED || munmap(hole, ps))
		die("mmap: %s", strerror(errno));
	mr = ibv_reg_mr(pd, buf, 2 * ps, IBV_ACCESS_LOCAL_WRITE);
	if (!mr)
		die("ibv_reg_mr: %s", strerror(errno));
	/* A new range that is not mapped: the kernel (here its double) says EFAULT. */
	errno = 0;
	rc = ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, hole, ps, 0);
	if (rc >= 0 || errno != EFAULT)
		die("ibv_rereg_mr to an unmapped range returned %d, errno %d (%s): want a negative "
		    "ibv_rereg_mr_err_code and EFAULT", rc, errno, strerror(errno));
	/* Bad input: IBV_REREG_MR_ERR_INPUT and EINVAL. */
	errno = 0;
	rc = ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, buf, 0, 0);
	if (rc != IBV_REREG_MR_ERR_INPUT || errno != EINVAL)
		die("ibv_rereg_mr with length 0 returned %d, errno %d: want %d and EINVAL", rc, errno,
		    IBV_REREG_MR_ERR_INPUT);
	/* The MR is unchanged and still works. */
	if (ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, buf + ps, ps, 0))
		die("ibv_rereg_mr to a good range: %s", strerror(errno));
	if (ibv_dereg_mr(mr))
		die("ibv_dereg_mr: %s", strerror(errno));
	close_pd(pd);
	printf("ok: failed ibv_rereg_mr returns a negative code with errno set\n");
	return 0;
}
