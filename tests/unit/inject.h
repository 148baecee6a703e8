/* SPDX-License-Identifier: MIT */
/* Real failing system calls for the engine's writeback: a seccomp filter
 * hands pwrite/pwritev/fsync/fdatasync to a supervisor thread
 * (SECCOMP_RET_USER_NOTIF), which lets them run or, when armed, fails the
 * next N of them on one file with an errno.  Install it first thing in a
 * test (before other threads): it stays for the rest of the process. */
#ifndef TEST_INJECT_H
#define TEST_INJECT_H

#include <stdbool.h>

enum inj_kind { INJ_WRITE = 1, INJ_FLUSH = 2 };

/* false (errno) if the kernel cannot do it (then the test must fail, not
 * skip: every kernel we support can). */
bool inj_install(void);
/* Let `skip` calls of `kind` on the file open as `fd` pass, then fail the
 * next n of them with err. */
void inj_arm(int fd, enum inj_kind kind, int skip, int n, int err);
void inj_disarm(void);
/* Calls of each kind seen on the armed file since arming. */
unsigned long inj_seen(enum inj_kind kind);

#endif
