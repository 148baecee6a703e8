/* SPDX-License-Identifier: MIT */
/* What the parts of bench_core share: timing, the results table. */
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define KiB (1024ul)
#define MiB (1024ul * KiB)
#define GiB (1024ul * MiB)

struct row {
	char what[64];
	char size[16];
	double value, base;	/* medians, ns */
	char unit;		/* 'r': ratio value/base; 't': absolute seconds; 'n': ns only;
				 * 'a': overhead value - base <= target ns */
	double target;		/* ratio, seconds or ns */
	bool measured;
	bool pass;
	char note[192];
};

extern bool quick;
extern const char *bench_dir;
extern int failures;

double now_ns(void);
double median(double *v, int n);
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
const char *size_name(size_t s);
void *map_anon(size_t len);
void pread_all(int fd, void *buf, size_t len, off_t off);
struct row *add_row(const char *what, size_t size, char unit, double target);
void not_run(struct row *r, const char *why);

/* (g) growth.c: per-call costs at 1 ... 10,000 live registrations. */
void bench_growth(void);
/* (e) guardian.c: the guardian's cost; the re-executed child's entry. */
void bench_guardian(void);
int bench_guardian_child(const char *dir);
/* (r) reserve.c: the block reservation at registration, auto vs off. */
void bench_reserve(void);
int bench_reserve_child(int argc, char **argv);

#endif
