/* SPDX-License-Identifier: MIT */
#include "json.h"

void smt_json_init(struct smt_json *j, FILE *f)
{
	j->f = f;
	j->depth = 0;
	j->first[0] = true;
}

static void quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void member(struct smt_json *j, const char *key)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = false;
	if (j->depth)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	if (key) {
		quoted(j->f, key);
		fputs(": ", j->f);
	}
}

void smt_json_open(struct smt_json *j, const char *key, char bracket)
{
	if (j->depth)
		member(j, key);
	fputc(bracket, j->f);
	if (j->depth < 15)
		j->depth++;
	j->first[j->depth] = true;
}

void smt_json_close(struct smt_json *j, char bracket)
{
	bool empty = j->first[j->depth];

	j->depth--;
	if (!empty)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc(bracket, j->f);
	if (!j->depth)
		fputc('\n', j->f);
}

void smt_json_str(struct smt_json *j, const char *key, const char *value)
{
	member(j, key);
	if (value)
		quoted(j->f, value);
	else
		fputs("null", j->f);
}

void smt_json_bool(struct smt_json *j, const char *key, bool value)
{
	member(j, key);
	fputs(value ? "true" : "false", j->f);
}

void smt_json_int(struct smt_json *j, const char *key, long long value)
{
	member(j, key);
	fprintf(j->f, "%lld", value);
}
