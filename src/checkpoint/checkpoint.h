/* Checkpoint internals shared by checkpoint.c (the reader) and
 * load_layer.c (MoE layers from a checkpoint). */
#ifndef CLMOE_CHECKPOINT_INTERNAL_H
#define CLMOE_CHECKPOINT_INTERNAL_H

#include "checkpoint/safetensors.h"

/* The tensor called `name`, or NULL. */
const cm_st_tensor *cm_ck_lookup(const clmoe_checkpoint *ck, const char *name);

/* NOT_FOUND for `name`, naming the nearest existing tensor. */
clmoe_status cm_ck_not_found(const clmoe_checkpoint *ck, const char *name);

/* Elements [first, first + n) of a readable tensor (stored F32, F16 or
 * BF16) into dst as `dtype` (F32, F16, BF16), rounding to nearest even;
 * INVALID_ARGUMENT naming the element when a value overflows. */
clmoe_status cm_ck_read_range(const clmoe_checkpoint *ck, const cm_st_tensor *t,
                              uint64_t first, uint64_t n, clmoe_dtype dtype,
                              void *dst);

#endif /* CLMOE_CHECKPOINT_INTERNAL_H */
