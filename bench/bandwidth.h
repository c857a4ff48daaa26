/* The device's streaming read bandwidth, measured in the benchmark's run. */
#ifndef CLMOE_BENCH_BANDWIDTH_H
#define CLMOE_BENCH_BANDWIDTH_H

#include "clmoe/clmoe.h"

/* GB/s (1e9 bytes) of a streaming read of a `mib`-MiB buffer (choose it
 * larger than the last-level cache) on the context's device: the best of
 * `runs` after a warm-up. Exits on an OpenCL error. */
double bench_read_bandwidth(clmoe_context *ctx, int mib, int runs);

#endif /* CLMOE_BENCH_BANDWIDTH_H */
