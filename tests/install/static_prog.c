/* SPDX-License-Identifier: MIT */
/* Linked statically: LD_PRELOAD cannot reach it, so safe_mr-run refuses it. */
int main(void)
{
	return 0;
}
