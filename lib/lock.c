/* SPDX-License-Identifier: MIT */
/* The engine lock, and whether other threads could race the engine. */
#include "shadow.h"
#include "pool.h"

pthread_mutex_t sm_lock = PTHREAD_MUTEX_INITIALIZER;
_Atomic bool sm_lock_busy;
__thread bool sm_lock_mine __attribute__((tls_model("initial-exec")));
__thread unsigned int sm_api_depth __attribute__((tls_model("initial-exec")));

/* glibc clears __libc_single_threaded at the first pthread_create and never
 * sets it again: conservative, and free while nothing but the application
 * created threads; once the library's own workers exist, the kernel's count
 * of threads decides (pool.c).  Kernel threads of io_uring are not pthreads
 * and do not count: they never write user memory behind the engine's back. */
bool sm_threads(void)
{
	return sm_other_threads();
}
