/* SPDX-License-Identifier: MIT */
/*
 * Writeback errors without LD_PRELOAD or a special filesystem: a seccomp
 * filter sends pwrite64/pwritev/pwritev2/fsync/fdatasync on descriptors >= 3
 * to a supervisor process (SECCOMP_RET_USER_NOTIF), which answers "go on"
 * or, when armed, fails the call on one of the model's files with EIO or
 * ENOSPC.  The engine's own code paths see a real failing system call.

 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "model.h"

#if defined(__x86_64__)
#define MY_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define MY_ARCH AUDIT_ARCH_AARCH64
#endif

struct inj_shared {
	_Atomic int left, err, what, target;
	_Atomic unsigned long hits[NF], flush_fails[NF];
	_Atomic int busy;	/* a notification is being handled */
	dev_t dev;
	ino_t ino[NF];
	pid_t model_pid;
	int model_fd[NF];
};
static struct inj_shared *sh;

bool inj_active(void)
{
	return sh != NULL;
}

void inj_arm(int f, int n, int err, int what)
{
	atomic_store(&sh->target, f);
	atomic_store(&sh->err, err);
	atomic_store(&sh->what, what);
	atomic_store(&sh->left, n);
}

void inj_disarm(void)
{
	if (sh)
		atomic_store(&sh->left, 0);
}

unsigned long inj_hits(int f)
{
	return sh ? atomic_load(&sh->hits[f]) : 0;
}

unsigned long inj_flush_fails(int f)
{
	return sh ? atomic_load(&sh->flush_fails[f]) : 0;
}

/* Which model file does descriptor fd of process pid refer to?  -1: none. */
static int which_file(pid_t pid, int fd)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
	if (stat(path, &st) || st.st_dev != sh->dev)
		return -1;
	for (int f = 0; f < NF; f++)
		if (st.st_ino == sh->ino[f])
			return f;
	return -1;
}

static void answer(int lfd, struct seccomp_notif *req)
{
	struct seccomp_notif_resp resp = { .id = req->id };
	int nr = req->data.nr, fd = (int)req->data.args[0];
	bool flush = nr == SYS_fsync || nr == SYS_fdatasync;
	int f = which_file((pid_t)req->pid, fd);
	bool mine = f >= 0 && (pid_t)req->pid == sh->model_pid && fd == sh->model_fd[f];

	resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	if (f >= 0 && (flush || !mine)) {
		int t = atomic_load(&sh->target);
		int what = atomic_load(&sh->what);
		int left = atomic_load(&sh->left);

		if (left > 0 && (t < 0 || t == f) && (what & (flush ? INJ_FLUSH : INJ_WRITE))) {
			atomic_store(&sh->left, left - 1);
			atomic_fetch_add(&sh->hits[f], 1);
			resp.flags = 0;
			resp.error = -atomic_load(&sh->err);
			if (flush)
				atomic_fetch_add(&sh->flush_fails[f], 1);
		}
	}
	/* ENOENT: the caller was interrupted meanwhile; nothing to do. */
	ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

static void supervise(int lfd)
{
	struct seccomp_notif *req = calloc(1, 4096);

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Hold nothing of the model's: its files, the loop mount. */
	for (int fd = 3; fd < 1024; fd++)
		if (fd != lfd)
			close(fd);
	for (;;) {
		memset(req, 0, 4096);
		if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, req)) {
			if (errno == EINTR || errno == ENOENT)
				continue;
			_exit(0);
		}
		answer(lfd, req);
	}
}

int inj_start(const dev_t dev, const ino_t ino[NF], const int model_fd[NF])
{
#ifndef MY_ARCH
	(void)dev, (void)ino, (void)model_fd;
	return ENOSYS;
#else
	struct sock_filter prog[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MY_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwrite64, 5, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwritev, 4, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwritev2, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fsync, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fdatasync, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 3, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
	};
	struct sock_fprog fp = { sizeof(prog) / sizeof(prog[0]), prog };
	int lfd;
	pid_t pid;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		sh = NULL;
		return errno;
	}
	sh->dev = dev;
	memcpy(sh->ino, ino, sizeof(sh->ino));
	memcpy(sh->model_fd, model_fd, sizeof(sh->model_fd));
	sh->model_pid = getpid();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return errno;
	lfd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fp);
	if (lfd < 0)
		return errno;
	pid = fork();
	if (pid < 0)
		return errno;
	if (pid == 0)
		supervise(lfd);
	close(lfd);
	return 0;
#endif
}
