/* SPDX-License-Identifier: MIT */
/* Page hash for change detection.  A NIC's DMA leaves no dirty bit in the
 * page tables, so the only way to know what a registration changed is to
 * compare contents: a 64-bit hash per page (xxh64-style, four independent
 * lanes so it runs at memory speed) taken when the shadow is filled. */
#include "internal.h"

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL

typedef uint64_t __attribute__((may_alias)) u64_alias;

static inline uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t round1(uint64_t acc, uint64_t in)
{
	return rotl(acc + in * P2, 31) * P1;
}

static inline uint64_t merge(uint64_t h, uint64_t v)
{
	return (h ^ round1(0, v)) * P1 + P4;
}

uint64_t sm_page_hash(const void *page)
{
	const u64_alias *p = page;
	size_t n = sm_page_size / sizeof(uint64_t);
	uint64_t a = P1 + P2, b = P2, c = 0, d = 0 - P1;
	uint64_t h;

	for (size_t i = 0; i < n; i += 4) {
		a = round1(a, p[i]);
		b = round1(b, p[i + 1]);
		c = round1(c, p[i + 2]);
		d = round1(d, p[i + 3]);
	}
	h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
	h = merge(merge(merge(merge(h, a), b), c), d);
	h += sm_page_size;
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}
