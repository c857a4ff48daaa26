/* Tensor round trips, zero-size tensors, wrapping, and invalid arguments. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"

static void test_roundtrip(void) {
  clmoe_context *ctx = test_context();
  float host[3 * 5 * 7];
  for (int i = 0; i < 105; ++i)
    host[i] = (float)i * 0.5f - 3.0f;
  int64_t shape[3] = {3, 5, 7};
  clmoe_tensor *t = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, shape, host, &t));
  float back[105] = {0};
  CHECK_OK(clmoe_tensor_read(t, back, sizeof back));
  CHECK(memcmp(host, back, sizeof host) == 0);
  for (int i = 0; i < 105; ++i)
    host[i] = -host[i];
  CHECK_OK(clmoe_tensor_write(t, host, sizeof host));
  CHECK_OK(clmoe_tensor_read(t, back, sizeof back));
  CHECK(memcmp(host, back, sizeof host) == 0);
  int32_t rank = 0;
  int64_t got[CLMOE_MAX_RANK] = {0};
  clmoe_dtype dt = 0;
  int64_t numel = 0;
  CHECK_OK(clmoe_tensor_get_shape(t, &rank, got));
  CHECK(rank == 3 && got[0] == 3 && got[1] == 5 && got[2] == 7);
  CHECK_OK(clmoe_tensor_get_dtype(t, &dt));
  CHECK(dt == CLMOE_DTYPE_F32);
  CHECK_OK(clmoe_tensor_get_numel(t, &numel));
  CHECK(numel == 105);
  CHECK_STATUS(clmoe_tensor_read(t, back, sizeof back - 4),
               CLMOE_ERROR_SHAPE_MISMATCH);
  CHECK_STATUS(clmoe_tensor_write(t, NULL, sizeof back),
               CLMOE_ERROR_NULL_POINTER);
  clmoe_tensor_destroy(t);

  int32_t ints[4] = {1, -2, 3, INT32_MAX};
  int64_t s4[4] = {1, 2, 1, 2};
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 4, s4, ints, &t));
  int32_t iback[4];
  CHECK_OK(clmoe_tensor_read(t, iback, sizeof iback));
  CHECK(memcmp(ints, iback, sizeof ints) == 0);
  clmoe_tensor_destroy(t);

  /* 16-bit tensors hold their bit patterns; an odd count is zero-filled
   * and wrapped like any other. */
  for (clmoe_dtype d16 = CLMOE_DTYPE_F16; d16 <= CLMOE_DTYPE_BF16; ++d16) {
    uint16_t bits[7] = {0x3c00, 0x8000, 0x7c00, 0xfe01, 0x0001, 0x7bff, 1234};
    int64_t s7[1] = {7};
    REQUIRE_OK(clmoe_tensor_create(ctx, d16, 1, s7, bits, &t));
    uint16_t b16[7] = {0};
    CHECK_OK(clmoe_tensor_read(t, b16, sizeof b16));
    CHECK(memcmp(bits, b16, sizeof bits) == 0);
    CHECK_STATUS(clmoe_tensor_read(t, b16, sizeof b16 + 2),
                 CLMOE_ERROR_SHAPE_MISMATCH);
    CHECK_OK(clmoe_tensor_get_dtype(t, &dt));
    CHECK(dt == d16);
    cl_mem mem = NULL;
    CHECK_OK(clmoe_tensor_get_cl_mem(t, &mem));
    clmoe_tensor *w = NULL;
    CHECK_OK(clmoe_tensor_wrap(ctx, mem, d16, 1, s7, &w));
    memset(b16, 0, sizeof b16);
    CHECK_OK(clmoe_tensor_read(w, b16, sizeof b16));
    CHECK(memcmp(bits, b16, sizeof bits) == 0);
    clmoe_tensor_destroy(w);
    clmoe_tensor_destroy(t);
    REQUIRE_OK(clmoe_tensor_create(ctx, d16, 1, s7, NULL, &t));
    memset(b16, 0xff, sizeof b16);
    CHECK_OK(clmoe_tensor_read(t, b16, sizeof b16));
    for (int i = 0; i < 7; ++i)
      CHECK(b16[i] == 0);
    clmoe_tensor_destroy(t);
  }

  /* Without host data the tensor is zero-filled. */
  int64_t s1[1] = {33};
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, s1, NULL, &t));
  float z[33];
  memset(z, 0xff, sizeof z);
  CHECK_OK(clmoe_tensor_read(t, z, sizeof z));
  for (int i = 0; i < 33; ++i)
    CHECK(z[i] == 0.0f);
  clmoe_tensor_destroy(t);

  /* Empty tensors are valid and read/write zero bytes. */
  int64_t s0[2] = {0, 16};
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, s0, NULL, &t));
  CHECK_OK(clmoe_tensor_read(t, NULL, 0));
  CHECK_OK(clmoe_tensor_write(t, NULL, 0));
  CHECK_OK(clmoe_tensor_get_numel(t, &numel));
  CHECK(numel == 0);
  clmoe_tensor_destroy(t);
}

