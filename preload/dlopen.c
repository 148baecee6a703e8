/* SPDX-License-Identifier: MIT */
/* dlopen interposer, for programs that dlopen("libibverbs.so.1") and look
 * the verbs up through that handle (NCCL does), which never sees an
 * LD_PRELOAD definition.  For libibverbs we load it with the caller's flags
 * and hand back a handle to this library instead: dlsym/dlvsym on it search
 * us first, then our dependencies (libsafe_mr.so, libibverbs), so our
 * ibv_reg_mr & co. win and every other symbol is libibverbs' own.
 *
 * glibc resolves relative names with the *caller's* DT_RUNPATH, and takes
 * the caller from dlopen's return address.  So every other call must reach
 * the real dlopen as a tail jump, with the caller's return address still on
 * the stack: that part is a few lines of assembly.  Calls made by safe_mr's
 * own objects (libsafe_mr.so looks up libc's dlopen with dlopen("libc.so.6",
 * RTLD_NOLOAD)) are never redirected. */
#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <string.h>

#include "preload.h"

static void *dlopen_ibverbs(const char *file, int mode)
{
	sm_pl_dlopen_fn real = sm_pl_real_dlopen();
	Dl_info self;
	void *ib, *h;

	/* Really load it, with their flags (RTLD_GLOBAL, RTLD_NODELETE, ...). */
	ib = real(file, mode);
	if (!ib)
		return NULL;
	if (!dladdr((void *)dlopen_ibverbs, &self) || !self.dli_fname)
		return ib;
	/* A counted reference to ourselves, so their dlclose is harmless. */
	h = real(self.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		return ib;
	/* libibverbs stays loaded: libsafe_mr.so depends on it. */
	dlclose(ib);
	return h;
}

static void *dlopen_unavailable(const char *file, int mode)
{
	(void)file;
	(void)mode;
	return NULL;
}

/* Is `caller` code of libsafe_mr.so or of this library? */
static bool from_safe_mr(const void *caller)
{
	struct link_map *map = NULL;
	Dl_info info, self;
	const char *base;

	if (!dladdr1(caller, &info, (void **)&map, RTLD_DL_LINKMAP) || !map || !map->l_name)
		return false;
	if (dladdr((void *)from_safe_mr, &self) && info.dli_fbase == self.dli_fbase)
		return true;
	base = strrchr(map->l_name, '/');
	base = base ? base + 1 : map->l_name;
	return strncmp(base, "libsafe_mr.so", strlen("libsafe_mr.so")) == 0;
}

/* Called by the dlopen stub below: the function to jump to.  `caller` is
 * dlopen's return address. */
__attribute__((used)) sm_pl_dlopen_fn sm_pl_dlopen_target(const char *file, int mode,
						   const void *caller);
__attribute__((used)) sm_pl_dlopen_fn sm_pl_dlopen_target(const char *file, int mode,
						   const void *caller)
{
	sm_pl_dlopen_fn real = sm_pl_real_dlopen();

	(void)mode;
	if (!real)
		return dlopen_unavailable;
	if (file && sm_pl_is_ibverbs(file) && !from_safe_mr(caller))
		return dlopen_ibverbs;
	return real;
}

#if defined(__x86_64__)
__asm__(
	"	.text\n"
	"	.globl dlopen\n"
	"	.type dlopen, @function\n"
	"dlopen:\n"
	"	.cfi_startproc\n"
#ifdef __CET__
	"	endbr64\n"
#endif
	"	pushq %rdi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	pushq %rsi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	subq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	movq 24(%rsp), %rdx\n"		/* our return address: the caller */
	"	call sm_pl_dlopen_target\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %rsi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %rdi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	jmp *%rax\n"
	"	.cfi_endproc\n"
	"	.size dlopen, .-dlopen\n");
#elif defined(__aarch64__)
__asm__(
	"	.text\n"
	"	.globl dlopen\n"
	"	.type dlopen, %function\n"
	"	.p2align 2\n"
	"dlopen:\n"
	"	.cfi_startproc\n"
	"	stp x29, x30, [sp, #-32]!\n"
	"	.cfi_def_cfa_offset 32\n"
	"	.cfi_offset 29, -32\n"
	"	.cfi_offset 30, -24\n"
	"	mov x29, sp\n"
	"	stp x0, x1, [sp, #16]\n"
	"	mov x2, x30\n"			/* our return address: the caller */
	"	bl sm_pl_dlopen_target\n"
	"	mov x16, x0\n"
	"	ldp x0, x1, [sp, #16]\n"
	"	ldp x29, x30, [sp], #32\n"
	"	.cfi_def_cfa_offset 0\n"
	"	.cfi_restore 29\n"
	"	.cfi_restore 30\n"
	"	br x16\n"
	"	.cfi_endproc\n"
	"	.size dlopen, .-dlopen\n");
#else
/* Elsewhere a C wrapper: relative names are then searched with this
 * library's RUNPATH, not the caller's. */
__attribute__((visibility("default"))) void *dlopen(const char *file, int mode)
{
	return sm_pl_dlopen_target(file, mode, __builtin_return_address(0))(file, mode);
}
#endif
