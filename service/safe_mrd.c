/* SPDX-License-Identifier: MIT */
/* safe_mrd: the node service of safe_mr (safe_mrd(8),
 * docs/safe_mrd-protocol.md).  The guardian of every process that connects,
 * living outside their jobs: a cgroup kill, an OOM group kill or the end of
 * a PID namespace kill the job and not us, and we write back what the dead
 * processes' shadows held.  One thread per connection: a stalled or hostile
 * client stalls only its own thread.  We never open a path of a client's;
 * we write only through the descriptors it passed (lib/guardcore.c checks
 * them). */
#define _GNU_SOURCE 1
#define SMG_GUARDIAN_SIDE 1
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "guard.h"
#include "guardcore.h"

size_t sm_page_size;		/* hash.c */

/* A connection that has not said what it is for within this time is
 * closed: it holds a thread and a place in the limits. */
#define HELLO_MS 10000

enum role { R_NEW, R_GUARD, R_WAIT, R_QUERY };

struct conn {
	struct conn *next;
	int sock;
	pid_t pid;		/* SO_PEERCRED, in our PID namespace */
	uid_t uid;
	enum role role;
	bool ended;		/* guard: the connection ended, writing back */
	struct smg_core core;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static struct conn *conns;
static unsigned int nconns;
static bool stopping;
static int level = 1;
static unsigned int max_conns = 4096, max_per_uid = 1024;

static void logf_(int lvl, const char *fmt, ...)
{
	char buf[600];
	va_list ap;
	int n;

	if (lvl > level)
		return;
	n = snprintf(buf, sizeof(buf), "safe_mrd: ");
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nowhere to say it */
	}
}

static void core_say(struct smg_core *c, int lvl, const char *msg)
{
	struct conn *k = c->user;

	logf_(lvl, "pid %d uid %u: %s", (int)k->pid, (unsigned)k->uid, msg);
}

