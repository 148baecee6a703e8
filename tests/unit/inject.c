/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "inject.h"

static int listener = -1;
static _Atomic int armed_kind, armed_skip, armed_left, armed_err;
static _Atomic unsigned long seen[3];
static dev_t armed_dev;
static ino_t armed_ino;
static _Atomic int armed_set;

static enum inj_kind kind_of(long nr)
{
	switch (nr) {
	case SYS_pwrite64:
	case SYS_pwritev:
	case SYS_pwritev2:
	case SYS_write:
		return INJ_WRITE;
	case SYS_fsync:
	case SYS_fdatasync:
		return INJ_FLUSH;
	default:
		return 0;
	}
}

static void *supervise(void *arg)
{
	struct seccomp_notif_sizes sz;
	struct seccomp_notif *req;
	struct seccomp_notif_resp *resp;

	(void)arg;
	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz))
		abort();
	req = malloc(sz.seccomp_notif);
	resp = malloc(sz.seccomp_notif_resp);
	for (;;) {
		enum inj_kind k;
		struct stat st;
		bool hit = false;

		memset(req, 0, sz.seccomp_notif);
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req)) {
			if (errno == EINTR || errno == ENOENT)
				continue;
			abort();
		}
		memset(resp, 0, sz.seccomp_notif_resp);
		resp->id = req->id;
		k = kind_of(req->data.nr);
		/* Same process, same descriptor table: the fd names the file. */
		if (atomic_load(&armed_set) && fstat((int)req->data.args[0], &st) == 0 &&
		    st.st_dev == armed_dev && st.st_ino == armed_ino) {
			atomic_fetch_add(&seen[k], 1);
			if ((atomic_load(&armed_kind) & k) && atomic_load(&armed_left) > 0) {
				if (atomic_load(&armed_skip) > 0) {
					atomic_fetch_sub(&armed_skip, 1);
				} else {
					atomic_fetch_sub(&armed_left, 1);
					hit = true;
				}
			}
		}
		if (hit) {
			resp->error = -atomic_load(&armed_err);
		} else {
			resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
		}
		ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp);
	}
	return NULL;
}

bool inj_install(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwrite64, 5, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwritev, 4, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwritev2, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fsync, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fdatasync, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	pthread_t t;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return false;
	listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
				SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (listener < 0)
		return false;
	if (pthread_create(&t, NULL, supervise, NULL))
		return false;
	pthread_detach(t);
	return true;
}

void inj_arm(int fd, enum inj_kind kind, int skip, int n, int err)
{
	struct stat st;

	if (fstat(fd, &st))
		abort();
	atomic_store(&armed_set, 0);
	armed_dev = st.st_dev;
	armed_ino = st.st_ino;
	atomic_store(&armed_kind, kind);
	atomic_store(&armed_err, err);
	atomic_store(&armed_skip, skip);
	atomic_store(&armed_left, n);
	for (int i = 0; i < 3; i++)
		atomic_store(&seen[i], 0);
	atomic_store(&armed_set, 1);
}

void inj_disarm(void)
{
	atomic_store(&armed_left, 0);
}

unsigned long inj_seen(enum inj_kind kind)
{
	return atomic_load(&seen[kind]);
}
