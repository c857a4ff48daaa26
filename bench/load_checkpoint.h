/* clmoe-bench --load: checkpoint load time and peak host memory. */
#ifndef CLMOE_BENCH_LOAD_CHECKPOINT_H
#define CLMOE_BENCH_LOAD_CHECKPOINT_H

#include "clmoe/clmoe.h"

/* Generates a checkpoint with >= 1 GiB of experts (a few MiB with quick),
 * loads one layer from it on ctx, prints time and memory. Returns 0. */
int bench_load_checkpoint(clmoe_context *ctx, int quick);

#endif /* CLMOE_BENCH_LOAD_CHECKPOINT_H */
