/* clmoe-bench --train: forward + backward of the W1 layer shape against
 * the forward, against a plain-PyTorch expert loop with autograd (a child
 * process, when torch is installed), and top-p at mean K 1.5 against
 * top-2. */
#ifndef CLMOE_BENCH_TRAIN_BENCH_H
#define CLMOE_BENCH_TRAIN_BENCH_H

#include "clmoe/clmoe.h"
#include "provenance.h"

/* Prints the ratios and their targets; writes JSON to `json` when given.
 * `runs` timed repetitions (median). Returns 0. */
int bench_train(clmoe_context *ctx, int quick, int runs,
                const bench_provenance *prov, const char *json);

#endif /* CLMOE_BENCH_TRAIN_BENCH_H */
