/* One safetensors file, memory-mapped: its header parsed and checked into a
 * table of tensors whose data stays in the mapping. */
#ifndef CLMOE_SAFETENSORS_H
#define CLMOE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "clmoe/clmoe_checkpoint.h"

typedef struct cm_st_tensor {
  char *name;           /* owned */
  char dtype[8];        /* as stored: "F32", "BF16", ... */
  int elem_size;        /* bytes per element */
  clmoe_dtype readable; /* F32/F16/BF16, F8_E4M3/F8_E5M2/I8/U8, or 0 */
  int rank;
  int64_t shape[CLMOE_CHECKPOINT_MAX_RANK];
  uint64_t begin, end; /* within the data region */
  int file;            /* index of its file in the checkpoint */
} cm_st_tensor;

typedef struct cm_st_file {
  char *path; /* owned, for details */
  const unsigned char *map;
  size_t map_bytes;
  const unsigned char *data; /* the byte buffer after the header */
  uint64_t data_bytes;
  cm_st_tensor *tensors; /* owned, in header order */
  size_t count;
} cm_st_file;

/* Maps `path` (file number `file` of its checkpoint) and parses its header.
 * Errors: IO, BAD_FILE, UNSUPPORTED (rank), OUT_OF_HOST_MEMORY; on error
 * *f is left empty (cm_st_close is still safe). */
clmoe_status cm_st_open(const char *path, int file, cm_st_file *f);

/* Unmaps and frees; the file is left empty. */
void cm_st_close(cm_st_file *f);

/* Elements of a tensor (its shape's product; 1 for a scalar). */
uint64_t cm_st_elements(const cm_st_tensor *t);

#endif /* CLMOE_SAFETENSORS_H */
