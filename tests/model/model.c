/* SPDX-License-Identifier: MIT */
/* One epoch of the model test: a fresh process maps the files, runs random
 * operations through the C API against the fake NIC, checks every result
 * and the CPU's view against the model after each operation and the disk
 * (O_DIRECT) after each durable sync point, and ends with exit() or
 * _exit(), leaving the expected file images for the parent to check. */
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state.h"

#define WACC (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)

size_t PS;
unsigned long cur_op;
static struct ibv_pd *pd;
static unsigned long nic_writes;
static int epoch_no;

static const unsigned int accesses[] = {
	IBV_ACCESS_LOCAL_WRITE,
	IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ,
	IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE,
	IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ,
	IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_ATOMIC,
	IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
		IBV_ACCESS_REMOTE_ATOMIC,
	IBV_ACCESS_REMOTE_READ,
	0,
};

void note(const char *fmt, ...)
{
	va_list ap;

	if (!opt.verbose)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "[op %lu] ", cur_op);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "DIVERGENCE (seed %llu, epoch %d, op %lu): ", (unsigned long long)opt.seed,
		epoch_no, cur_op);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nreproduce: --seed %llu --ops %lu --epoch %lu%s%s%s -v\n",
		(unsigned long long)opt.seed, cur_op + 1, opt.epoch, opt.errors ? " --errors" : "",
		opt.enable ? " --enable=" : "", opt.enable ? opt.enable : "");
	va_end(ap);
	fflush(stderr);
	_exit(1);
}

/* ---------------------------------------------------------------- helpers */

static void tag_fill(uint8_t *dst, uintptr_t addr, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int g = gpage_of(addr + i);

		dst[i] = tag_byte((uint32_t)rnd(), g >= 0 && g < NG ? g_file(g) : 0);
	}
}

static bool all_mapped(int g0, int n)
{
	for (int g = g0; g < g0 + n; g++)
		if (g < 0 || g >= NG || !pg[g].mapped)
			return false;
	return true;
}

/* Pages of [a, a+len): first index (may be -1: the guard) and count. */
static void span(uintptr_t a, size_t len, int *g0, int *n)
{
	uintptr_t s = a & ~(PS - 1), e = (a + len + PS - 1) & ~(PS - 1);

	*g0 = s < (uintptr_t)region ? -1 : (int)((s - (uintptr_t)region) / PS);
	*n = (int)((e - s) / PS);
}

static void pick_range(uintptr_t *addr, size_t *len)
{
	int g0 = (int)rn(NG), n = 1 + (int)(chance(75) ? rn(3) : rn(12));
	uintptr_t a, e;

	if (chance(3))
		g0 = chance(50) ? -1 : NG - 1 - (int)rn(2);
	if (g0 + n > NG + 1)
		n = NG + 1 - g0;
	a = (uintptr_t)region + (uintptr_t)((intptr_t)g0 * (intptr_t)PS) + (chance(50) ? rn((uint32_t)PS) : 0);
	e = (uintptr_t)region + (uintptr_t)(g0 + n) * PS - (chance(50) ? rn((uint32_t)PS) : 0);
	if (e <= a)
		e = a + 1 + rn(64);
	*addr = a;
	*len = e - a;
}

/* Can a new shadow of page g be filled (and written back) unambiguously?
 * Not while the file page is unknown, nor while a detached shadow of the
 * same file page still has to be written (two shadows of one page: which
 * writeback comes last is the engine's choice). */
static bool fill_ok(int g)
{
	int f = g_file(g), fp = g_fp(g);

	if (mf[f].unk[fp] || mf[f].poisoned[fp])
		return false;
	for (int i = 0; i < NSH; i++)
		if (shs[i].live && !shs[i].mapped && shs[i].f == f && shs[i].fp == fp &&
		    sh_dirty(&shs[i]))
			return false;
	return true;
}

static int free_shadows(void)
{
	int n = 0;

	for (int i = 0; i < NSH; i++)
		n += !shs[i].live;
	return n;
}

static int pick_mr(void)
{
	int live[NMR], n = 0;

	for (int k = 0; k < NMR; k++)
		if (mrs[k].live)
			live[n++] = k;
	return n ? live[rn((uint32_t)n)] : -1;
}

static bool pin_current(const struct mmr *m, int i)
{
	int g = m->g0 + i, s = m->pin[i];

	return s >= 0 && shs[s].live && shs[s].serial == m->pin_id[i] && shs[s].mapped &&
	       g >= 0 && g < NG && pg[g].mapped && pg[g].sh == s;
}

/* Is there a shadow of page g's file page, other than the one mapped at
 * g, whose last writeback may or may not have happened?  A write to the
 * file page then has an open outcome (see file_clean). */
static bool twin_unsure(int g)
{
	for (int i = 0; i < NSH; i++)
		if (shs[i].live && i != pg[g].sh && shs[i].f == g_file(g) &&
		    shs[i].fp == g_fp(g) && shs[i].unsynced_maybe)
			return true;
	return false;
}

/* May the CPU write byte range [o, o+len) of page g?  A store to a file
 * mapping is a write to the file page, as pwrite is: the same rule as
 * file_clean, for that page. */
static bool cpu_ok(int g, size_t o, size_t len)
{
	int f = g_file(g), fp = g_fp(g);

	if (g < 0 || g >= NG || !pg[g].mapped)
		return false;
	if (pg[g].sh >= 0)
		return true;
	return !mf[f].unk[fp] && !mf[f].poisoned[fp] && !twin_unsure(g) &&
	       (size_t)fp * PS + o + len <= mf[f].size;
}

/* Apply a CPU store of `len` bytes at page g offset o to the model. */
static void model_store(int g, size_t o, const uint8_t *v, size_t len)
{
	if (pg[g].sh >= 0)
		memcpy(shs[pg[g].sh].content + o, v, len);
	else
		memcpy(mf[g_file(g)].data + (size_t)g_fp(g) * PS + o, v, len);
}

/* Someone else writes file pages [p0, p1) of f: whether a forced rewrite
 * after a later failed flush would put a shadow's copy back over that write
 * is open (the README does not say): those pages' next state is unknown. */