/* The pid (in our namespace) a pidfd refers to: /proc/self/fdinfo says. */
static pid_t pidfd_pid(int fd)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if ((f = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	if (!(p = strstr(buf, "\nPid:")))
		return -1;
	return (pid_t)atoi(p + 5);
}

/* The first message: the role, and one descriptor (GM_WAIT, GM_QUERY).
 * False: nothing understandable within HELLO_MS. */
static bool first_message(int s, struct smg_msg *m, int *fd)
{
	struct iovec iov = { m, sizeof(*m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct pollfd p = { .fd = s, .events = POLLIN };
	ssize_t r;

	*fd = -1;
	if (poll(&p, 1, HELLO_MS) != 1)
		return false;
	do
		r = recvmsg(s, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	/* A failed recvmsg leaves the control buffer as it was: unread. */
	if (r < 0)
		return false;
	/* The buffer holds two descriptors (CMSG_SPACE rounds up): keep the
	 * first, close every other one, or each connection leaks one. */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int x;

				memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (*fd < 0)
					*fd = x;
				else
					close(x);
			}
	return r == sizeof(*m) && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
}

/* Connections of pid that still guard it (open, or writing back). */
static unsigned int guarding(pid_t pid)
{
	unsigned int n = 0;

	for (struct conn *k = conns; k; k = k->next)
		n += k->role == R_GUARD && k->pid == pid;
	return n;
}

static unsigned int live_guards(pid_t pid)
{
	unsigned int n = 0;

	for (struct conn *k = conns; k; k = k->next)
		n += k->role == R_GUARD && k->pid == pid && !k->ended &&
		     !atomic_load(&k->core.clean);
	return n;
}

static bool process_alive(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (stat(path, &st))
		return false;
	/* A zombie is dead for us: its descriptors are closed. */
	{
		char buf[512], *p;
		ssize_t n;
		int f = open(path, O_RDONLY | O_CLOEXEC);

		if (f < 0)
			return false;
		n = read(f, buf, sizeof(buf) - 1);
		close(f);
		if (n <= 0)
			return false;
		buf[n] = 0;
		p = strrchr(buf, ')');
		return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	}
}

static void guard(struct conn *k)
{
	uint32_t type;
	bool dead;

	smg_core_ack(&k->core, SMG_ACK);
	logf_(3, "pid %d uid %u: guarded", (int)k->pid, (unsigned)k->uid);
	while (smg_core_receive(&k->core, &type))
		if (type == GM_HELLO || type == GM_WAIT || type == GM_QUERY)
			logf_(1, "pid %d uid %u: %s again: ignored", (int)k->pid,
			      (unsigned)k->uid, "a first message");
	pthread_mutex_lock(&mu);
	k->ended = true;
	/* Our stop hung up on it: a live process is not written for (it goes
	 * on, and gets a new guardian at its next call); one that died
	 * meanwhile is. */
	dead = !stopping || !process_alive(k->pid);
	pthread_mutex_unlock(&mu);
	if (k->core.clean)
		logf_(3, "pid %d uid %u: clean exit", (int)k->pid, (unsigned)k->uid);
	else if (!dead)
		logf_(2, "pid %d uid %u: hung up by our stop, process alive: not written",
		      (int)k->pid, (unsigned)k->uid);
	else if (k->core.arena_fd >= 0)
		smg_core_recover(&k->core);
	smg_core_release(&k->core);
}

/* Wait until no connection guards pid; the waiter may give up (hang up). */
static void wait_for(struct conn *k, pid_t pid)
{
	pthread_mutex_lock(&mu);
	while (pid > 0 && guarding(pid)) {
		struct timespec t;
		struct pollfd p = { .fd = k->sock, .events = POLLRDHUP };

		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_sec += 1;
		pthread_cond_timedwait(&changed, &mu, &t);
		if (poll(&p, 1, 0) == 1)
			break;	/* the waiter went away */
	}
	pthread_mutex_unlock(&mu);
	smg_core_ack(&k->core, SMG_ACK);
}

/* Closed under the lock: the stop's shutdown never meets a reused
 * descriptor number. */
static void unlink_conn(struct conn *k)
{
	pthread_mutex_lock(&mu);
	for (struct conn **pp = &conns; *pp; pp = &(*pp)->next)
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	if (k->sock >= 0)
		close(k->sock);
	k->sock = -1;
	nconns--;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&mu);
}

static void *conn_main(void *arg)
{
	struct conn *k = arg;
	struct smg_msg m;
	int fd = -1;

	if (!first_message(k->sock, &m, &fd)) {
		logf_(2, "pid %d uid %u: no first message of the protocol: hung up", (int)k->pid,
		      (unsigned)k->uid);
	} else if (m.type == GM_HELLO && m.slot != SMD_VERSION) {
		logf_(1, "pid %d uid %u: protocol version %u not served (we speak %d)",
		      (int)k->pid, (unsigned)k->uid, m.slot, SMD_VERSION);
		smg_core_ack(&k->core, SMD_NACK);
	} else if (m.type == GM_HELLO) {
		pthread_mutex_lock(&mu);
		k->role = R_GUARD;
		pthread_mutex_unlock(&mu);
		guard(k);
	} else if (m.type == GM_WAIT || m.type == GM_QUERY) {
		pid_t pid = fd >= 0 ? pidfd_pid(fd) : -1;

		pthread_mutex_lock(&mu);
		k->role = m.type == GM_WAIT ? R_WAIT : R_QUERY;
		pthread_mutex_unlock(&mu);
		if (m.type == GM_WAIT) {
			wait_for(k, pid);
		} else {
			struct smg_msg a = { GM_QUERY, 0 };

			pthread_mutex_lock(&mu);
			a.slot = pid > 0 ? live_guards(pid) : 0;
			pthread_mutex_unlock(&mu);
			send(k->sock, &a, sizeof(a), MSG_NOSIGNAL | MSG_DONTWAIT);
		}
	} else {
		logf_(1, "pid %d uid %u: first message %u is none of the protocol's: hung up",
		      (int)k->pid, (unsigned)k->uid, m.type);
	}
	if (fd >= 0)
		close(fd);
	unlink_conn(k);
	free(k);
	return NULL;
}

static void accept_one(int lfd)
{
	struct ucred cr;
	socklen_t n = sizeof(cr);
	pthread_attr_t at;
	pthread_t t;
	unsigned int same = 0;
	struct conn *k;
	int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (s < 0) {
		/* Out of descriptors or memory: the connection stays queued and
		 * the socket readable; without a pause the loop would spin. */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			poll(NULL, 0, 100);
		return;
	}
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &n) || !(k = calloc(1, sizeof(*k)))) {
		close(s);
		return;
	}
	k->sock = s;
	k->pid = cr.pid;
	k->uid = cr.uid;
	smg_core_init(&k->core, s, level, core_say, k);
	pthread_mutex_lock(&mu);
	for (struct conn *o = conns; o; o = o->next)
		same += o->uid == cr.uid;
	if (nconns >= max_conns || same >= max_per_uid) {
		pthread_mutex_unlock(&mu);
		logf_(0, "pid %d uid %u: refused: %u connections (%u of this user) already",
		      (int)cr.pid, (unsigned)cr.uid, nconns, same);
		close(s);
		free(k);
		return;
	}
	k->next = conns;
	conns = k;
	nconns++;
	pthread_mutex_unlock(&mu);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 << 10);
	if (pthread_create(&t, &at, conn_main, k)) {
		logf_(0, "pid %d: no thread for it: hung up", (int)cr.pid);
		unlink_conn(k);
		free(k);
	}
	pthread_attr_destroy(&at);
}

