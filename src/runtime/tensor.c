/* Tensors: a cl_mem with dtype and row-major shape, and their validation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

size_t cm_dtype_size(clmoe_dtype dtype) {
  switch (dtype) {
  case CLMOE_DTYPE_F32:
  case CLMOE_DTYPE_I32:
    return 4;
  case CLMOE_DTYPE_F16:
  case CLMOE_DTYPE_BF16:
    return 2;
  default:
    return 0;
  }
}

const char *cm_dtype_name(clmoe_dtype dtype) {
  switch (dtype) {
  case CLMOE_DTYPE_F32:
    return "float32";
  case CLMOE_DTYPE_I32:
    return "int32";
  case CLMOE_DTYPE_F16:
    return "float16";
  case CLMOE_DTYPE_BF16:
    return "bfloat16";
  case CLMOE_DTYPE_F8_E4M3:
    return "F8_E4M3";
  case CLMOE_DTYPE_MXFP4:
    return "MXFP4";
  case CLMOE_DTYPE_I8:
    return "I8";
  case CLMOE_DTYPE_I4:
    return "I4";
  default:
    return "unknown";
  }
}

static clmoe_status check_layout(const clmoe_context *ctx, const char *fn,
                                 clmoe_dtype dtype, int32_t rank,
                                 const int64_t *shape, int64_t *numel) {
  if (!ctx)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "%s: ctx is NULL", fn);
  if (!shape)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "%s: shape is NULL", fn);
  if (!cm_dtype_size(dtype))
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT, "%s: unknown dtype %d", fn,
                   (int)dtype);
  if (rank < 1 || rank > CLMOE_MAX_RANK)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT, "%s: rank %d is outside 1..%d",
                   fn, (int)rank, CLMOE_MAX_RANK);
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) {
    if (shape[i] < 0)
      return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                     "%s: shape[%d] = %lld is negative", fn, i,
                     (long long)shape[i]);
    if (shape[i] > 0 && n > INT32_MAX / shape[i])
      return cm_fail(CLMOE_ERROR_TOO_LARGE,
                     "%s: %d-d shape has more than 2^31-1 elements", fn,
                     (int)rank);
    n *= shape[i];
  }
  *numel = n;
  return CLMOE_SUCCESS;
}

static clmoe_status new_tensor(clmoe_context *ctx, clmoe_dtype dtype,
                               int32_t rank, const int64_t *shape,
                               int64_t numel, clmoe_tensor **out) {
  clmoe_tensor *t = calloc(1, sizeof *t);
  if (!t)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "tensor: out of host memory");
  t->ctx = ctx;
  t->dtype = dtype;
  t->rank = rank;
  memcpy(t->shape, shape, (size_t)rank * sizeof *shape);
  t->numel = numel;
  *out = t;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_tensor_create(clmoe_context *ctx, clmoe_dtype dtype,
                                 int32_t rank, const int64_t *shape,
                                 const void *host_data, clmoe_tensor **out) {
  if (!out)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_tensor_create: out is NULL");
  *out = NULL;
  int64_t numel = 0;
  clmoe_status st =
      check_layout(ctx, "clmoe_tensor_create", dtype, rank, shape, &numel);
  if (st)
    return st;
  size_t bytes = (size_t)numel * cm_dtype_size(dtype);
  clmoe_tensor *t = NULL;
  if ((st = new_tensor(ctx, dtype, rank, shape, numel, &t)))
    return st;
  t->owns_mem = 1;
  /* Whole 4-byte words, so an odd count of 16-bit elements can be
   * zero-filled with a 4-byte pattern. */
  size_t alloc = (bytes + 3) & ~(size_t)3;
  st = cm_buffer_create(ctx, alloc, CL_MEM_READ_WRITE, &t->mem);
  if (!st && bytes) {
    cl_int err;
    if (host_data) {
      err = clEnqueueWriteBuffer(ctx->queue, t->mem, CL_TRUE, 0, bytes,
                                 host_data, 0, NULL, NULL);
    } else {
      const cl_int zero = 0;
      err = clEnqueueFillBuffer(ctx->queue, t->mem, &zero, sizeof zero, 0,
                                alloc, 0, NULL, NULL);
    }
    if (err != CL_SUCCESS)
      st = cm_cl_fail(err, host_data ? "clEnqueueWriteBuffer"
                                     : "clEnqueueFillBuffer");
  }
  if (st) {
    clmoe_tensor_destroy(t);
    return st;
  }
  *out = t;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_tensor_wrap(clmoe_context *ctx, cl_mem mem,
                               clmoe_dtype dtype, int32_t rank,
                               const int64_t *shape, clmoe_tensor **out) {
  if (!out)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "clmoe_tensor_wrap: out is NULL");
  *out = NULL;
  int64_t numel = 0;
  clmoe_status st =
      check_layout(ctx, "clmoe_tensor_wrap", dtype, rank, shape, &numel);
  if (st)
    return st;
  if (!mem)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "clmoe_tensor_wrap: mem is NULL");
  size_t size = 0;
  cl_context mem_ctx = NULL;
  cl_int err = clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL);
  if (err == CL_SUCCESS)
    err =
        clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof mem_ctx, &mem_ctx, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clmoe_tensor_wrap: clGetMemObjectInfo(mem)");
  if (mem_ctx != ctx->context)
    return cm_fail(CLMOE_ERROR_CONTEXT_MISMATCH,
                   "clmoe_tensor_wrap: mem belongs to another cl_context");
  size_t bytes = (size_t)numel * cm_dtype_size(dtype);
  if (size < bytes)
    return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                   "clmoe_tensor_wrap: mem holds %zu bytes but the shape "
                   "needs %zu",
                   size, bytes);
  clmoe_tensor *t = NULL;
  if ((st = new_tensor(ctx, dtype, rank, shape, numel, &t)))
    return st;
  clRetainMemObject(mem);
  t->mem = mem;
  *out = t;
  return CLMOE_SUCCESS;
}

