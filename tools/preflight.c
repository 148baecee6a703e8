/* SPDX-License-Identifier: MIT */
/* Reasons the dynamic loader would skip LD_PRELOAD, found before the
 * program runs: it only prints "cannot be preloaded ... ignored" (or, in a
 * setuid program, nothing) and runs the program unprotected.  The runtime
 * report (preload/run_check.c) catches the rest; these give a clean
 * refusal, with the reason, before anything ran. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "preflight.h"

int smt_find_program(const char *prog, char *path, size_t n)
{
	const char *p = getenv("PATH");
	int err = ENOENT;

	if (strchr(prog, '/')) {
		if (strlen(prog) >= n)
			return ENAMETOOLONG;
		strcpy(path, prog);
		return access(path, X_OK) ? errno : 0;
	}
	if (!p)
		p = "/usr/local/bin:/usr/bin:/bin";
	while (*p) {
		size_t len = strcspn(p, ":");

		if ((size_t)snprintf(path, n, "%.*s%s%s", (int)len, p, len ? "/" : "",
				     prog) < n) {
			struct stat st;

			if (!stat(path, &st) && S_ISREG(st.st_mode)) {
				if (!access(path, X_OK))
					return 0;
				err = EACCES;
			}
		}
		p += len;
		if (*p == ':')
			p++;
	}
	return err;
}

struct elf_id {
	unsigned char cls;
	uint16_t machine;
	bool interp;		/* has PT_INTERP: dynamically linked */
};

/* 0 and *id, or -1 (not ELF / unreadable). */
static int read_elf(int fd, struct elf_id *id)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph;

	if (pread(fd, &eh, sizeof(eh), 0) < (ssize_t)EI_NIDENT + 4 ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG))
		return -1;
	id->cls = eh.e_ident[EI_CLASS];
	id->interp = false;
	if (id->cls != ELFCLASS64) {
		Elf32_Ehdr e32;

		if (pread(fd, &e32, sizeof(e32), 0) != sizeof(e32))
			return -1;
		id->machine = e32.e_machine;
		for (unsigned i = 0; i < e32.e_phnum; i++) {
			Elf32_Phdr p32;

			if (pread(fd, &p32, sizeof(p32), e32.e_phoff + i * e32.e_phentsize) !=
			    sizeof(p32))
				return -1;
			id->interp |= p32.p_type == PT_INTERP;
		}
		return 0;
	}
	id->machine = eh.e_machine;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * eh.e_phentsize)) !=
		    sizeof(ph))
			return -1;
		id->interp |= ph.p_type == PT_INTERP;
	}
	return 0;
}

/* The architecture by name, as file(1) and uname -m say it. */
static const char *arch_name(const struct elf_id *id, char *buf, size_t n)
{
	static const struct {
		uint16_t machine;
		unsigned char cls;
		const char *name;
	} names[] = {
		{ EM_X86_64, ELFCLASS64, "x86-64" },
		{ EM_X86_64, ELFCLASS32, "x32" },
		{ EM_386, ELFCLASS32, "i386 (32-bit x86)" },
		{ EM_AARCH64, ELFCLASS64, "aarch64 (64-bit ARM)" },
		{ EM_ARM, ELFCLASS32, "arm (32-bit ARM)" },
		{ EM_PPC64, ELFCLASS64, "ppc64 (64-bit POWER)" },
		{ EM_PPC, ELFCLASS32, "ppc (32-bit POWER)" },
		{ EM_S390, ELFCLASS64, "s390x" },
		{ EM_RISCV, ELFCLASS64, "riscv64" },
		{ EM_RISCV, ELFCLASS32, "riscv32" },
		{ EM_LOONGARCH, ELFCLASS64, "loongarch64" },
		{ EM_MIPS, ELFCLASS64, "mips64" },
		{ EM_MIPS, ELFCLASS32, "mips" },
		{ EM_SPARCV9, ELFCLASS64, "sparc64" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].machine == id->machine && names[i].cls == id->cls)
			return names[i].name;
	snprintf(buf, n, "ELF machine %u, %d-bit", id->machine,
		 id->cls == ELFCLASS64 ? 64 : 32);
	return buf;
}

static const char *check(const char *path, const struct elf_id *want, int depth,
			 char *buf, size_t n)
{
	struct elf_id id;
	struct stat st;
	char head[256];
	ssize_t got;
	int fd;

	if (depth > 4)
		return "too many #! interpreters";
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		snprintf(buf, n, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return buf;
	}
	/* Secure execution (AT_SECURE) ignores LD_PRELOAD paths. */
	if (((st.st_mode & S_ISUID) && st.st_uid != getuid()) ||
	    ((st.st_mode & S_ISGID) && st.st_gid != getgid())) {
		close(fd);
		snprintf(buf, n, "%s is set-user/group-ID: the dynamic loader ignores "
			 "LD_PRELOAD for it", path);
		return buf;
	}
	if (fgetxattr(fd, "security.capability", NULL, 0) > 0 && getuid() != 0) {
		close(fd);
		snprintf(buf, n, "%s has file capabilities: the dynamic loader ignores "
			 "LD_PRELOAD for it", path);
		return buf;
	}
	got = pread(fd, head, sizeof(head) - 1, 0);
	if (got >= 2 && head[0] == '#' && head[1] == '!') {
		char *s = head + 2, *e;

		close(fd);
		head[got] = '\0';
		s += strspn(s, " \t");
		e = s + strcspn(s, " \t\n");
		if (e == s || (*e == '\0' && got == (ssize_t)sizeof(head) - 1))
			return "unreadable #! line";
		*e = '\0';
		/* The interpreter is what the loader runs. */
		char interp[PATH_MAX];
		snprintf(interp, sizeof(interp), "%s", s);
		if (access(interp, X_OK)) {
			snprintf(buf, n, "%s: its #! interpreter %s: %s", path, interp,
				 strerror(errno));
			return buf;
		}
		return check(interp, want, depth + 1, buf, n);
	}
	if (read_elf(fd, &id)) {
		close(fd);
		snprintf(buf, n, "%s is neither an ELF program nor a #! script", path);
		return buf;
	}
	close(fd);
	if (!id.interp) {
		snprintf(buf, n, "%s is statically linked: LD_PRELOAD cannot reach it", path);
		return buf;
	}
	if (id.cls != want->cls || id.machine != want->machine) {
		char a[32], b[32];

		snprintf(buf, n, "%s is built for %s, the preload for %s: the dynamic "
			 "loader cannot preload it", path, arch_name(&id, a, sizeof(a)),
			 arch_name(want, b, sizeof(b)));
		return buf;
	}
	return NULL;
}

const char *smt_preflight(const char *path, const char *preload, char *buf, size_t n)
{
	struct elf_id want;
	int fd = open(preload, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(buf, n, "the preload %s: %s", preload, strerror(errno));
		return buf;
	}
	if (read_elf(fd, &want)) {
		close(fd);
		snprintf(buf, n, "the preload %s is not an ELF library", preload);
		return buf;
	}
	close(fd);
	return check(path, &want, 0, buf, n);
}
