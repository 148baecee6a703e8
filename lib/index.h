/* SPDX-License-Identifier: MIT */
/* The engine's indexes: an interval tree (chunks by address range) and an
 * intrusive hash table (files by identity, holds by owner).  Nodes live
 * inside the indexed objects: no allocation on insert except the hash
 * table's growth, which may fail without harm (longer chains).
 *
 * Lock-free reads.  A signal handler that interrupted the engine on the
 * same thread (the writer is frozen) may read an index.  Each index has a
 * sequence count that is odd while a change is under way; the stores of a
 * change are ordered against it by compiler fences (same thread: no CPU
 * fence needed).  The *_reentered() readers answer -1 when they find it
 * odd: the caller cannot tell, and treats the range as shadowed. */
#ifndef SM_INDEX_H
#define SM_INDEX_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- interval tree: a treap keyed by (start, node address), each node
 * holding the largest end in its subtree.  Expected O(log n) insert,
 * remove and lookup; intervals may overlap and repeat. */
struct sm_inode {
	struct sm_inode *l, *r;
	uintptr_t start, end;	/* [start, end), start < end; fixed while linked */
	uintptr_t max;		/* largest end in this subtree */
	uint64_t prio;		/* heap order: a hash of the node's address */
};

struct sm_itree {
	struct sm_inode *root;
	size_t n;
	_Atomic unsigned int seq;	/* odd while changing */
};

void sm_itree_insert(struct sm_itree *t, struct sm_inode *x);
void sm_itree_remove(struct sm_itree *t, struct sm_inode *x);
/* The node with the lowest (start, address) overlapping [s, e), or NULL. */
struct sm_inode *sm_itree_first(const struct sm_itree *t, uintptr_t s, uintptr_t e);
/* The next one after x (still linked) in that order, or NULL. */
struct sm_inode *sm_itree_next(const struct sm_itree *t, const struct sm_inode *x, uintptr_t s,
			       uintptr_t e);
/* From a signal handler that interrupted a change on this thread: does
 * something overlap [s, e)?  1, 0, or -1 (mid-change: cannot tell). */
int sm_itree_reentered_any(const struct sm_itree *t, uintptr_t s, uintptr_t e);

/* ---- hash table: chained, power-of-two buckets, grows at load 1. */
struct sm_hnode {
	struct sm_hnode *next;
	uint64_t key;
};

#define SM_HMAP_SMALL 8
struct sm_hmap {
	struct sm_hnode **b;	/* buckets: `small` until the first growth */
	size_t mask, n;
	_Atomic unsigned int seq;	/* odd while changing */
	struct sm_hnode *small[SM_HMAP_SMALL];
};

void sm_hmap_insert(struct sm_hmap *m, struct sm_hnode *x, uint64_t key);
void sm_hmap_remove(struct sm_hmap *m, struct sm_hnode *x);
/* Nodes with this key: the first, then the next after x. */
struct sm_hnode *sm_hmap_first(const struct sm_hmap *m, uint64_t key);
struct sm_hnode *sm_hmap_next(const struct sm_hnode *x);
/* Like sm_hmap_first from a signal handler: NULL with *busy set when the
 * table was mid-change. */
struct sm_hnode *sm_hmap_first_reentered(const struct sm_hmap *m, uint64_t key, int *busy);
/* Forget every node (their memory is the caller's); free the buckets. */
void sm_hmap_reset(struct sm_hmap *m);

/* A 64-bit mix (splitmix64's finaliser), for keys made of several fields. */
static inline uint64_t sm_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

#endif