static void external_write(int f, size_t p0, size_t p1)
{
	for (int i = 0; i < NSH; i++)
		if (shs[i].live && shs[i].f == f && shs[i].unsynced &&
		    (size_t)shs[i].fp >= p0 && (size_t)shs[i].fp < p1)
			shs[i].unsynced_maybe = true;
}

/* May someone else change file f now (pwrite, ftruncate, a child)?  Not
 * while a page of it is unknown, lost, or written by a writeback that may
 * or may not have happened (a failed flush would or would not make the
 * engine write it again, over the change). */
static bool file_clean(int f)
{
	for (int p = 0; p < MAXPG; p++)
		if (mf[f].unk[p] || mf[f].poisoned[p])
			return false;
	for (int i = 0; i < NSH; i++)
		if (shs[i].live && shs[i].f == f && shs[i].unsynced_maybe)
			return false;
	return true;
}

/* ---------------------------------------------------------- error injection */

struct inj {
	bool armed;
	int err;
	unsigned long hits0[NF], flush0[NF];
};

static void arm(struct inj *c, const bool files[NF])
{
	int cand[NF], n = 0;

	c->armed = false;
	if (!opt.errors || !chance(20))
		return;
	for (int f = 0; f < NF; f++)
		if (files[f])
			cand[n++] = f;
	c->armed = true;
	c->err = chance(50) ? EIO : ENOSPC;
	for (int f = 0; f < NF; f++) {
		c->hits0[f] = inj_hits(f);
		c->flush0[f] = inj_flush_fails(f);
	}
	inj_arm(n && chance(70) ? cand[rn((uint32_t)n)] : -1, 1 + (int)rn(2), c->err,
		1 + (int)rn(3));
}

static bool disarm(struct inj *c, bool hit[NF])
{
	bool any = false;

	for (int f = 0; f < NF; f++)
		hit[f] = false;
	if (!c->armed)
		return false;
	inj_disarm();
	for (int f = 0; f < NF; f++)
		any |= hit[f] = inj_hits(f) > c->hits0[f];
	return any;
}

/* The engine's durability bookkeeping after a call that wrote back files
 * `files` (durable: it flushed them; else only a real fsync of fsync_f). */
static void absorb(const struct inj *c, const bool files[NF], const bool hit[NF], bool durable,
		   int fsync_f)
{
	for (int f = 0; f < NF; f++) {
		bool flushfail = c->armed && inj_flush_fails(f) > c->flush0[f];

		if (f == fsync_f)
			model_flushed(f, !flushfail, flushfail);
		else if (durable && files[f])
			model_flushed(f, !hit[f], flushfail);
	}
}

static void expect_rc(const char *what, int rc, bool anyhit, const struct inj *c)
{
	if (anyhit && rc != c->err)
		fail("%s: an injected %s was not reported (returned %d %s)", what,
		     strerror(c->err), rc, strerror(rc));
	if (!anyhit && rc)
		fail("%s failed: %s", what, strerror(rc));
}

/* Files holding the selected shadows. */
static void sel_files(const int *sel, int n, bool files[NF])
{
	for (int f = 0; f < NF; f++)
		files[f] = false;
	for (int k = 0; k < n; k++)
		files[shs[sel[k]].f] = true;
}

static void check_files(const bool files[NF])
{
	for (int f = 0; f < NF; f++)
		if (files[f])
			check_file(f);
}

/* ---------------------------------------------------------------- races */

static struct race_slot slots[4];
static int nslots;

/* Does the shadow at page g hold exactly what the file holds?  Then a store
 * racing the restore ends up in the file whichever side it lands on; else
 * a store into the shadow makes the whole page go back (page granularity:
 * the later writeback wins), and the outcome depends on the timing. */
static bool shadow_is_file(int g)
{
	int f = g_file(g), fp = g_fp(g);
	size_t off = (size_t)fp * PS, n;

	if (pg[g].sh < 0)
		return true;
	if (mf[f].unk[fp] || mf[f].poisoned[fp] || shs[pg[g].sh].force || off >= mf[f].size)
		return false;
	n = mf[f].size - off < PS ? mf[f].size - off : PS;
	return memcmp(shs[pg[g].sh].content, mf[f].data + off, n) == 0 &&
	       (n == PS || !memcmp(shs[pg[g].sh].content, shs[pg[g].sh].base, PS));
}

/* Another shadow of page g's file page (detached) still to be written:
 * its writeback and a racing store to the page land in either order. */
static bool dirty_twin(int g)
{
	for (int i = 0; i < NSH; i++)
		if (shs[i].live && i != pg[g].sh && shs[i].f == g_file(g) &&
		    shs[i].fp == g_fp(g) && sh_dirty(&shs[i]))
			return true;
	return false;
}

/* A few 8-byte places inside pages [g0, g0+n) that the CPU may write
 * (for a dereg: only where the outcome does not depend on the timing). */
static void race_pick(int g0, int n, bool dereg)
{
	nslots = 0;
	for (int t = 0; t < 8 && nslots < 4; t++) {
		int g = g0 + (int)rn((uint32_t)n);
		size_t o = rn((uint32_t)(PS - 8));

		/* inside EOF even where shadowed: a dereg may give the file
		 * mapping back under the store */
		if (g < 0 || g >= NG || !cpu_ok(g, o, 8) ||
		    (size_t)g_fp(g) * PS + o + 8 > mf[g_file(g)].size ||
		    (dereg && !shadow_is_file(g)) || dirty_twin(g) || twin_unsure(g))
			continue;
		slots[nslots].addr = g_addr(g) + o;
		tag_fill(slots[nslots].val, (uintptr_t)g_addr(g), 8);
		nslots++;
	}
}

/* ---------------------------------------------------------------- ops */

static void op_dereg(int k);

