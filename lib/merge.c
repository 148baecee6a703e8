/* SPDX-License-Identifier: MIT */
/* Three-way merge of one page against concurrent writers.
 *
 * Used where the engine swaps a mapping while other threads may be writing
 * it: shadowing (writes that reached the file after it was read but before
 * the swap) and restoring (writes that reached the shadow after it was
 * written back but before the file came back).  Each word is replaced with
 * a compare-and-swap, so a store that races the merge is never lost: the
 * CAS fails and the word is merged again with that store in it. */
#include "shadow.h"

/* 0xff in each byte of x that is not zero. */
static inline uint64_t nonzero_bytes(uint64_t x)
{
	x |= x >> 4;
	x |= x >> 2;
	x |= x >> 1;
	return (x & 0x0101010101010101ull) * 0xff;
}

static inline uint64_t merge_word(uint64_t live, uint64_t base, uint64_t theirs)
{
	uint64_t take = nonzero_bytes(theirs ^ base) & ~nonzero_bytes(live ^ base);

	return (live & ~take) | (theirs & take);
}

void sm_merge_page(uint8_t *live, const uint8_t *base, const uint8_t *theirs)
{
	uint64_t *l = (uint64_t *)live;
	const uint64_t *b = (const uint64_t *)base, *t = (const uint64_t *)theirs;

	for (size_t w = 0; w < sm_page_size / sizeof(uint64_t); w++) {
		uint64_t cur, want;

		if (b[w] == t[w])
			continue;
		cur = __atomic_load_n(&l[w], __ATOMIC_RELAXED);
		do {
			want = merge_word(cur, b[w], t[w]);
			if (want == cur)
				break;
		} while (!__atomic_compare_exchange_n(&l[w], &cur, want, false, __ATOMIC_SEQ_CST,
						      __ATOMIC_RELAXED));
	}
}
