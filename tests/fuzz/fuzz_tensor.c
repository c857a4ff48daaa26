/* Tensor create / wrap / read / write with random shapes, dtypes and
 * buffer sizes. Host data is given at the size the shape asks for when that
 * is small (the caller's contract), else NULL. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "fuzz_common.h"

enum { MAX_BYTES = 1 << 20 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_bytes b = {data, size};
  clmoe_context *ctx = fuzz_context();
  int32_t rank = fuzz_range(&b, -1, 5);
  clmoe_dtype dtype = fuzz_range(&b, -1, 5);
  int64_t shape[4];
  for (int i = 0; i < 4; ++i) {
    int32_t v = fuzz_i32(&b);
    /* mostly small, sometimes huge or negative */
    shape[i] = (v & 0x30000000) ? (int64_t)v * (v & 0xF) : v % 17;
  }
  /* The exact element count, or -1 when a dimension is negative or the
   * product overflows int64 (then the library must refuse the shape). */
  int64_t numel = 1;
  for (int i = 0; i < rank && i < 4; ++i)
    if (numel < 0 || shape[i] < 0 ||
        __builtin_mul_overflow(numel, shape[i], &numel))
      numel = -1;
  size_t bytes = numel >= 0 && numel <= MAX_BYTES / 4 ? (size_t)numel * 4 : 0;
  void *host = bytes ? calloc(1, bytes) : NULL;
  const int64_t *sp = fuzz_range(&b, 0, 15) ? shape : NULL;
  clmoe_tensor *t = NULL;
  /* Valid but large shapes would only measure the allocator (and memory):
   * overflowing and over-limit shapes (numel < 0 or > 2^31) still run. */
  int large = numel > (1 << 18) && numel <= INT32_MAX;
  if (!large && clmoe_tensor_create(ctx, dtype, rank, sp, fuzz_range(&b, 0, 1) ? host
                                                                   : NULL,
                          &t) == CLMOE_SUCCESS) {
    if (bytes && host) {
      clmoe_tensor_write(t, host, bytes);
      clmoe_tensor_read(t, host, bytes);
    }
    clmoe_tensor_read(t, host, (size_t)fuzz_range(&b, 0, 64));
    clmoe_tensor_destroy(t);
  }
  /* Wrap a buffer of a random size with the same shape. */
  cl_context cl = NULL;
  clmoe_context_get_cl(ctx, &cl, NULL, NULL);
  cl_int err;
  size_t mem_bytes = (size_t)fuzz_range(&b, 1, 4096);
  cl_mem mem = clCreateBuffer(cl, CL_MEM_READ_WRITE, mem_bytes, NULL, &err);
  if (mem) {
    if (clmoe_tensor_wrap(ctx, mem, dtype, rank, sp, &t) == CLMOE_SUCCESS)
      clmoe_tensor_destroy(t);
    clReleaseMemObject(mem);
  }
  free(host);
  return 0;
}
