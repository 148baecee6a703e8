/* SPDX-License-Identifier: MIT */
/* exec is a sync point.  An unmodified program registers a file mapping,
 * the (fake) NIC writes page 0, and the program execs a new image of
 * itself that writes page 0 with pwrite + fdatasync and exits.  The file
 * must end with the new image's bytes: the old image's shadow is written
 * back and its guardian told before the exec, so the guardian (stopped by
 * the test across the exec, as a loaded machine may stall it) writes
 * nothing after the new image did.  0.2.0 let the guardian write the old
 * shadow over the new image's durable write.
 *
 *   exec_sync ok     the above
 *   exec_sync fail   the exec fails (no such file): the program goes on,
 *                    guarded again; killed, its shadow reaches the file
 *
 * The test process is a child subreaper, so the guardian (an orphan by
 * its double fork) is its child: it can stop, continue and reap it. */
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "verbs_util.h"
#include "../guardian_procs.h"

static pid_t wait_guardian(void)
{
	pid_t g = smt_guardian_wait_for(getpid(), 0);

	if (!g)
		die("no guardian for the program");
	return g;
}

static int reap(pid_t g)
{
	int r = smt_guardian_reap(g);

	if (r < 0)
		die("the guardian did not end");
	return r;
}

typedef int (*nic_write_fn)(struct ibv_mr *, size_t, const void *, size_t);




/* The new image: write page 0 durably, as any program would. */
static int new_image(const char *path)
{
	int fd = open(path, O_RDWR);

	if (fd < 0 || pwrite(fd, "written by the new image", 24, 0) != 24 || fdatasync(fd))
		die("new image: %s", strerror(errno));
	close(fd);
	return 0;
}

/* The program: register, the NIC writes, tell the test, wait, exec. */
static void program(const char *self, const char *path, int fd, bool fail, int up, int down)
{
	size_t len = PAGES * page_size();
	nic_write_fn nic_write = (nic_write_fn)dlsym(RTLD_DEFAULT, "fake_nic_write");
	struct ibv_pd *pd = open_pd();
	char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct ibv_mr *mr;
	char c;

	if (!nic_write || map == MAP_FAILED)
		die("fake_nic_write or mmap");
	mr = ibv_reg_mr(pd, map, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr || nic_write(mr, 0, "written by the old image", 24))
		die("registration or NIC write: %s", strerror(errno));
	if (write(up, "r", 1) != 1 || read(down, &c, 1) != 1)
		die("pipe");
	if (fail) {
		execl("/nonexistent/safe_mr-exec", "x", (char *)NULL);
		if (errno != ENOENT)
			die("exec of nothing: %s, want ENOENT", strerror(errno));
		if (write(up, "f", 1) != 1)
			die("pipe");
		for (;;)
			pause();	/* killed: the new guardian writes page 0 */
	}
	execl(self, self, "new-image", path, (char *)NULL);
	die("exec: %s", strerror(errno));
}

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
	pthread_t th;
	bool fail = argc > 1 && !strcmp(argv[1], "fail");
	int up[2], down[2], fd, st, gst;
	char path[4096], c;
	pid_t t, g;

	if (argc == 3 && !strcmp(argv[1], "new-image"))
		return new_image(argv[2]);
	if (argc != 2 || (strcmp(argv[1], "ok") && !fail))
		die("usage: exec_sync ok|fail");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) || pipe(up) || pipe(down))
		die("setup: %s", strerror(errno));
	fd = make_file(path, sizeof(path));
	t = fork();
	if (t < 0)
		die("fork");
	if (t == 0) {
		close(up[0]);
		close(down[1]);
		program(argv[0], path, fd, fail, up[1], down[0]);
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], &c, 1) != 1)
		die("the program did not register");
	g = wait_guardian();
	if (fail) {
		if (write(down[1], "g", 1) != 1 || read(up[0], &c, 1) != 1 || c != 'f')
			die("the program did not survive its failed exec");
		/* Guarded again: a guardian (the old one ended at the exec). */
		if (reap(g) != 0)
			die("the old guardian did not take the clean word");
		g = wait_guardian();
		kill(t, SIGKILL);
		if (waitpid(t, &st, 0) != t)
			die("waitpid");
		gst = reap(g);
		if (gst != 3)
			die("the new guardian ended with %d, want 3 (wrote back)", gst);
		expect_pread(fd, 0, "written by the old image", "after the failed exec and a kill");
		printf("ok: a failed exec leaves the program guarded\n");
	} else {
		/* Stalled across the exec, as on a loaded node, and let go
		 * later: the new image has written by then (this waitpid
		 * itself waits for the guardian under the preload). */
		kill(g, SIGSTOP);
		stopped = g;
		if (write(down[1], "g", 1) != 1 || pthread_create(&th, NULL, let_go, NULL))
			die("pipe or thread");
		if (waitpid(t, &st, 0) != t || !WIFEXITED(st) || WEXITSTATUS(st))
			die("the new image failed (status %#x)", st);
		pthread_join(th, NULL);
		gst = reap(g);
		expect_pread(fd, 0, "written by the new image", "after the exec");
		if (gst != 0)
			die("the guardian ended with %d, want 0 (told before the exec)", gst);
		printf("ok: the old image's guardian wrote nothing after the exec\n");
	}
	close(fd);
	unlink(path);
	return 0;
}
