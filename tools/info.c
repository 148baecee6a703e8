/* SPDX-License-Identifier: MIT */
/* safe_mr-info [--json] [--no-fabric] [--config] [--pid PID] [PATH...]:
 * what this machine does
 * with RDMA registrations of file-backed memory, in the spirit of
 * ibv_devinfo and fi_info.  The version; what the running kernel does with
 * file-backed registrations; each RDMA device and whether it has On-Demand
 * Paging for RC (what SAFE_MR_MODE=auto uses); whether io_uring is usable
 * for writeback; whether libfabric finds and applies the hook; and for each
 * PATH, whether a writable shared mapping of it would be shadowed, and why.
 * --config: the effective settings (cfgshow.c); --pid: is that process
 * protected (pidcheck.c).  Exit status: 0; 1 when a PATH or the process
 * could not be read, or the process is not protected; 2 for a usage
 * error. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include <safe_mr.h>

#include "cfgshow.h"
#include "devices.h"
#include "fabric_probe.h"
#include "fsclass.h"
#include "json.h"
#include "kprobe.h"
#include "paths.h"
#include "pidcheck.h"

#define MAX_DEVICES 64
#define NO_DEVICE_HINT "load the NIC's driver modules (ib_core, ib_uverbs and the " \
	"driver: mlx5_ib, irdma, efa, ...; rdma link), or, without an RDMA NIC, " \
	"Soft-RoCE: modprobe rdma_rxe; rdma link add rxe0 type rxe netdev eth0"

struct kernel {
	char release[65];
	int major, minor;
	const char *writable;	/* "silent-loss" or "efault" */
	const char *writable_text;
	const char *readonly;	/* PROT_READ mapping, read-only registration */
	const char *readonly_text;
	const char *source;	/* "probed on DEV" or "inferred from the version" */
	char probe_note[256];
};