/* ---------------------------------------------------------------- setup */

static int listen_on(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char dir[sizeof(a.sun_path)], *slash;
	struct stat st;
	int s;

	if (strlen(path) >= sizeof(a.sun_path)) {
		logf_(0, "socket path too long: %s", path);
		return -1;
	}
	strcpy(a.sun_path, path);
	strcpy(dir, path);
	if ((slash = strrchr(dir, '/')) && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) && errno != EEXIST) {
			logf_(0, "cannot create %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	if (lstat(path, &st) == 0) {
		int t = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		bool taken = S_ISSOCK(st.st_mode) &&
			     connect(t, (struct sockaddr *)&a, sizeof(a)) == 0;

		close(t);
		if (!S_ISSOCK(st.st_mode) || taken) {
			logf_(0, "%s: %s", path, taken ? "another safe_mrd listens there" :
			      "exists and is not a socket");
			close(s);
			return -1;
		}
		unlink(path);	/* a stale socket of an earlier run */
	}
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || chmod(path, 0666) ||
	    listen(s, SOMAXCONN)) {
		logf_(0, "cannot listen on %s: %s", path, strerror(errno));
		close(s);
		return -1;
	}
	return s;
}

/* systemd socket activation (sd_listen_fds(3), done by hand): fd 3. */
static int activated(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int type = 0;
	socklen_t n = sizeof(type);

	if (!pid || !fds || atoi(pid) != getpid() || atoi(fds) < 1)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &n) || type != SOCK_SEQPACKET) {
		logf_(0, "the socket systemd passed is not SOCK_SEQPACKET "
		      "(ListenSequentialPacket= in safe_mrd.socket)");
		return -2;
	}
	fcntl(3, F_SETFD, FD_CLOEXEC);
	return 3;
}

/* Root without capabilities: writing through passed descriptors needs
 * none, and without CAP_FSETID and CAP_SYS_RESOURCE our writes clear
 * set-user-ID bits and obey quotas as the client's own would. */
