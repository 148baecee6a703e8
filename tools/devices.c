/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <infiniband/verbs.h>
#include <liburing.h>

#include "devices.h"

/* The RC capabilities SAFE_MR_MODE=auto requires (lib/reg.c). */
#define ODP_RC_NEEDED (IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_WRITE | \
		       IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_ATOMIC)

void smt_rc_caps_str(unsigned int caps, char *out, size_t n)
{
	static const struct { unsigned int bit; const char *name; } names[] = {
		{ IBV_ODP_SUPPORT_SEND, "send" }, { IBV_ODP_SUPPORT_RECV, "recv" },
		{ IBV_ODP_SUPPORT_WRITE, "write" }, { IBV_ODP_SUPPORT_READ, "read" },
		{ IBV_ODP_SUPPORT_ATOMIC, "atomic" },
	};
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((caps & names[i].bit) && len < n)
			len += (size_t)snprintf(out + len, n - len, "%s%s", len ? " " : "",
						names[i].name);
}

int smt_devices(struct smt_device *d, int max)
{
	struct ibv_device **list;
	int num = 0;

	errno = 0;
	list = ibv_get_device_list(&num);
	if (!list)
		return errno ? -errno : -ENODEV;
	for (int i = 0; i < num && i < max; i++) {
		struct ibv_device_attr_ex attr;
		struct ibv_context *ctx;

		memset(&d[i], 0, sizeof(d[i]));
		snprintf(d[i].name, sizeof(d[i].name), "%s", ibv_get_device_name(list[i]));
		ctx = ibv_open_device(list[i]);
		if (!ctx) {
			snprintf(d[i].error, sizeof(d[i].error), "cannot open: %s",
				 strerror(errno));
			continue;
		}
		memset(&attr, 0, sizeof(attr));
		if (ibv_query_device_ex(ctx, NULL, &attr)) {
			snprintf(d[i].error, sizeof(d[i].error), "cannot query: %s",
				 strerror(errno));
		} else {
			d[i].odp = attr.odp_caps.general_caps & IBV_ODP_SUPPORT;
			d[i].rc_caps = d[i].odp ? attr.odp_caps.per_transport_caps.rc_odp_caps : 0;
			d[i].odp_rc = d[i].odp && (d[i].rc_caps & ODP_RC_NEEDED) == ODP_RC_NEEDED;
		}
		ibv_close_device(ctx);
	}
	ibv_free_device_list(list);
	return num;
}

int smt_io_uring(char *detail, size_t n)
{
	struct io_uring ring;
	FILE *f;
	int ret = io_uring_queue_init(2, &ring, 0);

	if (ret < 0) {
		int disabled = -1;

		f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
		if (f) {
			if (fscanf(f, "%d", &disabled) != 1)
				disabled = -1;
			fclose(f);
		}
		if (disabled > 0)
			snprintf(detail, n, "not usable: %s (kernel.io_uring_disabled=%d); "
				 "writeback uses pwrite", strerror(-ret), disabled);
		else
			snprintf(detail, n, "not usable: %s; writeback uses pwrite",
				 strerror(-ret));
		return -ret;
	}
	io_uring_queue_exit(&ring);
	snprintf(detail, n, "usable (SAFE_MR_WRITEBACK=auto uses it for O_DIRECT descriptors)");
	return 0;
}