static void op_reg(void)
{
	int k = -1, g0, n, need = 0;
	uintptr_t a;
	size_t len;
	unsigned int access = accesses[rn(sizeof(accesses) / sizeof(accesses[0]))];
	bool writable = access & WACC, ok, race;
	struct ibv_mr *mr;
	int err;
	uint64_t serial0;

	for (int i = 0; i < NMR && k < 0; i++)
		if (!mrs[i].live)
			k = i;
	if (k < 0) {
		op_dereg(pick_mr());
		return;
	}
	pick_range(&a, &len);
	span(a, len, &g0, &n);
	ok = all_mapped(g0, n);
	if (ok) {
		for (int g = g0; g < g0 + n; g++)
			if (pg[g].sh < 0 && (need++, !fill_ok(g)))
				return;
		if (need > free_shadows())
			return;
	}
	race = ok && (opt.gates & GATE_RACE) && chance(30);
	if (race)
		race_pick(g0, n, false);
	note("reg %#lx+%zu (pages %d..%d) access %#x%s", (unsigned long)a, len, g0, g0 + n - 1,
	     access, race ? " racing a CPU thread" : "");
	if (race)
		race_start(slots, nslots);
	errno = 0;
	mr = safe_mr_reg_mr(pd, (void *)a, len, (int)access);
	err = errno;
	if (race)
		race_stop();
	if (!ok) {
		if (mr)
			fail("registration of a range with unmapped or PROT_NONE pages succeeded");
		if (err != EFAULT)
			fail("registration of an unmapped range: errno %d (%s), want EFAULT", err,
			     strerror(err));
		check_pages(g0, n + 1);
		return;
	}
	if (!mr)
		fail("registration of pages %d..%d access %#x failed: %s", g0, g0 + n - 1, access,
		     strerror(err));
	serial0 = UINT64_MAX;
	mrs[k] = (struct mmr){ .live = true, .mr = mr, .addr = a, .len = len, .access = access,
			       .writable = writable, .g0 = g0, .np = n };
	/* Read-only registrations too: a writable shared file mapping's
	 * pages get a hold whatever the access (the CPU may change them, and
	 * an MR must never pin pages the CPU no longer sees). */
	for (int i = 0; i < n; i++) {
		int g = g0 + i;

		if (pg[g].sh < 0) {
			pg[g].sh = sh_new(g_file(g), g_fp(g));
			if (serial0 == UINT64_MAX)
				serial0 = shs[pg[g].sh].serial;
		}
		shs[pg[g].sh].refs++;
		mrs[k].pin[i] = pg[g].sh;
		mrs[k].pin_id[i] = shs[pg[g].sh].serial;
	}
	for (int s = 0; race && s < nslots; s++) {
		int g = gpage_of((uintptr_t)slots[s].addr);
		size_t o = (uintptr_t)slots[s].addr - (uintptr_t)g_addr(g);

		model_store(g, o, slots[s].val, 8);
		if (pg[g].sh >= 0 && shs[pg[g].sh].serial >= serial0) {
			/* new shadow: the store hit the file before the fill, or
			 * the shadow after it; the file page is unknown */
			shs[pg[g].sh].maybe = true;
			mf[g_file(g)].unk[g_fp(g)] = true;
			external_write(g_file(g), (size_t)g_fp(g), (size_t)g_fp(g) + 1);
		}
	}
	check_pages(g0, n);
}

static void op_dereg(int k)
{
	struct mmr *m;
	int sel[NG + 2], ns = 0, rc;
	bool files[NF], hit[NF], anyhit, race;
	struct inj c = { 0 };

	if (k < 0)
		return;
	m = &mrs[k];
	for (int i = 0; i < m->np; i++) {
		if (!shs[m->pin[i]].live || shs[m->pin[i]].serial != m->pin_id[i])
			fail("model: MR %d lost its shadow", k);
		sel[ns++] = m->pin[i];
	}
	sel_files(sel, ns, files);
	race = (opt.gates & GATE_RACE) && chance(30);
	if (race)
		race_pick(m->g0, m->np, true);
	else
		arm(&c, files);
	note("dereg MR %d (pages %d..%d)%s%s", k, m->g0, m->g0 + m->np - 1,
	     race ? " racing a CPU thread" : "", c.armed ? " with errors armed" : "");
	if (race)
		race_start(slots, nslots);
	rc = safe_mr_dereg_mr(m->mr);
	if (race)
		race_stop();
	anyhit = disarm(&c, hit);
	expect_rc("dereg", rc, anyhit, &c);
	model_wb(sel, ns, anyhit ? hit : NULL);
	if (!rc) {
		m->live = false;
		for (int k2 = 0; k2 < ns; k2++)
			sh_unref(sel[k2]);
	}
	for (int s = 0; race && s < nslots; s++) {
		int g = gpage_of((uintptr_t)slots[s].addr);
		size_t o = (uintptr_t)slots[s].addr - (uintptr_t)g_addr(g);
		bool mine = false;

		model_store(g, o, slots[s].val, 8);
		for (int k2 = 0; k2 < ns; k2++)
			mine |= pg[g].sh == sel[k2];
		if (mine) {
			/* still shadowed (another MR): the store raced the
			 * dereg's writeback */
			shs[pg[g].sh].maybe = true;
			mf[g_file(g)].unk[g_fp(g)] = true;
		} else if (pg[g].sh < 0) {
			/* restored: the store may have hit the file page */
			external_write(g_file(g), (size_t)g_fp(g), (size_t)g_fp(g) + 1);
		}
	}
	absorb(&c, files, hit, true, -1);
	check_pages(m->g0, m->np);
	if (!rc && !race)
		check_files(files);
}

static void op_nic_write(void)
{
	int k = pick_mr(), g0, n, want = 0, rc;
	struct mmr *m;
	size_t off, len;
	uint8_t buf[3 * 4096];

	if (k < 0)
		return op_reg();
	m = &mrs[k];
	off = rn((uint32_t)m->len);
	len = 1 + rn((uint32_t)(chance(70) ? 64 : sizeof(buf)));
	if (len > m->len - off)
		len = m->len - off;
	tag_fill(buf, m->addr + off, len);
	span(m->addr + off, len, &g0, &n);
	if (!m->writable)
		want = EACCES;
	for (int g = g0; !want && g < g0 + n; g++)
		if (!pin_current(m, g - m->g0))
			want = EFAULT;
	nic_writes++;
	note("NIC write MR %d +%zu len %zu (pages %d..%d) want %d", k, off, len, g0, g0 + n - 1,
	     want);
	if (!want && opt.drop_nic >= 0 && (unsigned long)opt.drop_nic == nic_writes && epoch_no == 0) {
		note("negative control: this NIC write is dropped");
		rc = 0;
	} else {
		rc = fake_nic_write(m->mr, off, buf, len);
	}
	if (rc != want)
		fail("NIC write to MR %d returned %d (%s), model says %d (%s)", k, rc, strerror(rc),
		     want, strerror(want));
	for (size_t i = 0; !rc && i < len;) {
		uintptr_t a = m->addr + off + i;
		int g = gpage_of(a);
		size_t o = a - (uintptr_t)g_addr(g), c = PS - o < len - i ? PS - o : len - i;

		memcpy(shs[pg[g].sh].content + o, buf + i, c);
		i += c;
	}
	check_pages(g0, n);
}

