/* Context lifetime: device selection or interop, queue, log callback. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/workspace.h"

void cm_log(const clmoe_context *ctx, clmoe_log_level level, const char *fmt,
            ...) {
  if (!ctx || !ctx->log_fn)
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ctx->log_fn(ctx->log_user_data, level, msg);
}

int cm_same_device(const clmoe_context *a, const clmoe_context *b) {
  return a == b ||
         (a && b && a->context == b->context && a->device == b->device);
}

void clmoe_context_desc_init_sized(clmoe_context_desc *desc, size_t size) {
  static const clmoe_context_desc defaults; /* everything NULL / 0 */
  cm_init_struct(desc, &defaults, sizeof defaults, size);
}

void(clmoe_context_desc_init)(clmoe_context_desc *desc) {
  clmoe_context_desc_init_sized(desc,
                                offsetof(clmoe_context_desc, tuning_file));
}

static clmoe_status attach_interop(clmoe_context *ctx,
                                   const clmoe_context_desc *d) {
  if (!d->cl_device)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "clmoe_context_create: desc->cl_context is set but "
                   "desc->cl_device is NULL");
  cl_int err = clRetainContext(d->cl_context);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clRetainContext(desc->cl_context)");
  ctx->context = d->cl_context;
  ctx->device = d->cl_device;
  err = clGetDeviceInfo(ctx->device, CL_DEVICE_PLATFORM, sizeof ctx->platform,
                        &ctx->platform, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clGetDeviceInfo(desc->cl_device)");
  if (d->cl_queue) {
    cl_command_queue_properties props = 0;
    err = clGetCommandQueueInfo(d->cl_queue, CL_QUEUE_PROPERTIES, sizeof props,
                                &props, NULL);
    if (err != CL_SUCCESS)
      return cm_cl_fail(err, "clGetCommandQueueInfo(desc->cl_queue)");
    if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
      return cm_fail(CLMOE_ERROR_UNSUPPORTED,
                     "clmoe_context_create: desc->cl_queue is out-of-order; "
                     "clmoe needs an in-order queue");
    if ((err = clRetainCommandQueue(d->cl_queue)) != CL_SUCCESS)
      return cm_cl_fail(err, "clRetainCommandQueue(desc->cl_queue)");
    ctx->queue = d->cl_queue;
  }
  return CLMOE_SUCCESS;
}

