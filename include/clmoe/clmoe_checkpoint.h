/* clmoe checkpoint reader (since 0.3): Hugging Face safetensors files and
 * model directories (config.json, model.safetensors or sharded
 * model-*.safetensors with model.safetensors.index.json).
 *
 * Shards are memory-mapped read-only and never read whole: opening parses
 * and validates every header (JSON, through jansson), reading a tensor
 * touches only its bytes. A checkpoint holds no OpenCL object and no
 * context; it may be read from several threads at once (every call below
 * is thread-safe on one checkpoint except clmoe_checkpoint_close).
 *
 * Errors specific to files: CLMOE_ERROR_IO (a file cannot be opened, read
 * or mapped), CLMOE_ERROR_BAD_FILE (malformed: the detail names the file
 * and what is wrong), CLMOE_ERROR_NOT_FOUND (a tensor or file that is not
 * there: for a tensor the detail also names the nearest existing name). */
#ifndef CLMOE_CLMOE_CHECKPOINT_H
#define CLMOE_CLMOE_CHECKPOINT_H

#include "clmoe/clmoe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clmoe_checkpoint clmoe_checkpoint;

/* The largest rank a checkpoint tensor may have. */
#define CLMOE_CHECKPOINT_MAX_RANK 8

/* One stored tensor. */
typedef struct clmoe_checkpoint_tensor {
  size_t struct_size;
  /* Borrowed from the checkpoint; valid until clmoe_checkpoint_close. */
  const char *name;
  /* The stored dtype as safetensors spells it ("F32", "BF16", "I64", ...). */
  char dtype[8];
  /* CLMOE_DTYPE_F32, _F16 or _BF16 for stored F32, F16 and BF16 (the dtypes
   * clmoe_checkpoint_read converts from); 0 for any other. */
  clmoe_dtype readable_dtype;
  int32_t rank; /* 0 (a scalar) .. CLMOE_CHECKPOINT_MAX_RANK */
  int64_t shape[CLMOE_CHECKPOINT_MAX_RANK];
  uint64_t bytes; /* stored size */
  /* Which file holds it: 0 .. clmoe_checkpoint_get_num_files - 1. */
  int32_t file;
} clmoe_checkpoint_tensor;

/* Sets struct_size (the caller's sizeof) and clears the rest. */
CLMOE_API void clmoe_checkpoint_tensor_init(clmoe_checkpoint_tensor *info);

/* Opens `path`: a .safetensors file, or a directory holding config.json
 * (optional) and either model.safetensors or model.safetensors.index.json
 * with the shards its weight_map names (plain file names in that
 * directory). Checks, each a BAD_FILE naming the file: the 8-byte header
 * length past the end of the file or over 100 MB, a header that is not a
 * JSON object, duplicate names (in one header, or in two shards), an entry
 * without a dtype string, a shape of non-negative integers or data_offsets
 * [begin, end] inside the data, an unknown dtype, offsets that disagree
 * with dtype x shape, overlapping tensors, an index whose weight_map names
 * a tensor its shard does not hold; IO or NOT_FOUND for a missing shard or
 * file. Ranks above CLMOE_CHECKPOINT_MAX_RANK are UNSUPPORTED. On error
 * *out is NULL and nothing is left open. */
CLMOE_API clmoe_status clmoe_checkpoint_open(const char *path,
                                             clmoe_checkpoint **out);

/* Unmaps and frees everything; names handed out become invalid. NULL is
 * ignored. */
CLMOE_API void clmoe_checkpoint_close(clmoe_checkpoint *ck);

/* Tensors across all files, and the files (shards). */
CLMOE_API clmoe_status
clmoe_checkpoint_get_num_tensors(const clmoe_checkpoint *ck, int64_t *count);
CLMOE_API clmoe_status
clmoe_checkpoint_get_num_files(const clmoe_checkpoint *ck, int32_t *count);

/* Tensor `index` (0 .. count - 1, in ascending name order: byte-wise
 * strcmp). Errors: NULL_POINTER, INVALID_STRUCT_SIZE, INVALID_ARGUMENT
 * (index out of range). */
CLMOE_API clmoe_status clmoe_checkpoint_get_tensor(
    const clmoe_checkpoint *ck, int64_t index, clmoe_checkpoint_tensor *info);

/* The tensor called `name`. Errors: NOT_FOUND (the detail names the
 * nearest existing name by edit distance), NULL_POINTER,
 * INVALID_STRUCT_SIZE. */
CLMOE_API clmoe_status
clmoe_checkpoint_find_tensor(const clmoe_checkpoint *ck, const char *name,
                             clmoe_checkpoint_tensor *info);

/* Copies tensor `name` into dst (dst_bytes must be exactly its element
 * count times the size of `dtype`; dst may be NULL for an empty tensor),
 * converted to `dtype`: F32, F16 or
 * BF16, from stored F32, F16 or BF16. Widening is exact; narrowing rounds
 * to nearest even and keeps NaN and Inf, and a finite value that would
 * become Inf is INVALID_ARGUMENT naming the tensor and the element. The
 * copy streams through a small buffer (no allocation of the tensor's
 * size). Errors: NOT_FOUND, UNSUPPORTED (another stored dtype, named, or a
 * target dtype that is not a float), SHAPE_MISMATCH (dst_bytes),
 * NULL_POINTER, INVALID_ARGUMENT. */
CLMOE_API clmoe_status clmoe_checkpoint_read(const clmoe_checkpoint *ck,
                                             const char *name,
                                             clmoe_dtype dtype, void *dst,
                                             size_t dst_bytes);

/* The text of the directory's config.json (NUL-terminated, borrowed until
 * close), or NULL when the checkpoint is a lone file or the directory has
 * none. Errors: NULL_POINTER. */
CLMOE_API clmoe_status clmoe_checkpoint_get_config(const clmoe_checkpoint *ck,
                                                   const char **json);

#ifdef __cplusplus
}
#endif

#endif /* CLMOE_CLMOE_CHECKPOINT_H */