static void op_nic_read(void)
{
	int k = pick_mr(), g0, n, rc;
	struct mmr *m;
	size_t off, len;
	uint8_t buf[3 * 4096];
	bool efault = false;

	if (k < 0)
		return op_reg();
	m = &mrs[k];
	off = rn((uint32_t)m->len);
	len = 1 + rn((uint32_t)(chance(70) ? 64 : sizeof(buf)));
	if (len > m->len - off)
		len = m->len - off;
	span(m->addr + off, len, &g0, &n);
	for (int g = g0; g < g0 + n; g++) {
		int i = g - m->g0;

		/* a file page wholly past EOF would fault the NIC's copy */
		if (pg[g].mapped && pg[g].sh < 0 &&
		    (size_t)g_fp(g) * PS >= mf[g_file(g)].size)
			return;
		efault |= !pin_current(m, i);
	}
	rc = fake_nic_read(m->mr, off, buf, len);
	note("NIC read MR %d +%zu len %zu -> %d", k, off, len, rc);
	if (efault) {
		if (rc != EFAULT)
			fail("NIC read of MR %d: %d, model says EFAULT (pages moved)", k, rc);
		return;
	}
	if (rc)
		fail("NIC read of MR %d failed: %s", k, strerror(rc));
	for (size_t i = 0; i < len; i++) {
		uintptr_t a = m->addr + off + i;
		int g = gpage_of(a);
		uint8_t b;

		if (view_byte(g, a - (uintptr_t)g_addr(g), &b) && b != buf[i])
			fail("NIC read of MR %d at +%zu (page %d): %#x, model says %#x", k, off + i,
			     g, buf[i], b);
	}
}

static void op_cpu_write(void)
{
	int g = (int)rn(NG);
	size_t o = rn((uint32_t)PS), len = 1 + rn(chance(80) ? 64 : (uint32_t)PS);
	uint8_t buf[4096];

	if (o + len > PS)
		len = PS - o;
	if (!cpu_ok(g, o, len))
		return;
	tag_fill(buf, (uintptr_t)g_addr(g), len);
	note("CPU write page %d +%zu len %zu", g, o, len);
	memcpy(g_addr(g) + o, buf, len);
	model_store(g, o, buf, len);
	if (pg[g].sh < 0)	/* through the file mapping: a write to the file */
		external_write(g_file(g), (size_t)g_fp(g), (size_t)g_fp(g) + 1);
	check_page(g);
}

static void op_pwrite(void)
{
	int f = (int)rn(NF);
	size_t cap = (size_t)maxp[f] * PS, off = rn((uint32_t)cap), len;
	uint8_t buf[2 * 4096];

	if (!file_clean(f))
		return;
	len = 1 + rn(chance(70) ? 200 : sizeof(buf));
	if (len > cap - off)
		len = cap - off;
	for (size_t i = 0; i < len; i++)
		buf[i] = tag_byte((uint32_t)rnd(), f);
	note("pwrite file %d +%zu len %zu", f, off, len);
	if (pwrite(mf[f].fd, buf, len, (off_t)off) != (ssize_t)len)
		fail("pwrite: %s", strerror(errno));
	memcpy(mf[f].data + off, buf, len);
	external_write(f, off / PS, (off + len + PS - 1) / PS);
	if (off + len > mf[f].size)
		mf[f].size = off + len;
	check_pages(gbase[f] + (int)(off / PS), 3);
}

static void op_ftruncate(void)
{
	int f = (int)rn(NF);
	size_t cap = (size_t)maxp[f] * PS, sz;

	if (!file_clean(f))
		return;
	sz = chance(50) ? rn((uint32_t)cap + 1) : rn((uint32_t)maxp[f] + 1) * PS;
	note("ftruncate file %d to %zu (was %zu)", f, sz, mf[f].size);
	if (ftruncate(mf[f].fd, (off_t)sz))
		fail("ftruncate: %s", strerror(errno));
	if (sz < mf[f].size)
		memset(mf[f].data + sz, 0, mf[f].size - sz);
	for (int i = 0; i < NSH; i++)
		if (shs[i].live && shs[i].f == f && (size_t)shs[i].fp * PS >= sz &&
		    (size_t)shs[i].fp * PS < mf[f].size)
			shs[i].cut = true;
	external_write(f, sz / PS, MAXPG);
	mf[f].size = sz;
	check_pages(gbase[f], maxp[f]);
}

static void op_msync(void)
{
	static const int fl[] = { MS_SYNC, MS_ASYNC, MS_SYNC | MS_INVALIDATE,
				  MS_ASYNC | MS_INVALIDATE, MS_INVALIDATE };
	int g0 = (int)rn(NG), n = 1 + (int)rn(8), flags = fl[rn(5)], sel[NG], ns = 0, rc, e;
	bool files[NF], hit[NF], anyhit, holes = false;
	struct inj c;

	if (g0 + n > NG)
		n = NG - g0;
	for (int g = g0; g < g0 + n; g++) {
		if (pg[g].mapped && pg[g].sh >= 0)
			sel[ns++] = pg[g].sh;
	}
	sel_files(sel, ns, files);
	arm(&c, files);
	errno = 0;
	rc = safe_mr_msync(g_addr(g0), (size_t)n * PS, flags);
	e = errno;
	anyhit = disarm(&c, hit);
	note("msync pages %d..%d flags %#x -> %d %s", g0, g0 + n - 1, flags, rc, rc ? strerror(e) : "");
	if (anyhit) {
		if (rc != -1 || (e != c.err && !(holes && e == ENOMEM)))
			fail("msync: an injected %s was not reported (%d, %s)", strerror(c.err), rc,
			     strerror(e));
	} else if (holes) {
		if (rc != -1 || e != ENOMEM)
			fail("msync over unmapped pages: %d (%s), want -1 ENOMEM", rc, strerror(e));
	} else if (rc) {
		fail("msync failed: %s", strerror(e));
	}
	model_wb(sel, ns, anyhit ? hit : NULL);
	if (flags & MS_SYNC) {
		/* The engine flushes every file with a chunk overlapping the
		 * range, even one whose pages there are restored or detached:
		 * whether it flushed a file without a shadow mapped there is
		 * open (the pages written since the last good flush may or may
		 * not count as flushed now). */
		for (int f = 0; f < NF; f++) {
			bool in_range = false;

			for (int g = g0; g < g0 + n; g++)
				in_range |= g_file(g) == f;
			if (hit[f])
				files[f] = true;
			else if (in_range && !files[f])
				model_flush_unsure(f);
		}
	}
	absorb(&c, files, hit, flags & MS_SYNC, -1);
	check_pages(g0, n);
	if (!rc && (flags & MS_SYNC))
		check_files(files);
}

