/* SPDX-License-Identifier: MIT */
/* The reference model: what each file holds, which pages are shadowed and
 * with what, which MR pins what.  Everything the README's coherence model
 * predicts is computed here; model.c runs the operations and compares. */
#ifndef MODEL_STATE_H
#define MODEL_STATE_H

#include "model.h"

#define NG (MAXP0 + MAXPG)	/* pages of the region: file 0 then file 1 */
#define MAXP0 8

extern const int maxp[NF], gbase[NF];

/* A shadow page as the engine should have it. */
struct shadow {
	bool live;
	int f, fp;
	uint64_t serial;	/* identity: never reused */
	bool mapped;		/* at its address (else detached: munmap/mremap) */
	int refs;		/* writable MRs pinning it */
	bool maybe;		/* dirty or not, we cannot tell (a race or a failed
				 * writeback): the file page is unknown until the next
				 * writeback of it, which must write it */
	bool force;		/* must be rewritten (a durable writeback of its file failed) */
	bool unsynced;		/* written back since its file's last good flush */
	bool unsynced_maybe;	/* ... or not: it was "maybe" (the engine may have
				 * found it clean and written nothing) */
	bool cut;		/* wholly past a truncate of its file: the engine
				 * counts it as written if a sync point saw the
				 * shrink, else writes it if dirty (FINDINGS.md) */
	bool wb_open;		/* its next writeback may or may not write it: a
				 * twin was written while this one was pending
				 * (FINDINGS.md item 8), the file page is open */
	uint8_t *content, *base; /* now; as last read from / written to the file */
};

struct mfile {
	char path[600];
	int fd, dfd;		/* ours (buffered) and O_DIRECT */
	size_t size;
	uint8_t *data;		/* maxp*PS bytes; zero past size */
	bool unk[MAXPG];	/* page content unknown (see shadow.maybe) */
	int poisoned[MAXPG];	/* 0, or 1 + the shadow that owes the rewrite */
};

struct gpage {
	bool mapped;
	int sh;			/* shadow index, -1: the file page */
};

struct mmr {
	bool live;
	struct ibv_mr *mr;
	uintptr_t addr;
	size_t len;
	unsigned int access;
	bool writable;
	int g0, np;		/* region pages covered */
	int pin[NG + 2];	/* writable: shadow index */
	uint64_t pin_id[NG + 2]; /* the identity pinned (see page_id) */
};

extern struct shadow shs[NSH];
extern struct mfile mf[NF];
extern struct gpage pg[NG];
extern struct mmr mrs[NMR];
extern uint8_t *region;

static inline int g_file(int g) { return g < MAXP0 ? 0 : 1; }
static inline int g_fp(int g) { return g - gbase[g_file(g)]; }
static inline uint8_t *g_addr(int g) { return region + (size_t)g * PS; }
static inline int gpage_of(uintptr_t a)
{
	return a < (uintptr_t)region ? -1 : (int)((a - (uintptr_t)region) / PS);
}

/* Identity of what is at page g now: UINT64_MAX unmapped, 0 the file page,
 * else the shadow's serial. */
uint64_t page_id(int g);
bool sh_dirty(const struct shadow *s);
int sh_new(int f, int fp);
void sh_kill(int i);
/* Expected byte of the CPU's view at page g offset o; false if not
 * predictable (past EOF of a file page, unknown page). */
bool view_byte(int g, size_t o, uint8_t *b);

/* Write back the selected shadows as the engine does (dirty ones, within
 * EOF); files in `hit` had an injected failure during the call: their
 * selected dirty pages become "maybe". */
void model_wb(const int *sel, int n, const bool hit[NF]);
/* The end of a durable writeback of file f (or a real fsync): ok, every
 * page written since the last good flush is on disk; else the engine owes
 * a rewrite of each of them; `lost`: the flush itself failed, the kernel
 * may have dropped them (simulated with --enable=fsyncgate). */
void model_flushed(int f, bool ok, bool lost);
/* A flush of file f may or may not have happened. */
void model_flush_unsure(int f);
/* Release one reference of shadow i (dereg); restore when none left. */
void sh_unref(int i);

/* Checks: exit(1) with a report on divergence. */
void check_page(int g);
void check_pages(int g0, int n);
void check_all(void);
void check_file(int f);

#endif
