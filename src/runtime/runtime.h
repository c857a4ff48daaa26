/* The runtime's internal declarations (the files of src/runtime), shared
 * by every translation unit of the library. Nothing here is exported: the
 * library is built with hidden visibility. */
#ifndef CLMOE_RUNTIME_H
#define CLMOE_RUNTIME_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clmoe/clmoe.h"
#include "runtime/tuning.h"

/* ---- errors (error.c) ---- */

/* Records a printf-style detail for the calling thread and returns st. */
clmoe_status cm_fail(clmoe_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Records "<where>: <printf-style detail>" and returns st: the one way a
 * call's name prefixes its errors. */
clmoe_status cm_fail_at(clmoe_status st, const char *where, const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));
/* Records "<what> failed: CL_NAME (code)" and maps the code to a status. */
clmoe_status cm_cl_fail(cl_int err, const char *what);
const char *cm_cl_error_name(cl_int err);

/* Checks the struct_size of a descriptor: it must cover at least the first
 * `min_size` bytes (the fields of version 0.1) and not be absurdly large. */
clmoe_status cm_check_struct(const void *desc, size_t min_size,
                             const char *what);
/* What a *_desc_init_sized does: copies the first `size` bytes (at most
 * `full`, the library's sizeof) of `defaults` into desc and sets its
 * struct_size to that size, so an older, smaller caller struct is never
 * written past its end. desc may be NULL (no-op). */
void cm_init_struct(void *desc, const void *defaults, size_t full, size_t size);
/* Whether a caller's descriptor is new enough to hold `field`. */
#define CM_HAS_FIELD(desc, type, field)                                        \
  ((desc)->struct_size >= offsetof(type, field) + sizeof((desc)->field))

/* ---- embedded kernel sources and the tuning table (generated cl_sources.c)
 * ---- */

typedef struct cm_cl_source {
  const char *name; /* file name without .cl */
  const char *text;
} cm_cl_source;
extern const cm_cl_source cm_cl_sources[];
extern const int cm_cl_source_count;

/* ---- programs (program.c) ---- */

/* One program per kernel file (cl/<stem>.cl, with cl/common.cl first),
 * named like the host file that launches it (src/moe/<stem>.c). */
typedef enum cm_program_id {
  CM_PROG_ROUTE = 0,         /* softmax, per-token selection, policies, stats */
  CM_PROG_GROUP,             /* scans, expert-major grouping */
  CM_PROG_DISPATCH_COMBINE,  /* row gather into expert order, combine */
  CM_PROG_EXPERTS_RUN,       /* CLBlast path's activation and bias */
  CM_PROG_SCORE,             /* attention-importance scoring */
  CM_PROG_GROUPED_GEMM,      /* grouped expert GEMM (tuned -D parameters) */
  CM_PROG_GROUPED_GEMM_F16,  /* the same, widening float16 weight panels */
  CM_PROG_GROUPED_GEMM_BF16, /* the same, widening bfloat16 weight panels */
  CM_PROG_GROUPED_GEMM_F8,    /* ... decoding quantized panels: F8_E4M3 */
  CM_PROG_GROUPED_GEMM_MXFP4, /* MXFP4 */
  CM_PROG_GROUPED_GEMM_I8,    /* I8 */
  CM_PROG_GROUPED_GEMM_I4,    /* I4 */
  CM_PROG_EXPERT_GRADS,       /* training: the expert stage's backward */
  CM_PROG_ROUTER_GRADS,       /* training: the router's backward, losses */
  CM_PROG_COUNT
} cm_program_id;

/* ---- context (context.c) ---- */

struct clmoe_context {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
  clmoe_device_info info;
  /* The device rounds fp32 divide and sqrt correctly when asked: kernels are
   * built so, since OpenCL's default (2.5 ulp) makes means and
   * normalisations differ from the exact math between devices. */
  int exact_divide;
  char cache_dir[1024]; /* "" when the disk cache is off */
  clmoe_log_fn log_fn;
  void *log_user_data;
  cm_tuning tuning;     /* the device's entry in the tuning table */
  pthread_mutex_t lock; /* guards programs[] */
  cl_program programs[CM_PROG_COUNT];
  /* Scoring's buffers and kernels (runtime/workspace.h), one call at a
   * time under score_lock. */
  struct cm_workspace *score_ws;
  pthread_mutex_t score_lock;
};

/* Objects of two contexts can be used together when the contexts share the
 * cl_context and device (their buffers are valid on both); the work then
 * runs on the queue of the context of the per-call object (the routing, or
 * the output tensor). */