void cm_tensor_view(clmoe_tensor *view, clmoe_context *ctx, cl_mem mem,
                    clmoe_dtype dtype, int32_t rank, const int64_t *shape) {
  memset(view, 0, sizeof *view);
  view->ctx = ctx;
  view->mem = mem;
  view->dtype = dtype;
  view->rank = rank;
  view->numel = 1;
  for (int i = 0; i < rank; ++i) {
    view->shape[i] = shape[i];
    view->numel *= shape[i];
  }
}

void clmoe_tensor_destroy(clmoe_tensor *tensor) {
  if (!tensor)
    return;
  if (tensor->mem)
    clReleaseMemObject(tensor->mem); /* wrap retained, so release in both */
  free(tensor);
}

static clmoe_status check_io(const clmoe_tensor *t, const void *host,
                             size_t bytes, const char *fn) {
  if (!t)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "%s: tensor is NULL", fn);
  size_t need = (size_t)t->numel * cm_dtype_size(t->dtype);
  if (!host && need)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "%s: host is NULL", fn);
  if (bytes != need)
    return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                   "%s: bytes = %zu but the tensor holds %zu bytes", fn, bytes,
                   need);
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_tensor_read(const clmoe_tensor *tensor, void *host,
                               size_t bytes) {
  clmoe_status st = check_io(tensor, host, bytes, "clmoe_tensor_read");
  if (st || !bytes)
    return st;
  cl_int err = clEnqueueReadBuffer(tensor->ctx->queue, tensor->mem, CL_TRUE, 0,
                                   bytes, host, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLMOE_SUCCESS
                           : cm_cl_fail(err, "clmoe_tensor_read: "
                                             "clEnqueueReadBuffer");
}

clmoe_status clmoe_tensor_write(clmoe_tensor *tensor, const void *host,
                                size_t bytes) {
  clmoe_status st = check_io(tensor, host, bytes, "clmoe_tensor_write");
  if (st || !bytes)
    return st;
  cl_int err = clEnqueueWriteBuffer(tensor->ctx->queue, tensor->mem, CL_TRUE, 0,
                                    bytes, host, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLMOE_SUCCESS
                           : cm_cl_fail(err, "clmoe_tensor_write: "
                                             "clEnqueueWriteBuffer");
}

clmoe_status clmoe_tensor_get_shape(const clmoe_tensor *tensor, int32_t *rank,
                                    int64_t *shape) {
  if (!tensor)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_tensor_get_shape: tensor is NULL");
  if (rank)
    *rank = tensor->rank;
  if (shape)
    memcpy(shape, tensor->shape, (size_t)tensor->rank * sizeof *shape);
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_tensor_get_dtype(const clmoe_tensor *tensor,
                                    clmoe_dtype *dtype) {
  if (!tensor || !dtype)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_tensor_get_dtype: tensor or dtype is NULL");
  *dtype = tensor->dtype;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_tensor_get_numel(const clmoe_tensor *tensor,
                                    int64_t *numel) {
  if (!tensor || !numel)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_tensor_get_numel: tensor or numel is NULL");
  *numel = tensor->numel;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_tensor_get_cl_mem(const clmoe_tensor *tensor, cl_mem *mem) {
  if (!tensor || !mem)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_tensor_get_cl_mem: tensor or mem is NULL");
  *mem = tensor->mem;
  return CLMOE_SUCCESS;
}

static void format_shape(char *buf, size_t len, int rank, const int64_t *dims) {
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < rank && used < len; ++i)
    used += (size_t)snprintf(buf + used, len - used, i ? ", %lld" : "%lld",
                             (long long)dims[i]);
}

clmoe_status cm_check_tensor(const clmoe_tensor *t, const clmoe_context *ctx,
                             const char *what, clmoe_dtype dtype, int32_t rank,
                             const int64_t *dims) {
  if (!t)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "%s is NULL", what);
  if (!cm_same_device(t->ctx, ctx))
    return cm_fail(CLMOE_ERROR_CONTEXT_MISMATCH,
                   "%s was created on a clmoe context of another cl_context "
                   "or device",
                   what);
  if (t->dtype != dtype)
    return cm_fail(CLMOE_ERROR_DTYPE_MISMATCH, "%s is %s; expected %s", what,
                   cm_dtype_name(t->dtype), cm_dtype_name(dtype));
  char want[96], got[96];
  format_shape(want, sizeof want, rank, dims);
  format_shape(got, sizeof got, t->rank, t->shape);
  int ok = t->rank == rank;
  for (int i = 0; ok && i < rank; ++i)
    ok = dims[i] < 0 || dims[i] == t->shape[i];
  if (!ok)
    return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                   "%s has shape [%s]; expected [%s] (-1 = any)", what, got,
                   want);
  return CLMOE_SUCCESS;
}
