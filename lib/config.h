/* SPDX-License-Identifier: MIT */
/* Settings of config.c beyond struct sm_config (internal.h). */
#ifndef SAFE_MR_CONFIG_H
#define SAFE_MR_CONFIG_H

#include <stddef.h>

/* SAFE_MR_STATS_FILE as given (a template), or NULL: stats go to stderr. */
const char *sm_cfg_stats_file(void);
/* Expand a SAFE_MR_STATS_FILE template: %p pid, %h host name, %r MPI rank
 * (OMPI_COMM_WORLD_RANK, PMI_RANK, PMIX_RANK, SLURM_PROCID; "norank" when
 * none is set), %% a percent sign.  0, EINVAL (another %x, or a trailing
 * %) or ENAMETOOLONG (does not fit in n bytes). */
int sm_stats_path(const char *tmpl, char *out, size_t n);
/* SAFE_MR_LOG_FILE as given (a template like SAFE_MR_STATS_FILE), or NULL:
 * log lines go to stderr. */
const char *sm_cfg_log_file(void);
/* "2026-12-07T15:53:26.123Z host rank=R" (UTC, host name, MPI rank or
 * "none") into buf: the head of every log line and of the stats line.
 * Returns its length. */
int sm_log_prefix(char *buf, size_t n);
/* The MPI rank from the launchers' variables, or NULL. */
const char *sm_mpi_rank(void);

#endif
