/* clmoe-bench --load: checkpoint load time and peak host memory. */
#ifndef CLMOE_BENCH_LOAD_CHECKPOINT_H
#define CLMOE_BENCH_LOAD_CHECKPOINT_H

#include "clmoe/clmoe.h"
#include "provenance.h"

/* Generates a checkpoint with >= 1 GiB of experts (a few MiB with quick),
 * loads one layer from it on ctx, prints time and memory, and writes them
 * with their provenance to `json` when given. Returns 0. */
int bench_load_checkpoint(clmoe_context *ctx, int quick,
                          const bench_provenance *prov, const char *json);

#endif /* CLMOE_BENCH_LOAD_CHECKPOINT_H */
