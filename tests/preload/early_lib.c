/* SPDX-License-Identifier: MIT */
/* A library whose constructor uses every interposed libc call.  Nothing
 * orders it after the preload library's constructor, so these calls can
 * arrive before safe_mr is initialised. */
#include "early.h"

__attribute__((constructor)) static void early_lib_init(void)
{
	early_exercise("library constructor");
}
