/* SPDX-License-Identifier: MIT */
/* SAFE_MR_STATS_FILE templates (lib/config.c, built in): %p, %h, %r from
 * each launcher's variable in order, %%, and the refusals. */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static const char *const rank_vars[] = { "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK",
					 "SLURM_PROCID" };

static void clear_ranks(void)
{
	for (int i = 0; i < 4; i++)
		unsetenv(rank_vars[i]);
}

START_TEST(pid_host_percent)
{
	char out[PATH_MAX], want[PATH_MAX], host[HOST_NAME_MAX + 1];

	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	snprintf(want, sizeof(want), "/tmp/s.%d.%s.%%x", (int)getpid(), host);
	ck_assert_int_eq(sm_stats_path("/tmp/s.%p.%h.%%x", out, sizeof(out)), 0);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(sm_stats_path("plain", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "plain");
}
END_TEST

/* Each launcher's variable alone, then the precedence among them. */
START_TEST(rank_each_launcher)
{
	char out[64], want[64];

	clear_ranks();
	setenv(rank_vars[_i], "17", 1);
	ck_assert_int_eq(sm_stats_path("r%r", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "r17");
	/* an earlier variable in the list wins */
	for (int k = 0; k < _i; k++) {
		char v[8];

		snprintf(v, sizeof(v), "%d", k);
		setenv(rank_vars[k], v, 1);
	}
	snprintf(want, sizeof(want), "r%d", _i ? 0 : 17);
	ck_assert_int_eq(sm_stats_path("r%r", out, sizeof(out)), 0);
	ck_assert_str_eq(out, want);
	clear_ranks();
}
END_TEST

START_TEST(rank_missing_or_bad)
{
	char out[64];

	clear_ranks();
	ck_assert_int_eq(sm_stats_path("r%r", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "rnorank");
	/* not a number: skipped, the next variable is used */
	setenv("OMPI_COMM_WORLD_RANK", "1;rm", 1);
	setenv("SLURM_PROCID", "3", 1);
	ck_assert_int_eq(sm_stats_path("r%r", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "r3");
	clear_ranks();
}
END_TEST

START_TEST(refusals)
{
	char out[16];

	ck_assert_int_eq(sm_stats_path("a%q", out, sizeof(out)), EINVAL);
	ck_assert_int_eq(sm_stats_path("trailing%", out, sizeof(out)), EINVAL);
	ck_assert_int_eq(sm_stats_path("0123456789abcdef", out, sizeof(out)), ENAMETOOLONG);
	ck_assert_int_eq(sm_stats_path("0123456789abcde", out, sizeof(out)), 0);
	ck_assert_int_eq(sm_stats_path("x", out, 0), ENAMETOOLONG);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("stats_file");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, pid_host_percent);
	tcase_add_loop_test(tc, rank_each_launcher, 0, 4);
	tcase_add_test(tc, rank_missing_or_bad);
	tcase_add_test(tc, refusals);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
