/* SPDX-License-Identifier: MIT */
/* Wire format shared by blockd (server) and blockc (client). */
#ifndef BLOCKD_PROTO_H
#define BLOCKD_PROTO_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define BD_BLOCK 4096u
#define BD_PORT 18515
#define BD_MAGIC 0x626c6f636b640001ull
#define BD_DEADLINE_S 20	/* default bound on any wait for the peer */

/* In the accept's private data: where the exported file lives. */
struct bd_hello {
	uint64_t addr;		/* server buffer = file offset 0 */
	uint64_t nblocks;
	uint32_t rkey;
	uint32_t block;		/* BD_BLOCK */
};

enum { BD_COMMIT = 1, BD_REPLY = 2 };

/* Commit: make blocks [first, first+count) durable; the reply carries the
 * same seq and 0 or an errno. */
struct bd_msg {
	uint32_t type;
	uint32_t status;
	uint64_t seq;
	uint64_t first;
	uint64_t count;
};

/* A verifiable block: header, then bytes derived from it, checksummed. */
struct bd_block_hdr {
	uint64_t magic;
	uint64_t block;
	uint64_t gen;
	uint64_t client;
	uint64_t sum;		/* FNV-1a of the rest of the block */
};

static inline uint64_t bd_fnv(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static inline void bd_fill(void *buf, uint64_t block, uint64_t gen, uint64_t client)
{
	struct bd_block_hdr *h = buf;
	unsigned char *p = buf;
	uint64_t x = block * 0x9e3779b97f4a7c15ull ^ gen * 0xbf58476d1ce4e5b9ull ^ client;

	for (size_t i = sizeof(*h); i < BD_BLOCK; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		p[i] = (unsigned char)x;
	}
	h->magic = BD_MAGIC;
	h->block = block;
	h->gen = gen;
	h->client = client;
	h->sum = bd_fnv(p + sizeof(*h), BD_BLOCK - sizeof(*h));
}

/* 0: a whole, valid block; its header in *out. */
static inline int bd_check(const void *buf, uint64_t block, struct bd_block_hdr *out)
{
	const struct bd_block_hdr *h = buf;
	unsigned char want[BD_BLOCK];

	memcpy(out, h, sizeof(*h));
	if (h->magic != BD_MAGIC || h->block != block)
		return -1;
	bd_fill(want, h->block, h->gen, h->client);
	return memcmp(want, buf, BD_BLOCK) ? -1 : 0;
}

/* Monotonic milliseconds: deadlines and log timestamps. */
static inline int64_t bd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* stderr line with a monotonic timestamp (seconds.millis), so the logs of
 * the server and its clients can be merged when a run stalls. */
__attribute__((format(printf, 1, 2)))
static inline void bd_log(const char *fmt, ...)
{
	int64_t t = bd_now_ms();
	va_list ap;

	fprintf(stderr, "[%lld.%03lld] ", (long long)(t / 1000), (long long)(t % 1000));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

#endif