static void op_fsync(void)
{
	int f = (int)rn(NF), sel[NSH], ns = 0, rc, e;
	bool files[NF] = { false }, hit[NF], anyhit, data = chance(50);
	struct inj c;

	for (int i = 0; i < NSH; i++)
		if (shs[i].live && shs[i].f == f)
			sel[ns++] = i;
	files[f] = true;
	arm(&c, files);
	errno = 0;
	rc = data ? safe_mr_fdatasync(mf[f].fd) : safe_mr_fsync(mf[f].fd);
	e = errno;
	anyhit = disarm(&c, hit);
	note("%s file %d -> %d %s", data ? "fdatasync" : "fsync", f, rc, rc ? strerror(e) : "");
	expect_rc(data ? "fdatasync" : "fsync", rc ? e : 0, anyhit, &c);
	model_wb(sel, ns, anyhit ? hit : NULL);
	/* Dirty pages of a detached shadow nobody pins are done with. */
	for (int k = 0; k < ns; k++)
		if (shs[sel[k]].live && !shs[sel[k]].mapped && !shs[sel[k]].refs &&
		    !sh_dirty(&shs[sel[k]]))
			sh_kill(sel[k]);
	absorb(&c, files, hit, false, f);
	if (!rc)
		check_file(f);
}

static void op_mr_sync(void)
{
	int k = pick_mr(), sel[NG + 2], ns = 0, rc;
	struct mmr *m;
	size_t off, len, l;
	unsigned int flags = chance(50) ? SAFE_MR_SYNC_DURABLE : 0;
	bool files[NF], hit[NF], anyhit;
	struct inj c;

	if (k < 0)
		return op_reg();
	m = &mrs[k];
	if (chance(5)) {
		rc = safe_mr_sync(m->mr, m->len + 1 + rn(10), 0, flags);
		if (rc != EINVAL)
			fail("safe_mr_sync past the MR's end: %d, want EINVAL", rc);
		return;
	}
	off = rn((uint32_t)m->len + 1);
	len = chance(30) ? 0 : rn((uint32_t)(m->len - off + PS));
	l = !len || len > m->len - off ? m->len - off : len;
	if (l) {
		uintptr_t s = (m->addr + off) & ~(PS - 1), e = (m->addr + off + l + PS - 1) & ~(PS - 1);

		for (int i = 0; i < m->np; i++) {
			uintptr_t pa = (uintptr_t)region + (uintptr_t)(m->g0 + i) * PS;

			if (pa >= s && pa < e)
				sel[ns++] = m->pin[i];
		}
	}
	sel_files(sel, ns, files);
	arm(&c, files);
	rc = safe_mr_sync(m->mr, off, len, flags);
	anyhit = disarm(&c, hit);
	note("safe_mr_sync MR %d +%zu len %zu flags %u (%d pages) -> %d", k, off, len, flags, ns, rc);
	expect_rc("safe_mr_sync", rc, anyhit, &c);
	model_wb(sel, ns, anyhit ? hit : NULL);
	absorb(&c, files, hit, flags, -1);
	if (!rc && flags)
		check_files(files);
}

static void op_sync_all(void)
{
	int sel[NSH], ns = 0, rc;
	unsigned int flags = chance(50) ? SAFE_MR_SYNC_DURABLE : 0;
	bool files[NF], hit[NF], anyhit;
	struct inj c;

	for (int i = 0; i < NSH; i++)
		if (shs[i].live)
			sel[ns++] = i;
	sel_files(sel, ns, files);
	arm(&c, files);
	rc = safe_mr_sync_all(flags);
	anyhit = disarm(&c, hit);
	note("safe_mr_sync_all %u -> %d", flags, rc);
	expect_rc("safe_mr_sync_all", rc, anyhit, &c);
	model_wb(sel, ns, anyhit ? hit : NULL);
	absorb(&c, files, hit, flags, -1);
	if (!rc && flags)
		check_files(files);
}

/* Is page g mapped, as the kernel says? */
static bool kernel_mapped(int g)
{
	return syscall(SYS_msync, g_addr(g), PS, MS_ASYNC) == 0;
}

