/* SPDX-License-Identifier: MIT */
/* UCX's memory hooks must see every munmap the application makes, with or
 * without safe_mr in front of libc.  UCX (ucm) installs them when the
 * first handler for a memory event is set; in "bistro" mode (the default)
 * it rewrites the entry of libc's munmap, tests that a munmap call reaches
 * it, and refuses with UCS_ERR_UNSUPPORTED if not.  In "reloc" mode it
 * rewrites the GOT entries of every loaded object instead.  Then UCX's
 * registration cache depends on seeing each application munmap.
 *
 *   ucm_unmap MODE [preload]
 *
 * MODE: the ucm hook mode UCX must be running in (bistro or reloc, set with
 * UCX_MEM_MMAP_HOOK_MODE); "preload": munmap must be safe_mr's (else the
 * test would prove nothing).  Sets the handler, maps and unmaps ROUNDS
 * anonymous regions, and passes when ucm_set_event_handler returned UCS_OK
 * and each region was reported unmapped exactly once. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <ucm/api/ucm.h>

#include "util.h"

#define ROUNDS 10

static void *region[ROUNDS];
static size_t region_len;
static atomic_int hits[ROUNDS];

static void on_unmap(ucm_event_type_t type, ucm_event_t *ev, void *arg)
{
	(void)arg;
	if (type != UCM_EVENT_VM_UNMAPPED)
		return;
	for (int i = 0; i < ROUNDS; i++)
		if (ev->vm_unmapped.address == region[i] && ev->vm_unmapped.size == region_len)
			atomic_fetch_add(&hits[i], 1);
}

/* The object that defines the munmap the program calls. */
static const char *munmap_owner(void)
{
	Dl_info info;
	void *fn = dlsym(RTLD_DEFAULT, "munmap");

	if (!fn || !dladdr(fn, &info) || !info.dli_fname)
		die("dladdr(munmap) failed");
	return info.dli_fname;
}

int main(int argc, char **argv)
{
	const char *owner = munmap_owner();
	ucm_mmap_hook_mode_t want;
	ucs_status_t status;
	int seen = 0, twice = 0;

	if (argc < 2)
		die("usage: ucm_unmap bistro|reloc [preload]");
	want = !strcmp(argv[1], "reloc") ? UCM_MMAP_HOOK_RELOC : UCM_MMAP_HOOK_BISTRO;
	/* libucs' constructor reads UCX_MEM_* into ucm's options. */
	if (ucm_global_opts.mmap_hook_mode != want)
		die("ucm hook mode is %d, want %d (%s): is UCX_MEM_MMAP_HOOK_MODE set?",
		    (int)ucm_global_opts.mmap_hook_mode, (int)want, argv[1]);
	if (argc > 2 && !strcmp(argv[2], "preload") != !!strstr(owner, "libsafe_mr_preload"))
		die("munmap comes from %s, not safe_mr's preload library", owner);
	if (argc < 3 && strstr(owner, "safe_mr"))
		die("munmap comes from %s without LD_PRELOAD", owner);

	status = ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, 0, on_unmap, NULL);
	/* All mapped first: distinct addresses. */
	region_len = 4 * page_size();
	for (int i = 0; i < ROUNDS; i++) {
		region[i] = mmap(NULL, region_len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (region[i] == MAP_FAILED)
			die("mmap: %s", strerror(errno));
		*(char *)region[i] = (char)i;
	}
	for (int i = 0; i < ROUNDS; i++)
		if (munmap(region[i], region_len))
			die("munmap: %s", strerror(errno));
	for (int i = 0; i < ROUNDS; i++) {
		int n = atomic_load(&hits[i]);

		seen += n > 0;
		twice += n > 1;
	}
	printf("ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED) -> %d, %d of %d munmaps seen"
	       " (%d more than once); mode %s, munmap from %s\n",
	       (int)status, seen, ROUNDS, twice, argv[1], owner);
	if (status != UCS_OK || seen != ROUNDS || twice)
		die("UCX's memory hooks did not see each munmap exactly once");
	printf("ok\n");
	return 0;
}