int cm_same_device(const clmoe_context *a, const clmoe_context *b);

void cm_log(const clmoe_context *ctx, clmoe_log_level level, const char *fmt,
            ...) __attribute__((format(printf, 3, 4)));

/* Returns the built program (building or loading it on first use). */
clmoe_status cm_get_program(clmoe_context *ctx, cm_program_id id,
                            cl_program *out);
/* Creates a kernel from a program; the caller releases it. */
clmoe_status cm_create_kernel(clmoe_context *ctx, cm_program_id id,
                              const char *name, cl_kernel *out);
void cm_resolve_cache_dir(const char *explicit_dir, char *out, size_t len);

/* ---- device selection (device.c) ---- */

/* Whether `needle` occurs in `hay`, ignoring ASCII case ("" always does). */
int cm_contains_nocase(const char *hay, const char *needle);
clmoe_status cm_query_device_info(cl_platform_id platform, cl_device_id dev,
                                  clmoe_device_info *info);

/* ---- tensors (tensor.c) ---- */

struct clmoe_tensor {
  clmoe_context *ctx;
  cl_mem mem;
  clmoe_dtype dtype;
  int32_t rank;
  int64_t shape[CLMOE_MAX_RANK];
  int64_t numel;
  int owns_mem; /* 0 for wrapped buffers and routing views */
};

size_t cm_dtype_size(clmoe_dtype dtype);
/* "float32", "float16", "bfloat16", "int32" or "unknown". */
const char *cm_dtype_name(clmoe_dtype dtype);

/* ---- 16-bit conversions (convert.c) ---- */

int cm_is_float_dtype(clmoe_dtype dtype);
/* Element i of an F32, F16 or BF16 array, widened exactly to float. */
float cm_to_f32(clmoe_dtype dtype, const void *src, size_t i);
/* Stores v as element i of an F32, F16 or BF16 array, rounded to nearest
 * even; returns 1 when a finite v overflows to Inf (Inf is stored). */
int cm_from_f32(clmoe_dtype dtype, float v, void *dst, size_t i);
/* dst[0..n) = src[0..n) stored as `dtype` (F32, F16, BF16), rounded to
 * nearest even; returns n, or the index of the first finite value that
 * overflows to Inf (the rest is not written). */
size_t cm_encode(clmoe_dtype dtype, const float *src, void *dst, size_t n);
/* Rounds v[0..n) in place to the values `dtype` can hold (no-op for F32).
 * Errors: INVALID_ARGUMENT naming `what` and the element that overflows. */
clmoe_status cm_round_to_dtype(float *v, size_t n, clmoe_dtype dtype,
                               const char *what);
/* Validates a tensor argument: non-NULL, same context, dtype, rank, and each
 * dims[i] >= 0 must match (dims[i] < 0 means "any"). `what` names it in the
 * detail. */
clmoe_status cm_check_tensor(const clmoe_tensor *t, const clmoe_context *ctx,
                             const char *what, clmoe_dtype dtype, int32_t rank,
                             const int64_t *dims);
/* Initialises a borrowed view over part of a buffer owned elsewhere. */
void cm_tensor_view(clmoe_tensor *view, clmoe_context *ctx, cl_mem mem,
                    clmoe_dtype dtype, int32_t rank, const int64_t *shape);

/* ---- buffers (buffer.c) ---- */

/* Creates a device buffer of `bytes` (at least 1 byte, so empty arrays still
 * have a valid handle). */
clmoe_status cm_buffer_create(clmoe_context *ctx, size_t bytes,
                              cl_mem_flags flags, cl_mem *out);
/* Makes *buf hold at least `bytes`, reallocating (contents lost) only when
 * it is smaller. *cap tracks the current size. */
clmoe_status cm_buffer_reserve(clmoe_context *ctx, cl_mem *buf, size_t *cap,
                               size_t bytes);
/* Creates a buffer of `bytes` holding a copy of `host` (a blocking write) or
 * of the first `bytes` of `src` (a device copy), or left uninitialised when
 * both are NULL. `what` names the data in an error detail; *out is NULL on
 * error. */
clmoe_status cm_buffer_upload(clmoe_context *ctx, const void *host, cl_mem src,
                              size_t bytes, const char *what, cl_mem *out);
void cm_release_mem(cl_mem *mem);

/* Last: redirects the library's runtime calls in fault-injection builds. */
#include "runtime/call_layer.h"

#endif /* CLMOE_RUNTIME_H */
