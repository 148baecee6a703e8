/* SPDX-License-Identifier: MIT */
/* The reference model's state and its checks against the real thing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"

const int maxp[NF] = { MAXP0, MAXPG };
const int gbase[NF] = { 0, MAXP0 };
struct shadow shs[NSH];
struct mfile mf[NF];
struct gpage pg[NG];
struct mmr mrs[NMR];
uint8_t *region;
static uint64_t next_serial = 1;

uint64_t page_id(int g)
{
	if (g < 0 || g >= NG || !pg[g].mapped)
		return UINT64_MAX;
	return pg[g].sh < 0 ? 0 : shs[pg[g].sh].serial;
}

bool sh_dirty(const struct shadow *s)
{
	return s->maybe || s->force || memcmp(s->content, s->base, PS) != 0;
}

/* A new shadow of file page (f, fp), filled from the file as it is now. */
int sh_new(int f, int fp)
{
	for (int i = 0; i < NSH; i++) {
		struct shadow *s = &shs[i];

		if (s->live)
			continue;
		if (mf[f].unk[fp] || mf[f].poisoned[fp])
			fail("model: filling a shadow from an unknown file page %d/%d", f, fp);
		if (!s->content) {
			s->content = malloc(PS);
			s->base = malloc(PS);
		}
		*s = (struct shadow){ .live = true, .f = f, .fp = fp, .serial = next_serial++,
				      .mapped = true, .content = s->content, .base = s->base };
		memcpy(s->content, mf[f].data + (size_t)fp * PS, PS);
		memcpy(s->base, s->content, PS);
		return i;
	}
	fail("model: out of shadow slots");
}

void sh_kill(int i)
{
	struct shadow *s = &shs[i];

	for (int p = 0; p < MAXPG; p++)
		for (int f = 0; f < NF; f++)
			if (mf[f].poisoned[p] == i + 1)
				fail("model: shadow %d dies while file %d page %d waits for it", i, f, p);
	s->live = false;
}

bool view_byte(int g, size_t o, uint8_t *b)
{
	int f = g_file(g), fp = g_fp(g);
	size_t off = (size_t)fp * PS + o;

	if (!pg[g].mapped)
		return false;
	if (pg[g].sh >= 0) {
		*b = shs[pg[g].sh].content[o];
		return true;
	}
	if (off >= mf[f].size || mf[f].unk[fp] || mf[f].poisoned[fp])
		return false;
	*b = mf[f].data[off];
	return true;
}

/* Two shadows of one file page (a detached one still pinned, and a new
 * one mapped there since: FINDINGS.md item 8).  Writing shadow i now leaves
 * the file page open if a twin's write is pending and its outcome or order
 * is not the model's to know: a twin that is "maybe" (its next writeback
 * may find it clean: written already in a failed call, or its racing store
 * went to the file) or one that this call writes too (the engine writes
 * chunk by chunk, in its own order).  Those twins are marked: their next
 * writeback leaves the page unknown too.  Returns whether any was found. */
static bool twins_open(int i, const int *sel, int n)
{
	const struct shadow *s = &shs[i];
	bool open = false;

	for (int t = 0; t < NSH; t++) {
		struct shadow *y = &shs[t];
		bool in_call = false;

		if (t == i || !y->live || y->f != s->f || y->fp != s->fp || !sh_dirty(y))
			continue;
		for (int k = 0; k < n; k++)
			in_call |= sel[k] == t;
		if (y->maybe || y->wb_open || in_call) {
			y->wb_open = true;
			open = true;
		}
	}
	return open;
}

