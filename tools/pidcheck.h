/* SPDX-License-Identifier: MIT */
/* safe_mr-info --pid PID: is this process protected? */
#ifndef SMT_PIDCHECK_H
#define SMT_PIDCHECK_H

#include "json.h"

/* Prints the answer (text, or into j when not NULL).  0: protected, 1: not
 * protected, 2: the process could not be read (errno in the message). */
int smt_pid_check(int pid, struct smt_json *j);

#endif
