/* Deterministic integer scans and the stable expert-major grouping of ragged
 * slot lists, on the device (kernels in cl/group.cl). */
#include "moe/group.h"

/* One launch: a work-group of scan_lx work-items (cl/group.cl). */
static clmoe_status scan_local(clmoe_context *ctx, cm_kernels *ks, cl_mem in,
                               cl_mem out, int n) {
  cl_kernel k;
  clmoe_status st = cm_kernel(ctx, ks, CM_K_SCAN_LOCAL, &k);
  size_t lx = (size_t)ctx->tuning.scan_lx;
  return st ? st
            : cm_launch(ctx, k, "scan_local", 1, &lx, &lx,
                        CM_ARGS(CM_ARG(n), CM_ARG(in), CM_ARG(out)));
}

clmoe_status cm_scan(clmoe_context *ctx, cm_kernels *ks, cl_mem in, cl_mem out,
                     int n, cl_mem partials) {
  if (ctx->tuning.scan_lx > 0)
    return scan_local(ctx, ks, in, out, n);
  /* Chunks of at least 32 elements, at most CM_SCAN_MAX_CHUNKS of them. */
  int chunk = (n + CM_SCAN_MAX_CHUNKS - 1) / CM_SCAN_MAX_CHUNKS;
  if (chunk < 32)
    chunk = 32;
  int num_chunks = n > 0 ? (n + chunk - 1) / chunk : 1;
  cl_kernel k;
  clmoe_status st;
  size_t g = (size_t)num_chunks, one = 1;
  if ((st = cm_kernel(ctx, ks, CM_K_SCAN_CHUNK_SUMS, &k)) ||
      (st = cm_launch(ctx, k, "scan_chunk_sums", 1, &g, NULL,
                      CM_ARGS(CM_ARG(n), CM_ARG(chunk), CM_ARG(in),
                              CM_ARG(partials), CM_ARG(num_chunks)))))
    return st;
  if ((st = cm_kernel(ctx, ks, CM_K_SCAN_PARTIALS, &k)) ||
      (st = cm_launch(ctx, k, "scan_partials", 1, &one, NULL,
                      CM_ARGS(CM_ARG(num_chunks), CM_ARG(partials)))))
    return st;
  if ((st = cm_kernel(ctx, ks, CM_K_SCAN_APPLY, &k)))
    return st;
  return cm_launch(ctx, k, "scan_apply", 1, &g, NULL,
                   CM_ARGS(CM_ARG(n), CM_ARG(chunk), CM_ARG(in),
                           CM_ARG(partials), CM_ARG(num_chunks), CM_ARG(out)));
}

void cm_group_blocks(int T, int *block, int *num_blocks) {
  /* At least 64 tokens per work-item, at most 1024 blocks. */
  int b = (T + 1023) / 1024;
  if (b < 64)
    b = 64;
  *block = b;
  *num_blocks = T > 0 ? (T + b - 1) / b : 1;
}

clmoe_status cm_group(clmoe_context *ctx, cm_kernels *ks, int T, int E,
                      cl_mem ids, int stride, cl_mem offsets, cl_mem counts,
                      cl_mem hist, cl_mem partials, cl_mem expert_offsets,
                      cl_mem slot_rows, cl_mem row_tokens) {
  int block, nb;
  cm_group_blocks(T, &block, &nb);
  cl_kernel k;
  clmoe_status st;
  size_t g = (size_t)nb;
  if ((st = cm_kernel(ctx, ks, CM_K_GROUP_COUNT, &k)) ||
      (st = cm_launch(ctx, k, "group_count", 1, &g, NULL,
                      CM_ARGS(CM_ARG(T), CM_ARG(E), CM_ARG(block), CM_ARG(nb),
                              CM_ARG(ids), CM_ARG(stride), CM_ARG(offsets),
                              CM_ARG(counts), CM_ARG(hist)))))
    return st;
  if ((st = cm_scan(ctx, ks, hist, hist, E * nb, partials)))
    return st;
  size_t ge = (size_t)E + 1;
  if ((st = cm_kernel(ctx, ks, CM_K_GROUP_EXPERT_OFFSETS, &k)) ||
      (st = cm_launch(ctx, k, "group_expert_offsets", 1, &ge, NULL,
                      CM_ARGS(CM_ARG(E), CM_ARG(nb), CM_ARG(hist),
                              CM_ARG(expert_offsets)))))
    return st;
  int write_slot_rows = slot_rows != NULL;
  cl_mem rows = slot_rows ? slot_rows : row_tokens;
  if ((st = cm_kernel(ctx, ks, CM_K_GROUP_PLACE, &k)))
    return st;
  return cm_launch(ctx, k, "group_place", 1, &g, NULL,
                   CM_ARGS(CM_ARG(T), CM_ARG(block), CM_ARG(nb), CM_ARG(ids),
                           CM_ARG(stride), CM_ARG(offsets), CM_ARG(counts),
                           CM_ARG(hist), CM_ARG(write_slot_rows), CM_ARG(rows),
                           CM_ARG(row_tokens)));
}
