/* Device buffer helpers shared by tensors, routers, experts and routing
 * objects. */
#include <stdio.h>

#include "runtime/runtime.h"

clmoe_status cm_buffer_create(clmoe_context *ctx, size_t bytes,
                              cl_mem_flags flags, cl_mem *out) {
  *out = NULL;
  if (bytes == 0)
    bytes = 4; /* empty arrays still get a valid handle to pass to kernels */
  if (bytes > ctx->info.max_alloc_bytes)
    return cm_fail(CLMOE_ERROR_TOO_LARGE,
                   "a %zu-byte buffer exceeds the device's "
                   "CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu bytes)",
                   bytes, (unsigned long long)ctx->info.max_alloc_bytes);
  cl_int err;
  *out = clCreateBuffer(ctx->context, flags, bytes, NULL, &err);
  if (!*out)
    return cm_cl_fail(err, "clCreateBuffer");
  return CLMOE_SUCCESS;
}

clmoe_status cm_buffer_reserve(clmoe_context *ctx, cl_mem *buf, size_t *cap,
                               size_t bytes) {
  if (*buf && *cap >= bytes)
    return CLMOE_SUCCESS;
  cm_release_mem(buf);
  *cap = 0;
  clmoe_status st = cm_buffer_create(ctx, bytes, CL_MEM_READ_WRITE, buf);
  if (!st)
    *cap = bytes;
  return st;
}

clmoe_status cm_buffer_upload(clmoe_context *ctx, const void *host, cl_mem src,
                              size_t bytes, const char *what, cl_mem *out) {
  clmoe_status st = cm_buffer_create(ctx, bytes, CL_MEM_READ_WRITE, out);
  if (st || (!host && !src) || bytes == 0)
    return st;
  /* Blocking write: the caller may free its host copy on return. */
  cl_int err = host ? clEnqueueWriteBuffer(ctx->queue, *out, CL_TRUE, 0, bytes,
                                           host, 0, NULL, NULL)
                    : clEnqueueCopyBuffer(ctx->queue, src, *out, 0, 0, bytes, 0,
                                          NULL, NULL);
  if (err == CL_SUCCESS)
    return CLMOE_SUCCESS;
  cm_release_mem(out);
  char call[160];
  snprintf(call, sizeof call, "%s(%s)",
           host ? "clEnqueueWriteBuffer" : "clEnqueueCopyBuffer", what);
  return cm_cl_fail(err, call);
}

void cm_release_mem(cl_mem *mem) {
  if (*mem)
    clReleaseMemObject(*mem);
  *mem = NULL;
}