static void test_wrap(void) {
  clmoe_context *ctx = test_context();
  cl_context cc;
  cl_command_queue q;
  REQUIRE_OK(clmoe_context_get_cl(ctx, &cc, NULL, &q));
  cl_int err;
  float init[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  cl_mem mem = clCreateBuffer(cc, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              sizeof init, init, &err);
  REQUIRE_OK(mem ? CLMOE_SUCCESS : CLMOE_ERROR_OPENCL);
  int64_t shape[2] = {2, 5};
  clmoe_tensor *t = NULL;
  CHECK_OK(clmoe_tensor_wrap(ctx, mem, CLMOE_DTYPE_F32, 2, shape, &t));
  float back[10];
  CHECK_OK(clmoe_tensor_read(t, back, sizeof back));
  CHECK(memcmp(back, init, sizeof init) == 0);
  cl_mem got = NULL;
  CHECK_OK(clmoe_tensor_get_cl_mem(t, &got));
  CHECK(got == mem);
  clmoe_tensor_destroy(t);
  /* The buffer is still the caller's and still alive. */
  float again[10];
  CHECK(clEnqueueReadBuffer(q, mem, CL_TRUE, 0, sizeof again, again, 0, NULL,
                            NULL) == CL_SUCCESS);
  CHECK(memcmp(again, init, sizeof init) == 0);
  int64_t big[2] = {3, 5};
  t = (clmoe_tensor *)1;
  CHECK_STATUS(clmoe_tensor_wrap(ctx, mem, CLMOE_DTYPE_F32, 2, big, &t),
               CLMOE_ERROR_SHAPE_MISMATCH);
  CHECK(t == NULL);
  CHECK_STATUS(clmoe_tensor_wrap(ctx, NULL, CLMOE_DTYPE_F32, 2, shape, &t),
               CLMOE_ERROR_NULL_POINTER);
  clReleaseMemObject(mem);
}

static void test_invalid(void) {
  clmoe_context *ctx = test_context();
  int64_t shape[5] = {2, 2, 2, 2, 2};
  clmoe_tensor *t = NULL;
  CHECK_STATUS(clmoe_tensor_create(NULL, CLMOE_DTYPE_F32, 1, shape, NULL, &t),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, shape, NULL, NULL),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, NULL, NULL, &t),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_tensor_create(ctx, 77, 1, shape, NULL, &t),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 0, shape, NULL, &t),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 5, shape, NULL, &t),
               CLMOE_ERROR_INVALID_ARGUMENT);
  int64_t neg[2] = {4, -1};
  CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, neg, NULL, &t),
               CLMOE_ERROR_INVALID_ARGUMENT);
  int64_t huge[2] = {1 << 20, 1 << 20};
  CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, huge, NULL, &t),
               CLMOE_ERROR_TOO_LARGE);
  CHECK(t == NULL);
  int32_t rank;
  CHECK_STATUS(clmoe_tensor_get_shape(NULL, &rank, NULL),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_tensor_read(NULL, &rank, 4), CLMOE_ERROR_NULL_POINTER);
}

int main(void) {
  test_roundtrip();
  test_wrap();
  test_invalid();
  return test_finish("test_tensor");
}
