/* Timing helpers for the benchmarks: monotonic clock and medians. */
#ifndef CLMOE_BENCH_COMMON_H
#define CLMOE_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clmoe/clmoe.h"

/* Benchmarks stop at the first failure, saying what failed. */
static inline void die(clmoe_status st, const char *what) {
  if (st) {
    fprintf(stderr, "%s: %s: %s\n", what, clmoe_status_string(st),
            clmoe_last_error_detail());
    exit(1);
  }
}

static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of n samples (sorts them). */
static inline double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif /* CLMOE_BENCH_COMMON_H */
