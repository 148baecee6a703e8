/* SPDX-License-Identifier: MIT */
/*
 * The random-operation model test (in the spirit of xfstests' fsx): a
 * seeded stream of operations on file mappings registered through the C
 * API, against a reference model of every file's content under the
 * README's coherence model.  Shared declarations.
 */
#ifndef MODEL_H
#define MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <infiniband/verbs.h>
#include "safe_mr.h"
#include "fake_nic.h"

#define NF 2			/* files, mapped side by side */
#define MAXPG 72		/* pages of the largest file */
#define NMR 8			/* live MRs at most */
#define NSH 256			/* shadow pages at most (model) */

/* Every byte of file f has (b & 3) == f + 1; zeros are holes or past EOF;
 * (b & 3) == 3 is the poison the error injector leaves where a failed
 * flush "lost" pages.  So "another file's data" is visible in any byte. */
static inline uint8_t tag_byte(uint32_t r, int f) { return (uint8_t)((r & 0xfc) | (uint32_t)(f + 1)); }
static inline uint8_t poison_byte(size_t pos) { return (uint8_t)(((pos * 37u + 11u) & 0xfc) | 3u); }

/* Operation classes that find known defects of issue 8 are gated until
 * the engine fixes them (--enable=race,...): see tests/model/FINDINGS.md. */
enum {
	GATE_RACE = 1 << 0,	  /* CPU writes from a 2nd thread during reg/dereg (3, 4) */
	GATE_FAILED_UNMAP = 1 << 1, /* munmap/mremap calls that fail (5) */
	GATE_MREMAP = 1 << 2,	  /* mremap moves of shadowed ranges (5, 11) */
	GATE_FSYNCGATE = 1 << 3,  /* a failed flush loses every page since the last good one (6) */
	GATE_STRICT_ERR = 1 << 6, /* every injected error surfaces at the call (13) */
};

struct opts {
	uint64_t seed;
	unsigned long ops;	/* operations in all */
	unsigned long epoch;	/* operations per process (exit/_exit between) */
	unsigned int gates;
	bool errors;		/* inject EIO/ENOSPC (seccomp user notification) */
	long drop_nic;		/* negative control: drop the Nth NIC write (-1: off) */
	bool verbose;
	const char *dir;
	const char *enable;	/* as given, for the reproduction line */
};
extern struct opts opt;

/* ---- pseudo-random numbers (xoshiro256**): one stream per seed ---- */
uint64_t rnd(void);
void rnd_seed(uint64_t s);
static inline uint32_t rn(uint32_t n) { return n ? (uint32_t)(rnd() % n) : 0; }
static inline bool chance(uint32_t pct) { return rn(100) < pct; }

/* ---- the run (model.c) ---- */
extern size_t PS;
/* Run one epoch: `ops` operations in a fresh process state, then exit()
 * or _exit(); writes the expected file images for the parent to check. */
void model_epoch(unsigned long first_op, unsigned long ops, int epoch);
/* The parent's side: check the files against the images (O_DIRECT). */
int model_check_images(int epoch);
void model_create_files(void);

/* Reports a divergence: prints the op number and what differs, exits 1. */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern unsigned long cur_op;

/* ---- error injection (inject.c) ---- */
/* Install the seccomp filter and start the supervisor process.  0 or errno. */
int inj_start(const dev_t dev, const ino_t ino[NF], const int model_fd[NF]);
/* Fail the next n writes (pwrite family) and/or flushes (fsync/fdatasync)
 * of file f (-1: any data file) with err; inj_disarm stops. */
#define INJ_WRITE 1
#define INJ_FLUSH 2
void inj_arm(int f, int n, int err, int what);
void inj_disarm(void);
/* Injections done on file f so far. */
unsigned long inj_hits(int f);
/* Failed flushes (fsync/fdatasync) of file f so far. */
unsigned long inj_flush_fails(int f);
bool inj_active(void);

/* ---- the second thread (race.c) ---- */
struct race_slot {
	volatile uint8_t *addr;
	uint8_t val[8];
};
/* Start a thread that keeps storing the slots' values until race_stop. */
void race_start(const struct race_slot *s, int n);
void race_stop(void);

/* Is the guardian on (it writes the shadows back after _exit)? */
bool model_guardian(void);

#endif
