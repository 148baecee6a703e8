/* SPDX-License-Identifier: MIT */
/* A minimal JSON writer for safe_mr-info --json. */
#ifndef SMT_JSON_H
#define SMT_JSON_H

#include <stdbool.h>
#include <stdio.h>

struct smt_json {
	FILE *f;
	int depth;
	bool first[16];	/* no comma before the next member at this depth */
};

void smt_json_init(struct smt_json *j, FILE *f);
/* key may be NULL inside arrays. */
void smt_json_open(struct smt_json *j, const char *key, char bracket);
void smt_json_close(struct smt_json *j, char bracket);
void smt_json_str(struct smt_json *j, const char *key, const char *value); /* NULL: null */
void smt_json_bool(struct smt_json *j, const char *key, bool value);
void smt_json_int(struct smt_json *j, const char *key, long long value);

#endif