static void op_munmap(void)
{
	int g0 = (int)rn(NG), n = 1 + (int)rn(4), sel[NG], ns = 0, rc, e;
	bool files[NF], hit[NF], anyhit;
	struct inj c;

	if (g0 + n > NG)
		n = NG - g0;
	if ((opt.gates & GATE_FAILED_UNMAP) && chance(25)) {
		/* A call that fails (unaligned address) changes nothing. */
		errno = 0;
		rc = safe_mr_munmap(g_addr(g0) + 1 + rn((uint32_t)PS - 1), (size_t)n * PS);
		note("munmap unaligned at page %d -> %d", g0, rc);
		if (rc != -1 || errno != EINVAL)
			fail("unaligned munmap: %d (%s), want -1 EINVAL", rc, strerror(errno));
		check_all();
		return;
	}
	for (int g = g0; g < g0 + n; g++)
		if (pg[g].mapped && pg[g].sh >= 0)
			sel[ns++] = pg[g].sh;
	sel_files(sel, ns, files);
	arm(&c, files);
	errno = 0;
	rc = safe_mr_munmap(g_addr(g0), (size_t)n * PS);
	e = errno;
	anyhit = disarm(&c, hit);
	note("munmap pages %d..%d -> %d", g0, g0 + n - 1, rc);
	if (rc && !(anyhit && e == c.err))
		fail("munmap failed: %s", strerror(e));
	if (anyhit && !rc && (opt.gates & GATE_STRICT_ERR))
		fail("munmap: an injected %s was not reported", strerror(c.err));
	model_wb(sel, ns, anyhit ? hit : NULL);
	for (int g = g0; g < g0 + n; g++) {
		bool km = kernel_mapped(g);

		if (!rc && km)
			fail("munmap returned 0 but page %d is still mapped", g);
		if (rc && !km)
			fail("munmap failed (%s) but unmapped page %d", strerror(e), g);
		if (rc)
			continue;
		if (pg[g].mapped && pg[g].sh >= 0)
			shs[pg[g].sh].mapped = false;
		pg[g].mapped = false;
		pg[g].sh = -1;
	}
	/* Keep the hole ours (PROT_NONE), or the next mmap of anyone (the
	 * engine's own) lands in it. */
	if (!rc && mmap(g_addr(g0), (size_t)n * PS, PROT_NONE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != g_addr(g0))
		fail("placeholder mmap: %s", strerror(errno));
	absorb(&c, files, hit, false, -1);
	check_pages(g0 - 1, n + 2);
}

static void op_remap(void)
{
	int g = (int)rn(NG), f, n = 1;
	void *p;

	for (int t = 0; t < NG && pg[g].mapped; t++)
		g = (g + 1) % NG;
	if (pg[g].mapped)
		return;
	f = g_file(g);
	while (g + n < gbase[f] + maxp[f] && !pg[g + n].mapped)
		n++;
	p = mmap(g_addr(g), (size_t)n * PS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 mf[f].fd, (off_t)((size_t)g_fp(g) * PS));
	note("mmap file %d pages %d..%d again", f, g, g + n - 1);
	if (p != g_addr(g))
		fail("re-mmap of pages %d..%d: %s", g, g + n - 1, strerror(errno));
	for (int i = g; i < g + n; i++)
		pg[i] = (struct gpage){ .mapped = true, .sh = -1 };
	check_pages(g, n);
}

static uint8_t *scratch;

static void op_mremap(void)
{
	int f = (int)rn(NF), fp0 = (int)rn((uint32_t)maxp[f]), n = 1 + (int)rn(4), g0, sel[NG], ns = 0;
	size_t len;
	void *p;

	if (fp0 + n > maxp[f])
		n = maxp[f] - fp0;
	g0 = gbase[f] + fp0;
	len = (size_t)n * PS;
	if (!all_mapped(g0, n))
		return;
	if ((opt.gates & GATE_FAILED_UNMAP) && chance(30)) {
		/* Growing in place into a mapped page fails: nothing changes. */
		errno = 0;
		p = safe_mr_mremap(g_addr(g0), len, len + PS, 0, NULL);
		note("mremap grow in place pages %d..%d -> %p", g0, g0 + n - 1, p);
		if (p != MAP_FAILED)
			fail("mremap growing into a mapped page succeeded");
		check_all();
		return;
	}
	for (int g = g0; g < g0 + n; g++)
		if (pg[g].sh >= 0)
			sel[ns++] = pg[g].sh;
	note("mremap pages %d..%d away and back", g0, g0 + n - 1);
	/* A fresh place each time: the hole a move leaves is anyone's. */
	scratch = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (scratch == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	p = safe_mr_mremap(g_addr(g0), len, len, MREMAP_MAYMOVE | MREMAP_FIXED, scratch);
	if (p != scratch)
		fail("mremap of pages %d..%d: %s", g0, g0 + n - 1, strerror(errno));
	model_wb(sel, ns, NULL);
	for (int g = g0; g < g0 + n; g++) {
		if (pg[g].sh >= 0)
			shs[pg[g].sh].mapped = false;
		pg[g].sh = -1;
	}
	/* What moved is the file mapping. */
	for (int i = 0; i < n; i++) {
		size_t off = (size_t)(fp0 + i) * PS;

		for (size_t o = 0; o < PS && off + o < mf[f].size && !mf[f].unk[fp0 + i]; o++)
			if (scratch[(size_t)i * PS + o] != mf[f].data[off + o])
				fail("mremap moved page %d: byte %zu is %#x, file has %#x", g0 + i, o,
				     scratch[(size_t)i * PS + o], mf[f].data[off + o]);
	}
	p = safe_mr_mremap(scratch, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, g_addr(g0));
	if (p != g_addr(g0))
		fail("mremap back of pages %d..%d: %s", g0, g0 + n - 1, strerror(errno));
	check_pages(g0, n);
}

/* May a forked child write bytes [o, o+len) of page g?  The child gets
 * plain file mappings back where the parent has shadows: its stores go to
 * the file, like any other process's, so they must be inside EOF. */
static bool child_ok(int g, size_t o, size_t len)
{
	int f = g_file(g), fp = g_fp(g);

	return pg[g].mapped && file_clean(f) &&
	       (size_t)fp * PS + o + len <= mf[f].size;
}

static void op_fork(void)
{
	struct { int g; size_t o, len; uint8_t v[64]; } w[6];
	int nw = 0, how = (int)rn(3), st, sel[NSH], ns = 0;
	pid_t pid;

	/* fork() writes every shadow back first (to the page cache), so the
	 * child sees what the parent's shadows held. */
	for (int i = 0; i < NSH; i++)
		if (shs[i].live)
			sel[ns++] = i;
	model_wb(sel, ns, NULL);
	for (int t = 0; t < 6; t++) {
		int g = (int)rn(NG);
		size_t o = rn((uint32_t)PS - 64), len = 1 + rn(64);

		if (!child_ok(g, o, len))
			continue;
		w[nw].g = g, w[nw].o = o, w[nw].len = len;
		tag_fill(w[nw].v, (uintptr_t)g_addr(g), len);
		nw++;
	}
	for (int t = 0; t < NF; t++)	/* what the writeback wrote */
		if (!file_clean(t))
			nw = 0;
	note("fork: child writes %d places, then %s", nw,
	     how == 0 ? "exit()" : how == 1 ? "_exit()" : "msync + exit()");
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		/* The child's view is the file, as the parent's shadows had it. */
		for (int g = 0; g < NG; g++) {
			int f = g_file(g);
			size_t off = (size_t)g_fp(g) * PS, n;

			if (!pg[g].mapped || off >= mf[f].size || mf[f].unk[g_fp(g)] ||
			    mf[f].poisoned[g_fp(g)])
				continue;
			n = mf[f].size - off < PS ? mf[f].size - off : PS;
			if (memcmp(g_addr(g), mf[f].data + off, n)) {
				fprintf(stderr, "forked child: page %d is not what the file holds\n", g);
				_exit(1);
			}
		}
		for (int i = 0; i < nw; i++)
			memcpy(g_addr(w[i].g) + w[i].o, w[i].v, w[i].len);
		if (how == 2)	/* not a flush syscall: the parent's engine cannot see it */
			safe_mr_msync(region, (size_t)NG * PS, MS_SYNC);
		if (how == 1)
			_exit(0);
		exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		fail("forked child ended with status %#x", st);
	/* The parent's shadows keep their data: the child's stores are in the
	 * file, as an external write (the later writeback wins). */
	for (int i = 0; i < nw; i++) {
		memcpy(mf[g_file(w[i].g)].data + (size_t)g_fp(w[i].g) * PS + w[i].o, w[i].v,
		       w[i].len);
		external_write(g_file(w[i].g), (size_t)g_fp(w[i].g), (size_t)g_fp(w[i].g) + 1);
	}
	check_all();
	check_file(0);
	check_file(1);
}

static void op_rereg(void)
{
	int k = pick_mr(), g0, n, need = 0, old[NG + 2], nold = 0, rc;
	struct mmr *m;
	uintptr_t a;
	size_t len;
	unsigned int access = accesses[rn(sizeof(accesses) / sizeof(accesses[0]))];
	bool writable = access & WACC, ok;
	bool files[NF];

	(void)writable;

	if (k < 0)
		return op_reg();
	m = &mrs[k];
	pick_range(&a, &len);
	span(a, len, &g0, &n);
	ok = all_mapped(g0, n);
	if (ok) {
		for (int g = g0; g < g0 + n; g++)
			if (pg[g].sh < 0 && (need++, !fill_ok(g)))
				return;
		if (need > free_shadows())
			return;
	}
	rc = safe_mr_rereg_mr(m->mr, IBV_REREG_MR_CHANGE_TRANSLATION | IBV_REREG_MR_CHANGE_ACCESS,
			      pd, (void *)a, len, (int)access);
	note("rereg MR %d to %#lx+%zu (pages %d..%d) access %#x -> %d", k, (unsigned long)a, len,
	     g0, g0 + n - 1, access, rc);
	if (!ok) {
		if (!rc)
			fail("rereg to a range with unmapped pages succeeded");
		check_all();
		return;
	}
	if (rc)
		fail("rereg of MR %d failed: %s", k, strerror(rc));
	/* The engine's order: new range shadowed, old range written back,
	 * the NIC re-pinned, the old range released. */
	for (int i = 0; i < m->np; i++)
		old[nold++] = m->pin[i];
	m->addr = a, m->len = len, m->access = access, m->writable = writable;
	m->g0 = g0, m->np = n;
	for (int i = 0; i < n; i++) {
		int g = g0 + i;

		if (pg[g].sh < 0)
			pg[g].sh = sh_new(g_file(g), g_fp(g));
		shs[pg[g].sh].refs++;
		m->pin[i] = pg[g].sh;
		m->pin_id[i] = shs[pg[g].sh].serial;
	}
	model_wb(old, nold, NULL);
	sel_files(old, nold, files);
	for (int f = 0; f < NF; f++)
		if (files[f])
			model_flushed(f, true, false);
	for (int i = 0; i < nold; i++)
		sh_unref(old[i]);
	check_all();
	check_files(files);
}

/* ---------------------------------------------------------------- epoch */

/* A fault is a finding too: say at which operation, and where. */
static void on_fault(int sig, siginfo_t *si, void *uc)
{
	void *bt[32];
	char msg[200];
	int n = snprintf(msg, sizeof(msg), "CRASH (seed %llu, epoch %d, op %lu): signal %d at address %p\n",
			 (unsigned long long)opt.seed, epoch_no, cur_op, sig, si->si_addr);

	(void)uc;
	if (write(2, msg, (size_t)n) < 0)
		_exit(3);
	backtrace_symbols_fd(bt, backtrace(bt, 32), 2);
	_exit(3);
}

static void setup(void)
{
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO };
	struct ibv_device **l = ibv_get_device_list(NULL);
	struct ibv_context *ctx;
	dev_t dev = 0;
	ino_t ino[NF];
	int fds[NF];
	uint8_t *base;

	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	if (!l || !l[0])
		fail("no device: is the fake libibverbs on LD_LIBRARY_PATH?");
	ctx = ibv_open_device(l[0]);
	pd = ctx ? ibv_alloc_pd(ctx) : NULL;
	if (!pd)
		fail("cannot open the fake device");
	ibv_free_device_list(l);
	base = mmap(NULL, (NG + 2) * PS, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	region = base + PS;
	for (int f = 0; f < NF; f++) {
		struct mfile *m = &mf[f];
		struct stat st;

		m->fd = open(m->path, O_RDWR | O_CLOEXEC);
		m->dfd = open(m->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (m->fd < 0 || m->dfd < 0 || fstat(m->fd, &st))
			fail("open %s: %s", m->path, strerror(errno));
		m->size = (size_t)st.st_size;
		m->data = calloc(1, (size_t)maxp[f] * PS);
		if (pread(m->fd, m->data, m->size, 0) != (ssize_t)m->size)
			fail("pread %s", m->path);
		if (mmap(g_addr(gbase[f]), (size_t)maxp[f] * PS, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, m->fd, 0) != g_addr(gbase[f]))
			fail("mmap %s: %s", m->path, strerror(errno));
		dev = st.st_dev;
		ino[f] = st.st_ino;
		fds[f] = m->fd;
	}
	for (int g = 0; g < NG; g++)
		pg[g] = (struct gpage){ .mapped = true, .sh = -1 };
	if (opt.errors) {
		int err = inj_start(dev, ino, fds);

		if (err)
			fail("error injection (seccomp user notification) unavailable: %s",
			     strerror(err));
	}
}

/* The expected image of file f after this process ends: size, bytes, and
 * per page 0 (exact), 1 (unknown) or 2 (the loss, or the shadow's data). */
static void write_image(int f)
{
	struct mfile *m = &mf[f];
	char path[sizeof(m->path) + 8];
	uint8_t flags[MAXPG] = { 0 }, *alt = calloc(1, (size_t)maxp[f] * PS);
	FILE *o;

	for (int p = 0; p < maxp[f]; p++) {
		flags[p] = m->unk[p] ? 1 : m->poisoned[p] ? 2 : 0;
		if (m->poisoned[p])
			memcpy(alt + (size_t)p * PS, shs[m->poisoned[p] - 1].content, PS);
	}
	snprintf(path, sizeof(path), "%.590s.img", m->path);
	o = fopen(path, "we");
	if (!o || fwrite(&m->size, sizeof(m->size), 1, o) != 1 ||
	    fwrite(m->data, PS, (size_t)maxp[f], o) != (size_t)maxp[f] ||
	    fwrite(flags, 1, MAXPG, o) != MAXPG ||
	    fwrite(alt, PS, (size_t)maxp[f], o) != (size_t)maxp[f] || fclose(o))
		fail("cannot write %s", path);
	free(alt);
}

bool model_guardian(void)
{
	const char *g = getenv("SAFE_MR_GUARDIAN");

	return !g || (strcmp(g, "off") && strcmp(g, "0") && strcmp(g, "no") && strcmp(g, "false"));
}

void model_epoch(unsigned long first_op, unsigned long ops, int epoch)
{
	bool use_exit = chance(60);

	epoch_no = epoch;
	cur_op = first_op;
	setup();
	for (unsigned long i = 0; i < ops; i++, cur_op++) {
		uint32_t r = rn(1000);

		if (r < 170)
			op_reg();
		else if (r < 280)
			op_dereg(pick_mr());
		else if (r < 470)
			op_nic_write();
		else if (r < 530)
			op_nic_read();
		else if (r < 640)
			op_cpu_write();
		else if (r < 700)
			op_pwrite();
		else if (r < 750)
			op_msync();
		else if (r < 800)
			op_fsync();
		else if (r < 860)
			op_mr_sync();
		else if (r < 875)
			op_sync_all();
		else if (r < 905)
			op_ftruncate();
		else if (r < 925)
			op_munmap();
		else if (r < 950)
			op_remap();
		else if (r < 965)
			(opt.gates & (GATE_MREMAP | GATE_FAILED_UNMAP)) ? op_mremap() : op_remap();
		else if (r < 975)
			op_fork();
		else
			op_rereg();
		if ((i & 63) == 63)
			check_all();
		if (getenv("MODEL_CHECK_EVERY_OP")) {
			check_file(0);
			check_file(1);
		}
	}
	check_all();
	/* Process exit is a durable sync point of everything; _exit is none,
	 * but with the guardian (SAFE_MR_GUARDIAN, on by default) the same
	 * pages reach the file once it is done (main.c waits for it). */
	if (use_exit || model_guardian()) {
		int sel[NSH], ns = 0;

		for (int i = 0; i < NSH; i++)
			if (shs[i].live)
				sel[ns++] = i;
		model_wb(sel, ns, NULL);
	}
	for (int f = 0; f < NF; f++)
		write_image(f);
	note("end of epoch %d: %s", epoch, use_exit ? "exit()" : "_exit()");
	fflush(stderr);
	if (use_exit)
		exit(0);
	_exit(0);
}

int model_check_images(int epoch)
{
	static uint8_t *buf;
	int bad = 0;

	if (!buf && posix_memalign((void **)&buf, 4096, (size_t)(MAXPG + 1) * 4096))
		return 1;
	for (int f = 0; f < NF && !bad; f++) {
		char path[sizeof(mf[f].path) + 8];
		size_t size, cap = (size_t)maxp[f] * PS;
		uint8_t *data = malloc(cap), *alt = malloc(cap), flags[MAXPG];
		FILE *in;
		int fd;
		ssize_t r;

		snprintf(path, sizeof(path), "%.590s.img", mf[f].path);
		in = fopen(path, "re");
		if (!in || fread(&size, sizeof(size), 1, in) != 1 ||
		    fread(data, PS, (size_t)maxp[f], in) != (size_t)maxp[f] ||
		    fread(flags, 1, MAXPG, in) != MAXPG ||
		    fread(alt, PS, (size_t)maxp[f], in) != (size_t)maxp[f]) {
			fprintf(stderr, "epoch %d: no image of file %d\n", epoch, f);
			return 2;
		}
		fclose(in);
		unlink(path);
		fd = open(mf[f].path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		r = fd < 0 ? -1 : pread(fd, buf, cap + PS, 0);
		if (fd >= 0)
			close(fd);
		if (r != (ssize_t)size) {
			fprintf(stderr, "DIVERGENCE (seed %llu, after epoch %d ended): file %d has %zd bytes, model says %zu\n",
				(unsigned long long)opt.seed, epoch, f, r, size);
			bad = 1;
		}
		for (size_t o = 0; !bad && o < size; o++) {
			int fl = flags[o / PS];

			if (buf[o] == data[o] || fl == 1 || (fl == 2 && buf[o] == alt[o]))
				continue;
			fprintf(stderr, "DIVERGENCE (seed %llu, after epoch %d ended with exit/_exit): file %d byte %zu (page %zu) is %#x, model says %#x\n",
				(unsigned long long)opt.seed, epoch, f, o, o / PS, buf[o], data[o]);
			bad = 1;
		}
		free(data);
		free(alt);
	}
	return bad;
}

void model_create_files(void)
{
	for (int f = 0; f < NF; f++) {
		size_t cap = (size_t)maxp[f] * PS, size = PS / 2 + rn((uint32_t)(cap - PS / 2));
		uint8_t *b = malloc(cap);
		int fd;

		snprintf(mf[f].path, sizeof(mf[f].path), "%s/file%d", opt.dir, f);
		for (size_t i = 0; i < size; i++)
			b[i] = tag_byte((uint32_t)rnd(), f);
		fd = open(mf[f].path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || pwrite(fd, b, size, 0) != (ssize_t)size || fsync(fd) || close(fd))
			fail("create %s: %s", mf[f].path, strerror(errno));
		free(b);
	}
}