static void kernel_facts(struct kernel *k, bool probe)
{
	static char source[320];
	struct utsname u;
	bool new_gup;
	const char *probed = NULL;
	char dev[256] = "not probed";

	memset(k, 0, sizeof(*k));
	if (uname(&u) == 0)
		snprintf(k->release, sizeof(k->release), "%s", u.release);
	if (sscanf(k->release, "%d.%d", &k->major, &k->minor) != 2)
		k->major = k->minor = 0;
	/* 6.5: "mm/gup: disallow FOLL_LONGTERM GUP-nonfast writing to
	 * file-backed mappings" (and its GUP-fast twin). */
	new_gup = k->major > 6 || (k->major == 6 && k->minor >= 5);
	if (probe) {
		probed = smt_kernel_probe("/var/tmp", dev, sizeof(dev));
		if (!probed && strstr(dev, "no writeback"))
			probed = smt_kernel_probe(".", dev, sizeof(dev));
	}
	if (probed) {
		new_gup = !strcmp(probed, "efault");
		snprintf(source, sizeof(source), "probed on %s", dev);
	} else {
		snprintf(source, sizeof(source), "inferred from the version");
		snprintf(k->probe_note, sizeof(k->probe_note), "%s", dev);
	}
	k->source = source;
	if (new_gup) {
		k->writable = "efault";
		k->writable_text = "refused with EFAULT (since 6.5): without safe_mr the "
				   "registration fails";
	} else {
		k->writable = "silent-loss";
		k->writable_text = "accepted but unsafe (before 6.5): what the NIC writes is "
				   "never marked dirty; msync/fsync return 0 and the disk keeps "
				   "the old data";
	}
	/* ib_umem_get asked FOLL_FORCE until 6.2. */
	if (k->major > 6 || (k->major == 6 && k->minor >= 2)) {
		k->readonly = "allowed";
		k->readonly_text = "allowed";
	} else {
		k->readonly = "efault";
		k->readonly_text = "refused with EFAULT for PROT_READ mappings (before 6.2); "
				   "safe_mr retries them shadowed";
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: safe_mr-info [--json] [--no-fabric] [--no-probe] [PATH...]\n"
		   "       safe_mr-info [--json] --config\n"
		   "       safe_mr-info [--json] --pid PID\n"
		   "  --json       machine-readable output\n"
		   "  --no-fabric  do not load libfabric to look for the hook\n"
		   "  --no-probe   do not register a file page to see what the kernel does\n"
		   "  --config     the effective SAFE_MR_* / FI_SAFE_MR_* settings, and warnings\n"
		   "  --pid PID    is that process protected?\n"
		   "  PATH         would a writable shared mapping of PATH be shadowed, and why\n"
		   "Exit status: 0; 1 when a PATH or the process cannot be read or the process\n"
		   "is not protected (--config: a value is not valid); 2 for a usage error.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "no-fabric", no_argument, NULL, 'n' },
		{ "no-probe", no_argument, NULL, 'P' },
		{ "config", no_argument, NULL, 'c' },
		{ "pid", required_argument, NULL, 'p' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct smt_device devs[MAX_DEVICES];
	char uring[256], hook_detail[512], provdir[PATH_MAX], caps[64];
	bool json = false, probe_fabric = true, probe_kernel = true, config = false, have_provdir;
	long pid = 0;
	char *end;
	enum smt_hook hook = SMT_HOOK_NO_SUPPORT;
	struct kernel k;
	struct smt_json j;
	int c, ndev, uring_err, status = 0;

	while ((c = getopt_long(argc, argv, "jnPcp:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'n':
			probe_fabric = false;
			break;
		case 'P':
			probe_kernel = false;
			break;
		case 'c':
			config = true;
			break;
		case 'p':
			pid = strtol(optarg, &end, 10);
			if (end == optarg || *end || pid <= 0 || pid > 1 << 30) {
				fprintf(stderr, "safe_mr-info: --pid=%s: a process ID\n", optarg);
				return 2;
			}
			break;
		case 'V':
			printf("safe_mr-info %s\n", SAFE_MR_VERSION_STRING);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}

	if (config || pid) {
		if (json) {
			smt_json_init(&j, stdout);
			smt_json_open(&j, NULL, '{');
			smt_json_str(&j, "version", SAFE_MR_VERSION_STRING);
		}
		if (config)
			status = smt_config_show(json ? &j : NULL) ? 1 : 0;
		if (pid) {
			int r = smt_pid_check((int)pid, json ? &j : NULL);

			status = status ? status : r ? 1 : 0;
		}
		if (json) {
			smt_json_close(&j, '}');
			putchar('\n');
		}
		return status;
	}

	kernel_facts(&k, probe_kernel);
	ndev = smt_devices(devs, MAX_DEVICES);
	uring_err = smt_io_uring(uring, sizeof(uring));
	have_provdir = smt_provider_dir(provdir, sizeof(provdir));
	hook_detail[0] = '\0';
	if (!probe_fabric) {
		snprintf(hook_detail, sizeof(hook_detail), "not probed (--no-fabric)");
	} else if (!have_provdir) {
		hook = SMT_HOOK_NOT_LOADED;
		snprintf(hook_detail, sizeof(hook_detail), "no libsafe_mr-fi.so next to this "
			 "program");
	} else {
		hook = smt_fabric_probe(provdir, hook_detail, sizeof(hook_detail));
	}

	if (json) {
		smt_json_init(&j, stdout);
		smt_json_open(&j, NULL, '{');
		smt_json_str(&j, "version", SAFE_MR_VERSION_STRING);
		smt_json_str(&j, "engine_version", safe_mr_version());
		smt_json_open(&j, "kernel", '{');
		smt_json_str(&j, "release", k.release);
		smt_json_str(&j, "writable_file_registration", k.writable);
		smt_json_str(&j, "fsdax_registration", "eopnotsupp");
		smt_json_str(&j, "readonly_file_registration", k.readonly);
		smt_json_str(&j, "source", k.source);
		smt_json_str(&j, "probe_note", k.probe_note[0] ? k.probe_note : NULL);
		smt_json_close(&j, '}');
		smt_json_str(&j, "devices_error", ndev < 0 ? strerror(-ndev) : NULL);
		smt_json_str(&j, "devices_hint", ndev <= 0 ? NO_DEVICE_HINT : NULL);
		smt_json_open(&j, "devices", '[');
		for (int i = 0; i < ndev && i < MAX_DEVICES; i++) {
			smt_json_open(&j, NULL, '{');
			smt_json_str(&j, "name", devs[i].name);
			smt_json_str(&j, "error", devs[i].error[0] ? devs[i].error : NULL);
			smt_json_bool(&j, "odp", devs[i].odp);
			smt_rc_caps_str(devs[i].rc_caps, caps, sizeof(caps));
			smt_json_str(&j, "odp_rc_caps", caps);
			smt_json_bool(&j, "odp_rc", devs[i].odp_rc);
			smt_json_str(&j, "mode_auto", devs[i].odp_rc ? "odp" : "bounce");
			smt_json_close(&j, '}');
		}
		smt_json_close(&j, ']');
		smt_json_open(&j, "io_uring", '{');
		smt_json_bool(&j, "usable", uring_err == 0);
		smt_json_str(&j, "detail", uring);
		smt_json_close(&j, '}');
		smt_json_open(&j, "libfabric", '{');
		smt_json_str(&j, "hook", probe_fabric ? smt_hook_name(hook) : "not-probed");
		smt_json_str(&j, "provider_dir", have_provdir ? provdir : NULL);
		smt_json_str(&j, "detail", hook_detail);
		smt_json_close(&j, '}');
		smt_json_open(&j, "paths", '[');
	} else {
		printf("safe_mr %s (engine %s)\n", SAFE_MR_VERSION_STRING, safe_mr_version());
		printf("kernel %s (%s%s%s):\n", k.release, k.source,
		       k.probe_note[0] ? ": " : "", k.probe_note);
		printf("  writable registration of a shared file mapping: %s\n", k.writable_text);
		printf("  registration of an fsdax file: refused with EOPNOTSUPP (every kernel)\n");
		printf("  read-only registration of a file mapping: %s\n", k.readonly_text);
		if (ndev < 0)
			printf("RDMA devices: error: %s\n  hint: %s\n", strerror(-ndev),
			       NO_DEVICE_HINT);
		else if (ndev == 0)
			printf("RDMA devices: none\n  hint: %s\n", NO_DEVICE_HINT);
		else
			printf("RDMA devices:\n");
		for (int i = 0; i < ndev && i < MAX_DEVICES; i++) {
			smt_rc_caps_str(devs[i].rc_caps, caps, sizeof(caps));
			if (devs[i].error[0])
				printf("  %s: %s\n", devs[i].name, devs[i].error);
			else if (devs[i].odp_rc)
				printf("  %s: On-Demand Paging for RC (%s): SAFE_MR_MODE=auto "
				       "registers file pages with ODP\n", devs[i].name, caps);
			else
				printf("  %s: no On-Demand Paging for RC%s%s%s: file pages are "
				       "shadowed\n", devs[i].name, caps[0] ? " (only " : "", caps,
				       caps[0] ? ")" : "");
		}
		printf("io_uring: %s\n", uring);
		if (probe_fabric)
			printf("libfabric hook: %s: %s\n", smt_hook_name(hook), hook_detail);
		else
			printf("libfabric hook: %s\n", hook_detail);
	}

	for (int i = optind; i < argc; i++) {
		struct smt_fsclass fc;
		int err = smt_classify(argv[i], &fc);

		if (err) {
			status = 1;
			fprintf(stderr, "safe_mr-info: %s: %s\n", argv[i], strerror(err));
		}
		if (json) {
			smt_json_open(&j, NULL, '{');
			smt_json_str(&j, "path", argv[i]);
			smt_json_str(&j, "kind", fc.kind);
			smt_json_str(&j, "filesystem", fc.fs);
			smt_json_int(&j, "fs_magic", fc.magic);
			smt_json_bool(&j, "dax", fc.dax);
			smt_json_bool(&j, "writable", fc.writable);
			smt_json_bool(&j, "shadowed", fc.shadowed);
			smt_json_str(&j, err ? "error" : "reason", fc.reason);
			smt_json_close(&j, '}');
		} else if (!err) {
			printf("%s: %s: %s\n", argv[i], fc.shadowed ? "shadowed" : "not shadowed",
			       fc.reason);
		}
	}
	if (json) {
		smt_json_close(&j, ']');
		smt_json_close(&j, '}');
	}
	return status;
}