void model_wb(const int *sel, int n, const bool hit[NF])
{
	for (int k = 0; k < n; k++) {
		struct shadow *s = &shs[sel[k]];
		struct mfile *m = &mf[s->f];
		size_t off = (size_t)s->fp * PS, len;
		bool dup = false;

		for (int j = 0; j < k; j++)
			dup |= sel[j] == sel[k];
		if (dup || !s->live || !sh_dirty(s) || off >= m->size)
			continue;	/* clean, or past EOF: never written */
		if (s->cut) {
			/* written, or found cut off by a sync point since the
			 * truncate (then clean): the page is unknown */
			note("  model: file %d page %d cut and regrown: unknown", s->f, s->fp);
			memcpy(s->base, s->content, PS);
			s->maybe = s->force = s->cut = s->wb_open = false;
			s->unsynced = s->unsynced_maybe = false;
			m->unk[s->fp] = true;
			continue;
		}
		if (hit && hit[s->f]) {
			/* Written or not: if it was, the engine cleared its
			 * force (and a good flush in the call made it durable),
			 * so a forced page is no more sure to be rewritten. */
			s->maybe = true;
			s->force = false;
			m->unk[s->fp] = true;
			continue;
		}
		if (twins_open(sel[k], sel, n) || s->wb_open) {
			/* This shadow's data or a twin's, in either order;
			 * written or not, if it was open itself. */
			note("  model: file %d page %d written back (shadow %d) or not, a twin's write is open: unknown",
			     s->f, s->fp, sel[k]);
			s->unsynced_maybe = s->wb_open || (s->maybe && !s->force);
			memcpy(s->base, s->content, PS);
			s->maybe = s->force = s->wb_open = false;
			s->unsynced = true;
			m->unk[s->fp] = true;
			m->poisoned[s->fp] = 0;
			continue;
		}
		len = m->size - off < PS ? m->size - off : PS;
		note("  model: file %d page %d written back (shadow %d)", s->f, s->fp, sel[k]);
		s->unsynced_maybe = s->maybe && !s->force;
		memcpy(m->data + off, s->content, len);
		memcpy(s->base, s->content, PS);
		s->maybe = s->force = false;
		s->unsynced = true;
		m->unk[s->fp] = false;
		m->poisoned[s->fp] = 0;
	}
}

void model_flushed(int f, bool ok, bool lost)
{
	struct mfile *m = &mf[f];
	int owners[MAXPG];

	for (int p = 0; p < MAXPG; p++)
		owners[p] = -1;
	for (int i = 0; i < NSH; i++) {
		struct shadow *s = &shs[i];

		if (!s->live || s->f != f || !s->unsynced)
			continue;
		s->unsynced = false;
		if (ok) {
			s->unsynced_maybe = false;
			continue;
		}
		if (s->unsynced_maybe) {
			s->unsynced_maybe = false;
			/* forced or not, we cannot tell: unknown until the next
			 * writeback of it (nothing else may write the page
			 * meanwhile: the file is not "clean") */
			s->maybe = true;
			m->unk[s->fp] = true;
			continue;
		}
		s->force = true;
		/* two shadows of one page: which rewrite lands last is open */
		owners[s->fp] = owners[s->fp] == -1 ? i : -2;
	}
	for (int p = 0; lost && (opt.gates & GATE_FSYNCGATE) && p < MAXPG; p++) {
		size_t off = (size_t)p * PS, len;

		if (owners[p] < 0 || off >= m->size)
			continue;
		len = m->size - off < PS ? m->size - off : PS;
		for (size_t o = 0; o < len; o++)
			m->data[off + o] = poison_byte(off + o);
		if (pwrite(m->fd, m->data + off, len, (off_t)off) != (ssize_t)len)
			fail("poison pwrite: %s", strerror(errno));
		m->unk[p] = false;
		m->poisoned[p] = owners[p] + 1;
		shs[owners[p]].maybe = false;
		note("file %d page %d lost by the failed flush", f, p);
	}
}

void model_flush_unsure(int f)
{
	for (int i = 0; i < NSH; i++)
		if (shs[i].live && shs[i].f == f && shs[i].unsynced)
			shs[i].unsynced_maybe = true;
}

void sh_unref(int i)
{
	struct shadow *s = &shs[i];

	if (--s->refs > 0)
		return;
	if (s->mapped) {
		/* The file mapping comes back; what the shadow held past EOF
		 * is gone with it. */
		for (int g = 0; g < NG; g++)
			if (pg[g].sh == i)
				pg[g].sh = -1;
		sh_kill(i);
	} else if (!sh_dirty(s) || (size_t)s->fp * PS >= mf[s->f].size) {
		/* Clean; or changed but wholly past EOF, where it has no place:
		 * the engine drops it (as truncate drops a page cache page). */
		sh_kill(i);
	}
	/* A dirty detached page within EOF stays for the next sync point of
	 * its file. */
}