static clmoe_status select_own(clmoe_context *ctx,
                               const clmoe_context_desc *d) {
  clmoe_device_choice choice;
  clmoe_device_choice_init(&choice);
  clmoe_status st = clmoe_device_select(d->device, &choice);
  if (st)
    return st;
  ctx->platform = choice.platform;
  ctx->device = choice.device;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                   (cl_context_properties)choice.platform, 0};
  cl_int err;
  ctx->context = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
  if (!ctx->context)
    return cm_cl_fail(err, "clCreateContext");
  cm_log(ctx, CLMOE_LOG_INFO, "device %d selected: %s", choice.index,
         choice.reason);
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_context_create(const clmoe_context_desc *desc,
                                  clmoe_context **out) {
  if (!out)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_context_create: out is NULL");
  *out = NULL;
  clmoe_context_desc defaults;
  clmoe_context_desc_init(&defaults);
  if (!desc)
    desc = &defaults;
  clmoe_status st = cm_check_struct(
      desc, offsetof(clmoe_context_desc, tuning_file), "context desc");
  if (st)
    return st;
  if (!desc->cl_context && (desc->cl_device || desc->cl_queue))
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "clmoe_context_create: desc->cl_device/cl_queue given "
                   "without desc->cl_context");
  clmoe_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_context_create: out of host memory");
  pthread_mutex_init(&ctx->lock, NULL);
  pthread_mutex_init(&ctx->score_lock, NULL);
  ctx->log_fn = desc->log_fn;
  ctx->score_ws = calloc(1, sizeof *ctx->score_ws);
  if (!ctx->score_ws) {
    clmoe_context_destroy(ctx);
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_context_create: out of host memory");
  }
  ctx->log_user_data = desc->log_user_data;
  st = desc->cl_context ? attach_interop(ctx, desc) : select_own(ctx, desc);
  if (!st)
    st = cm_query_device_info(ctx->platform, ctx->device, &ctx->info);
  if (!st) {
    /* a 0.1 caller's struct has no tuning_file */
    const char *file = CM_HAS_FIELD(desc, clmoe_context_desc, tuning_file)
                           ? desc->tuning_file
                           : NULL;
    if (!file)
      file = getenv("CLMOE_TUNING_FILE");
    st = cm_tuning_lookup(&ctx->info, file, &ctx->tuning);
    if (!st)
      st = cm_tuning_check_device(&ctx->tuning, ctx->device, &ctx->info);
    if (!st)
      st = cm_tuning_apply_clblast(ctx->device, &ctx->tuning);
  }
  if (!st && !ctx->queue) {
    cl_int err;
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, 0, &err);
    if (!ctx->queue)
      st = cm_cl_fail(err, "clCreateCommandQueue");
  }
  if (!st) {
    cl_device_fp_config fp = 0;
    cl_int err = clGetDeviceInfo(ctx->device, CL_DEVICE_SINGLE_FP_CONFIG,
                                 sizeof fp, &fp, NULL);
    if (err != CL_SUCCESS)
      st = cm_cl_fail(err, "clGetDeviceInfo(CL_DEVICE_SINGLE_FP_CONFIG)");
    ctx->exact_divide = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
  }
  if (st) {
    clmoe_context_destroy(ctx);
    return st;
  }
  if (!(desc->flags & CLMOE_CONTEXT_NO_DISK_CACHE))
    cm_resolve_cache_dir(desc->cache_dir, ctx->cache_dir,
                         sizeof ctx->cache_dir);
  const cm_tuning *t = &ctx->tuning;
  cm_log(ctx, CLMOE_LOG_INFO,
         "context on \"%s\" (%s), program cache: %s, experts path: %s "
         "(grouped kernel: %s), router GEMM: %s, in flight: <= %d slots per "
         "token and <= %d MiB (tuning %s)",
         ctx->info.name, ctx->info.platform_name,
         ctx->cache_dir[0] ? ctx->cache_dir : "off",
         t->path == CLMOE_EXPERTS_PATH_GROUPED ? "grouped" : "clblast",
         t->local_kernel ? "work-group, local memory" : "work-item tiles",
         t->router_gemm == CLMOE_EXPERTS_PATH_GROUPED ? "grouped" : "clblast",
         t->in_flight_max_k, t->in_flight_max_mib, t->origin);
  *out = ctx;
  return CLMOE_SUCCESS;
}

void clmoe_context_destroy(clmoe_context *ctx) {
  if (!ctx)
    return;
  if (ctx->score_ws) {
    cm_workspace_release(ctx->score_ws);
    free(ctx->score_ws);
  }
  for (int i = 0; i < CM_PROG_COUNT; ++i)
    if (ctx->programs[i])
      clReleaseProgram(ctx->programs[i]);
  if (ctx->queue) {
    clFinish(ctx->queue);
    clReleaseCommandQueue(ctx->queue);
  }
  if (ctx->context)
    clReleaseContext(ctx->context);
  pthread_mutex_destroy(&ctx->lock);
  pthread_mutex_destroy(&ctx->score_lock);
  free(ctx);
}

clmoe_status clmoe_context_get_device_info(const clmoe_context *ctx,
                                           clmoe_device_info *info) {
  if (!ctx)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_context_get_device_info: ctx is NULL");
  clmoe_status st = cm_check_struct(info, sizeof *info, "device info");
  if (st)
    return st;
  /* Copy only what the caller's (possibly older, smaller) struct holds. */
  size_t size =
      info->struct_size < sizeof *info ? info->struct_size : sizeof *info;
  memcpy(info, &ctx->info, size);
  info->struct_size = size;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_context_get_cl(const clmoe_context *ctx, cl_context *context,
                                  cl_device_id *device,
                                  cl_command_queue *queue) {
  if (!ctx)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_context_get_cl: ctx is NULL");
  if (context)
    *context = ctx->context;
  if (device)
    *device = ctx->device;
  if (queue)
    *queue = ctx->queue;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_context_finish(clmoe_context *ctx) {
  if (!ctx)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_context_finish: ctx is NULL");
  cl_int err = clFinish(ctx->queue);
  return err == CL_SUCCESS ? CLMOE_SUCCESS : cm_cl_fail(err, "clFinish");
}
