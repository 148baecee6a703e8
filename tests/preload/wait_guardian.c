/* SPDX-License-Identifier: MIT */
/* A parent that waits for a dead child and then reads the file sees what
 * the child's shadows held.  The child registers a file mapping, the
 * (fake) NIC writes it, and the child is killed; its guardian, stopped by
 * the test (a loaded node: it is late), writes the shadow once continued.
 * The parent's wait must not return before that.  0.2.0 returned at once:
 * the parent read the old bytes.
 *
 *   wait_guardian waitpid|wait|waitid */
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "verbs_util.h"
#include "../guardian_procs.h"

/* The guardian started for pid (any parent: we are not a subreaper). */
static pid_t guardian_of(pid_t pid)
{
	pid_t g = smt_guardian_wait_for(0, pid);

	if (!g)
		die("no guardian for %d", (int)pid);
	return g;
}

typedef int (*nic_write_fn)(struct ibv_mr *, size_t, const void *, size_t);


static pid_t stopped;

static void *let_go(void *arg)
{
	(void)arg;
	usleep(500000);
	kill(stopped, SIGCONT);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "";
	size_t len = PAGES * page_size();
	int up[2], fd, st = 0;
	char path[4096], c;
	pthread_t th;
	pid_t t;

	if (strcmp(how, "waitpid") && strcmp(how, "wait") && strcmp(how, "waitid"))
		die("usage: wait_guardian waitpid|wait|waitid");
	if (pipe(up))
		die("pipe");
	fd = make_file(path, sizeof(path));
	t = fork();
	if (t < 0)
		die("fork");
	if (t == 0) {
		nic_write_fn nic_write = (nic_write_fn)dlsym(RTLD_DEFAULT, "fake_nic_write");
		struct ibv_pd *pd = open_pd();
		char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		struct ibv_mr *mr;

		if (!nic_write || map == MAP_FAILED)
			die("fake_nic_write or mmap");
		mr = ibv_reg_mr(pd, map, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
		if (!mr || nic_write(mr, 0, "written by the dying child", 26))
			die("registration or NIC write: %s", strerror(errno));
		if (write(up[1], "r", 1) != 1)
			die("pipe");
		for (;;)
			pause();
	}
	if (read(up[0], &c, 1) != 1)
		die("the child did not register");
	stopped = guardian_of(t);
	kill(stopped, SIGSTOP);
	kill(t, SIGKILL);
	if (pthread_create(&th, NULL, let_go, NULL))
		die("pthread_create");
	if (!strcmp(how, "waitpid")) {
		if (waitpid(t, &st, 0) != t)
			die("waitpid: %s", strerror(errno));
	} else if (!strcmp(how, "wait")) {
		if (wait(&st) != t)
			die("wait: %s", strerror(errno));
	} else {
		siginfo_t si;

		if (waitid(P_ALL, 0, &si, WEXITED) || si.si_pid != t)
			die("waitid: %s", strerror(errno));
		st = si.si_status == SIGKILL ? SIGKILL : 0;
	}
	if (strcmp(how, "waitid") ? !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL : st != SIGKILL)
		die("the child did not die of SIGKILL");
	/* The parent saw the end: the file holds what the child's shadow did. */
	expect_pread(fd, 0, "written by the dying child", "after the parent's wait");
	pthread_join(th, NULL);
	close(fd);
	unlink(path);
	printf("ok: %s returned after the child's guardian wrote its shadow\n", how);
	return 0;
}