static void report_page(int g, const uint8_t *got, size_t o, uint8_t want)
{
	int f = g_file(g);
	uint8_t disk = 0;
	char maps[300] = "";

	if (pread(mf[f].fd, &disk, 1, (off_t)((size_t)g_fp(g) * PS + o)) != 1)
		disk = 0xee;
	{
		FILE *mp = fopen("/proc/self/maps", "re");
		char line[300];
		uintptr_t a = (uintptr_t)g_addr(g);

		while (mp && fgets(line, sizeof(line), mp)) {
			unsigned long s0, e0;

			if (sscanf(line, "%lx-%lx", &s0, &e0) == 2 && a >= s0 && a < e0)
				snprintf(maps, sizeof(maps), "%s", line);
		}
		if (mp)
			fclose(mp);
	}
	fprintf(stderr, "the file has %#x there; the VMA: %s", disk, maps);
	fail("CPU view of file %d page %d (region page %d, %s) at offset %zu is %#x, model says %#x (file size %zu)",
	     f, g_fp(g), g, pg[g].sh >= 0 ? "shadowed" : "file mapping", o, got[o], want,
	     mf[f].size);
}

void check_page(int g)
{
	const uint8_t *p = g_addr(g);
	uint8_t b;

	if (!pg[g].mapped)
		return;
	if (pg[g].sh >= 0) {
		const uint8_t *c = shs[pg[g].sh].content;

		if (memcmp(p, c, PS) == 0)
			return;
		for (size_t o = 0; o < PS; o++)
			if (p[o] != c[o])
				report_page(g, p, o, c[o]);
	}
	{
		int f = g_file(g), fp = g_fp(g);
		size_t off = (size_t)fp * PS, n;

		if (off >= mf[f].size || mf[f].unk[fp] || mf[f].poisoned[fp])
			return;
		n = mf[f].size - off < PS ? mf[f].size - off : PS;
		if (memcmp(p, mf[f].data + off, n) == 0)
			return;
	}
	for (size_t o = 0; o < PS; o++)
		if (view_byte(g, o, &b) && p[o] != b)
			report_page(g, p, o, b);
}

void check_pages(int g0, int n)
{
	for (int g = g0 < 0 ? 0 : g0; g < g0 + n && g < NG; g++)
		check_page(g);
}

void check_all(void)
{
	check_pages(0, NG);
}

/* The file's bytes as the disk has them: O_DIRECT, no page cache of ours. */
void check_file(int f)
{
	struct mfile *m = &mf[f];
	size_t cap = (size_t)maxp[f] * PS + PS;
	static uint8_t *buf;
	struct stat st;
	ssize_t r;

	if (!buf && posix_memalign((void **)&buf, 4096, (size_t)(MAXPG + 1) * 4096))
		fail("posix_memalign");
	if (fstat(m->dfd, &st))
		fail("fstat: %s", strerror(errno));
	if ((size_t)st.st_size != m->size)
		fail("file %d has size %lld, model says %zu", f, (long long)st.st_size, m->size);
	r = pread(m->dfd, buf, cap, 0);
	if (r < 0 || (size_t)r != m->size)
		fail("O_DIRECT read of file %d: %zd (%s), want %zu bytes", f, r,
		     r < 0 ? strerror(errno) : "short", m->size);
	for (size_t o = 0; o < m->size; o++) {
		int fp = (int)(o / PS);
		uint8_t want = m->data[o];

		if (buf[o] == want || m->unk[fp])
			continue;
		if (m->poisoned[fp] && buf[o] == shs[m->poisoned[fp] - 1].content[o % PS])
			continue;
		fail("file %d on disk: byte %zu (page %d) is %#x, model says %#x%s", f, o, fp,
		     buf[o], want,
		     (buf[o] & 3) == 3 ? " (the disk still has what a failed flush lost: never rewritten)" : "");
	}
}
