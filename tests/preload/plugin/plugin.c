/* SPDX-License-Identifier: MIT */
/* A plugin found only through its loader's DT_RUNPATH. */
__attribute__((visibility("default"))) int sm_pl_plugin_answer(void)
{
	return 42;
}
