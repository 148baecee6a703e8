/* SPDX-License-Identifier: MIT */
/* What safe_mr knows about filesystems, in one place: the engine's
 * classification (file.c) and safe_mr-info both compile fsfacts.c.  No
 * dependency on the rest of the engine. */
#ifndef SM_FSFACTS_H
#define SM_FSFACTS_H

#include <stdbool.h>

/* Pages of this filesystem have no writeback: pinning them is safe. */
bool sm_fs_without_writeback(long magic);
/* A short name ("ext2/3/4", "tmpfs", ...) or NULL if unknown. */
const char *sm_fs_name(long magic);
/* fd's file is accessed directly (fsdax): statx STATX_ATTR_DAX. */
bool sm_fd_is_dax(int fd);

#endif
