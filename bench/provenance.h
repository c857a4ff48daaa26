/* Where a benchmark result comes from, recorded in every results file: the
 * source tree's git commit and whether it had uncommitted changes, the
 * device and its driver, the CPU model, and the date (UTC). */
#ifndef CLMOE_BENCH_PROVENANCE_H
#define CLMOE_BENCH_PROVENANCE_H

#include <stdio.h>

#include "clmoe/clmoe.h"

typedef struct bench_provenance {
  char commit[48]; /* "unknown" outside a git checkout */
  int dirty;       /* tracked files differ from the commit */
  char device[256], platform[256], driver[128];
  char cpu[256];
  char date[32]; /* ISO 8601, UTC */
} bench_provenance;

/* Reads everything (git through popen on the source directory this
 * benchmark was built from). */
void bench_provenance_read(clmoe_context *ctx, bench_provenance *p);
/* One "provenance" JSON member (no trailing comma) at two-space indent. */
void bench_provenance_json(FILE *f, const bench_provenance *p);
/* The same as text lines. */
void bench_provenance_print(FILE *f, const bench_provenance *p);

#endif /* CLMOE_BENCH_PROVENANCE_H */