static int drop_privileges(const char *user)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (user) {
		struct passwd *pw = getpwnam(user);

		if (!pw || setgroups(0, NULL) || setgid(pw->pw_gid) || setuid(pw->pw_uid)) {
			logf_(0, "cannot become user %s: %s", user, pw ? strerror(errno) :
			      "no such user");
			return -1;
		}
	}
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capset, &h, d) && geteuid() == 0) {
		logf_(0, "cannot drop capabilities: %s", strerror(errno));
		return -1;
	}
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: safe_mrd [--foreground | --daemon] [--socket PATH] [--pidfile PATH]\n"
		"                [--user USER] [--log-level error|warn|info|debug]\n"
		"                [--max-clients N] [--max-per-user N]\n"
		"  default socket %s; under systemd socket activation the passed socket\n",
		SMD_DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "daemon", no_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "user", required_argument, NULL, 'u' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "max-clients", required_argument, NULL, 'm' },
		{ "max-per-user", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	const char *path = SMD_DEFAULT_SOCKET, *pidfile = NULL, *user = NULL;
	bool daemonize = false, own_socket = false;
	int lfd, sfd, ready[2] = { -1, -1 }, o;
	sigset_t set;
	struct rlimit rl;

	while ((o = getopt_long(argc, argv, "fds:p:u:l:m:M:h", opts, NULL)) != -1) {
		switch (o) {
		case 'f': daemonize = false; break;
		case 'd': daemonize = true; break;
		case 's': path = optarg; break;
		case 'p': pidfile = optarg; break;
		case 'u': user = optarg; break;
		case 'l':
			level = -1;
			for (int i = 0; i < 4; i++)
				if (!strcmp(optarg, levels[i]))
					level = i;
			if (level < 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'm': max_conns = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'M': max_per_uid = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	sm_page_size = (size_t)sysconf(_SC_PAGESIZE);
	/* The jobs' signals are not for us; SIGTERM and SIGINT stop us
	 * (read from a signalfd, in the main loop). */
	{
		static const int ign[] = { SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU,
					   SIGUSR1, SIGUSR2, SIGALRM, SIGXFSZ };

		for (size_t i = 0; i < sizeof(ign) / sizeof(ign[0]); i++)
			signal(ign[i], SIG_IGN);
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	/* One descriptor per guarded file of every client. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	lfd = activated();
	if (lfd == -2)
		return 1;
	if (lfd < 0) {
		lfd = listen_on(path);
		own_socket = true;
	}
	if (lfd < 0 || sfd < 0)
		return 1;
	if (daemonize) {
		pid_t p;
		char c;

		if (pipe2(ready, O_CLOEXEC) || (p = fork()) < 0)
			return 1;
		if (p > 0) {
			close(ready[1]);
			_exit(read(ready[0], &c, 1) == 1 ? 0 : 1);
		}
		close(ready[0]);
		setsid();
		if ((p = fork()) < 0)
			_exit(1);
		if (p > 0)
			_exit(0);
		{
			int nul = open("/dev/null", O_RDWR);

			if (nul >= 0) {
				dup2(nul, STDIN_FILENO);
				dup2(nul, STDOUT_FILENO);
				if (nul > 2)
					close(nul);
			}
		}
	}
	if (chdir("/"))
		return 1;
	if (pidfile) {
		FILE *f = fopen(pidfile, "we");

		if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f)) {
			logf_(0, "cannot write %s", pidfile);
			return 1;
		}
	}
	if (drop_privileges(user))
		return 1;
	logf_(2, "serving %s (protocol %d)", own_socket ? path : "the socket systemd passed",
	      SMD_VERSION);
	if (ready[1] >= 0) {
		if (write(ready[1], "", 1) != 1)
			return 1;
		close(ready[1]);
	}
	for (;;) {
		struct pollfd p[2] = { { .fd = lfd, .events = POLLIN },
				       { .fd = sfd, .events = POLLIN } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN)
			accept_one(lfd);
	}
	/* Stop: no new client; finish writing back for those that died; hang
	 * up on live ones (they get a new guardian at their next call: the
	 * service again once it is back, or their own). */
	close(lfd);
	if (own_socket)
		unlink(path);
	pthread_mutex_lock(&mu);
	stopping = true;
	logf_(2, "stopping: %u connections", nconns);
	for (struct conn *k = conns; k; k = k->next)
		if (!k->ended && k->role != R_WAIT)
			shutdown(k->sock, SHUT_RDWR);
	while (nconns)
		pthread_cond_wait(&changed, &mu);
	pthread_mutex_unlock(&mu);
	if (pidfile)
		unlink(pidfile);
	logf_(2, "stopped");
	return 0;
}
